//! The training input pipeline measured alone: `facenet bench loader` runs the
//! [`BatchLoader`] of `facenet train` (decode, augment, standardise on worker threads) over a
//! folder of images with nothing consuming the batches, so its images/s is the most a GPU
//! step can be fed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::loader::{plans_from_indices, BadImages, BatchLoader, LoaderConfig};

/// One measurement of the loader.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoaderBench {
    pub threads: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_s: f64,
    /// `images_per_s / threads`.
    pub images_per_s_per_thread: f64,
    /// Samples that could not be decoded (reported once each on stderr).
    pub skipped: usize,
}

/// Runs `batches` batches of `batch_size` samples drawn cyclically from `paths` through the
/// loader configured by `cfg` and times them (the first batch, which warms caches, included).
pub fn bench_loader(paths: &[PathBuf], cfg: LoaderConfig, batch_size: usize, batches: usize) -> LoaderBench {
    let n = batch_size.max(1) * batches.max(1);
    let indices: Vec<usize> = (0..n).map(|i| i % paths.len().max(1)).collect();
    let labels = Arc::new(vec![0usize; paths.len()]);
    let plans = plans_from_indices(&indices, batch_size.max(1), 0);
    let started = Instant::now();
    let loader = BatchLoader::start(Arc::new(paths.to_vec()), labels, plans, cfg, Arc::new(BadImages::new()));
    let (mut images, mut skipped) = (0, 0);
    for b in loader {
        images += b.len();
        skipped += b.skipped;
        std::hint::black_box(&b.images);
    }
    let seconds = started.elapsed().as_secs_f64();
    let images_per_s = images as f64 / seconds.max(1e-9);
    LoaderBench {
        threads: cfg.threads,
        images,
        seconds,
        images_per_s,
        images_per_s_per_thread: images_per_s / cfg.threads.max(1) as f64,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::Augment;
    use crate::data::preprocess::Standardization;

    #[test]
    fn counts_every_image_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.png");
        image::RgbImage::from_pixel(20, 20, image::Rgb([10, 20, 30])).save(&good).unwrap();
        let bad = dir.path().join("b.png");
        std::fs::write(&bad, b"not a png").unwrap();
        let cfg = LoaderConfig {
            augment: Augment { image_size: 16, random_rotate: false, random_crop: true, random_flip: true },
            standardization: Standardization::PerImage,
            threads: 2,
            seed: 1,
        };
        let r = bench_loader(&[good, bad], cfg, 4, 3);
        assert_eq!((r.images, r.skipped), (6, 6));
        assert!(r.images_per_s > 0.0 && (r.images_per_s_per_thread * 2.0 - r.images_per_s).abs() < 1e-6);
    }
}
