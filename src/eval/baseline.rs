//! The raw-pixel baseline: how well do plain pixels verify faces?
//!
//! Each image of a pairs file is centre-cropped (160/182 of its side, the training crop),
//! area-downsampled by an integer factor to at most 64 px, standardised per image and
//! L2-normalised; the LFW protocol is then run on squared Euclidean distances. A dataset on
//! which this scores high is too easy to say anything about a trained network.

use std::path::Path;

use anyhow::{Context, Result};
use image::RgbImage;
use rayon::prelude::*;

use crate::data::image_io::load_rgb;
use crate::data::pairs::{read_pairs, resolve_pairs};
use crate::eval::metrics::{evaluate, EvalOptions, Evaluation};

/// Most pairs the baseline takes: it holds every pair's pixels (up to 12288 values per image,
/// about 0.4 MB per pair), so about 4 GB at this limit.
pub const MAX_PAIRS: usize = 10_000;

/// The baseline's result with what it was computed on.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub evaluation: Evaluation,
    pub pairs: usize,
    pub dim: usize,
}

/// Runs the baseline on `pairs_file` with images under `dir`.
pub fn pixel_baseline(dir: &Path, pairs_file: &Path, nrof_folds: usize) -> Result<Baseline> {
    let pf = read_pairs(pairs_file)?;
    if pf.pairs.len() > MAX_PAIRS {
        anyhow::bail!("{}: {} pairs, more than the raw-pixel baseline takes ({MAX_PAIRS})", pairs_file.display(), pf.pairs.len());
    }
    let (paths, issame, _) = resolve_pairs(dir, &pf.pairs, false)?;
    let vectors: Vec<Vec<f64>> =
        paths.par_iter().map(|p| load_rgb(p).map(|img| pixel_embedding(&img)).map_err(anyhow::Error::from)).collect::<Result<_>>()?;
    let dim = vectors.first().map(Vec::len).unwrap_or(0);
    if let Some(bad) = paths.iter().zip(&vectors).find(|(_, v)| v.len() != dim) {
        anyhow::bail!("{}: image size differs from the first image of the pairs", bad.0.display());
    }
    let flat: Vec<f64> = vectors.concat();
    let opts = EvalOptions { nrof_folds, ..EvalOptions::default() };
    let evaluation = evaluate(&flat, dim, &issame, &opts).context("baseline evaluation")?;
    Ok(Baseline { evaluation, pairs: issame.len(), dim })
}

/// Centre crop, area downsample, per-image standardisation, L2 normalisation.
pub fn pixel_embedding(img: &RgbImage) -> Vec<f64> {
    let side = img.width().min(img.height());
    let crop = ((side as f64 * 160.0 / 182.0).round() as u32).max(1);
    let factor = crop.div_ceil(64).max(1);
    let out = (crop / factor).max(1);
    let x0 = (img.width() - out * factor) / 2;
    let y0 = (img.height() - out * factor) / 2;
    let mut v = Vec::with_capacity((out * out * 3) as usize);
    for oy in 0..out {
        for ox in 0..out {
            let mut acc = [0f64; 3];
            for dy in 0..factor {
                for dx in 0..factor {
                    let p = img.get_pixel(x0 + ox * factor + dx, y0 + oy * factor + dy).0;
                    for c in 0..3 {
                        acc[c] += p[c] as f64;
                    }
                }
            }
            let n = (factor * factor) as f64;
            v.extend(acc.iter().map(|a| a / n));
        }
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt().max(1.0 / n.sqrt());
    v.iter_mut().for_each(|x| *x = (*x - mean) / std);
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_is_unit_norm_and_sized() {
        let img = RgbImage::from_fn(182, 182, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
        let v = pixel_embedding(&img);
        // crop 160 -> factor 3 -> 53 px
        assert_eq!(v.len(), 53 * 53 * 3);
        let norm: f64 = v.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-9);
        let flat = pixel_embedding(&RgbImage::new(40, 40));
        assert!(flat.iter().all(|x| x.is_finite()));
    }
}
