//! Range limits of the numeric options of every subcommand (but `train`, whose options are
//! checked by [`TrainOptions::validate`](crate::train::TrainOptions::validate)), as clap value
//! parsers: a value out of range is a usage error (exit status 2) naming the option, never an
//! allocation abort or a panic later. Limits shared with a lower layer are that layer's
//! constants.

use clap::builder::{RangedI64ValueParser, RangedU64ValueParser};

pub use crate::model::inception_resnet_v1::{MAX_CLASSES, MAX_EMBEDDING_SIZE, MAX_IMAGE_SIZE};
pub use crate::train::options::{MAX_BATCH_SIZE, MAX_EPOCHS, MAX_FOLDS, MAX_THREADS};

/// Largest side of the images `align` writes and `synth` renders (182 by default).
pub const MAX_CROP_SIZE: u32 = 4096;
/// Largest margin around a face box, in pixels (the box is clamped to the image anyway).
pub const MAX_MARGIN: u32 = 1 << 20;
/// Most identities, images, pairs or classes a command makes, or steps a benchmark times.
pub const MAX_COUNT: usize = 10_000_000;

/// A `u32` option in `low..=high`.
pub fn u32_in(low: u32, high: u32) -> RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(low as i64..=high as i64)
}

/// A `usize` option in `low..=high`.
pub fn usize_in(low: usize, high: usize) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(low as u64..=high as u64)
}

/// A network input side: `1..=MAX_IMAGE_SIZE`.
pub fn image_size() -> RangedI64ValueParser<u32> {
    u32_in(1, MAX_IMAGE_SIZE)
}

/// Worker threads: `1..=MAX_THREADS`.
pub fn threads() -> RangedU64ValueParser<usize> {
    usize_in(1, MAX_THREADS)
}

/// Images per batch: `1..=MAX_BATCH_SIZE`.
pub fn batch_size() -> RangedU64ValueParser<usize> {
    usize_in(1, MAX_BATCH_SIZE)
}

/// A count of things to make or time: `1..=MAX_COUNT`.
pub fn count() -> RangedU64ValueParser<usize> {
    usize_in(1, MAX_COUNT)
}

/// A number in `low..=high` (so never NaN or infinite).
fn f64_in(s: &str, low: f64, high: f64) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(v >= low && v <= high) {
        return Err(format!("{v} is not in {low}..={high}"));
    }
    Ok(v)
}

/// A margin in pixels, `0..=MAX_MARGIN`.
pub fn margin(s: &str) -> Result<f64, String> {
    f64_in(s, 0.0, MAX_MARGIN as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(margin("44"), Ok(44.0));
        assert!(margin("nan").is_err() && margin("-1").is_err() && margin("inf").is_err() && margin("x").is_err());
        assert!(margin(&(MAX_MARGIN as f64 + 1.0).to_string()).is_err());
    }
}
