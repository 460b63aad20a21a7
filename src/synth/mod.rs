//! Built-in synthetic identities: a class-per-folder dataset and LFW-style pairs that need
//! no download.
//!
//! Every image is a pure function of (seed, identity number, image number), so the output
//! is byte-identical for the same seed whatever the number of threads, and an interrupted
//! run can simply be rerun.

pub mod identity;
pub mod nuisance;
pub mod pairs;
pub mod render;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::ImageEncoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::pairs::{format_pairs, image_stem};
use crate::util::atomic::write_atomic;
use crate::util::progress;
pub use identity::FaceParams;
pub use nuisance::Nuisance;

/// Largest image side `facenet synth` renders.
pub const MAX_IMAGE_SIZE: u32 = 4096;
/// Most images (training and held out together) and most pairs one dataset has.
pub const MAX_IMAGES: usize = 10_000_000;

/// What `facenet synth` renders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SynthConfig {
    pub identities: usize,
    pub images_per_identity: usize,
    pub image_size: u32,
    pub seed: u64,
    pub pairs_identities: usize,
    pub pairs_images_per_identity: usize,
    pub pairs_folds: usize,
    pub pairs_per_fold: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            identities: 200,
            images_per_identity: 20,
            image_size: 182,
            seed: 666,
            pairs_identities: 50,
            pairs_images_per_identity: 20,
            pairs_folds: 10,
            pairs_per_fold: 30,
        }
    }
}

impl SynthConfig {
    pub fn validate(&self) -> Result<()> {
        if !(16..=MAX_IMAGE_SIZE).contains(&self.image_size) {
            bail!("--image_size must be in 16..={MAX_IMAGE_SIZE} (got {})", self.image_size);
        }
        let images = self
            .identities
            .saturating_mul(self.images_per_identity)
            .saturating_add(self.pairs_identities.saturating_mul(self.pairs_images_per_identity));
        let pairs = self.pairs_folds.saturating_mul(self.pairs_per_fold).saturating_mul(2);
        if images > MAX_IMAGES {
            bail!(
                "--identities x --images_per_identity + --pairs_identities x --pairs_images_per_identity: {images} images, more than {MAX_IMAGES}"
            );
        }
        if pairs > MAX_IMAGES {
            bail!("--pairs_folds x --pairs_per_fold x 2: {pairs} pairs, more than {MAX_IMAGES}");
        }
        if self.identities == 0 || self.images_per_identity == 0 {
            bail!("--identities and --images_per_identity must be at least 1");
        }
        if self.pairs_folds > 0 && self.pairs_per_fold > 0 {
            if self.pairs_identities < 2 {
                bail!("--pairs_identities must be at least 2 to make different-person pairs");
            }
            if self.pairs_images_per_identity < 2 {
                bail!("--pairs_images_per_identity must be at least 2 to make same-person pairs");
            }
        }
        Ok(())
    }
}

/// Name of identity number `k` (0-based): `Identity_0001` for k = 0.
pub fn identity_name(k: usize) -> String {
    format!("Identity_{:04}", k + 1)
}

fn mix_seed(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix64 finaliser over a simple combination: independent streams per image.
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The facial parameters of identity `k` (0-based, counting held-out identities after the
/// training ones).
pub fn identity_params(seed: u64, k: usize) -> FaceParams {
    FaceParams::random(&mut ChaCha8Rng::seed_from_u64(mix_seed(seed, k as u64, u64::MAX)))
}

/// The variation of image `j` (0-based) of identity `k`.
pub fn image_nuisance(seed: u64, k: usize, j: usize) -> Nuisance {
    Nuisance::random(&mut ChaCha8Rng::seed_from_u64(mix_seed(seed, k as u64, j as u64)))
}

/// Renders image `j` of identity `k` and encodes it as PNG.
pub fn render_png(cfg: &SynthConfig, face: &FaceParams, k: usize, j: usize) -> Result<Vec<u8>> {
    let n = image_nuisance(cfg.seed, k, j);
    let img = render::render_face(face, &n, cfg.image_size).context("cannot allocate image")?;
    let mut out = Vec::with_capacity(img.len());
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// What a run wrote.
#[derive(Clone, Debug)]
pub struct SynthSummary {
    pub train_dir: PathBuf,
    pub pairs_dir: PathBuf,
    pub pairs_file: PathBuf,
    pub train_images: usize,
    pub pairs_images: usize,
    pub pairs: usize,
    pub seconds: f64,
}

struct Job {
    dir: PathBuf,
    name: String,
    identity: usize,
    image: usize,
}

/// Renders the dataset described by `cfg` under `out`.
pub fn generate(out: &Path, cfg: &SynthConfig, show_progress: bool) -> Result<SynthSummary> {
    cfg.validate()?;
    let started = Instant::now();
    let train_dir = out.join("train");
    let pairs_dir = out.join("pairs");
    check_previous_run(out, cfg)?;

    let mut jobs = Vec::new();
    let mut add = |root: &Path, first: usize, count: usize, per: usize| {
        for k in first..first + count {
            for j in 0..per {
                jobs.push(Job { dir: root.join(identity_name(k)), name: identity_name(k), identity: k, image: j });
            }
        }
    };
    add(&train_dir, 0, cfg.identities, cfg.images_per_identity);
    let with_pairs = cfg.pairs_folds > 0 && cfg.pairs_per_fold > 0;
    if with_pairs {
        add(&pairs_dir, cfg.identities, cfg.pairs_identities, cfg.pairs_images_per_identity);
    }
    let total_ids = cfg.identities + if with_pairs { cfg.pairs_identities } else { 0 };
    let faces: Vec<FaceParams> = (0..total_ids).map(|k| identity_params(cfg.seed, k)).collect();

    let pb = if show_progress { progress::bar(jobs.len() as u64, "img") } else { indicatif::ProgressBar::hidden() };
    pb.set_message("rendering");
    jobs.par_iter().try_for_each(|job| -> Result<()> {
        let png = render_png(cfg, &faces[job.identity], job.identity, job.image)?;
        let path = job.dir.join(format!("{}.png", image_stem(&job.name, job.image as u32 + 1)));
        write_atomic(&path, &png).with_context(|| format!("cannot write {}", path.display()))?;
        pb.inc(1);
        Ok(())
    })?;
    pb.finish_and_clear();

    let pairs_file = out.join("pairs.txt");
    let mut n_pairs = 0;
    if with_pairs {
        let names: Vec<String> = (cfg.identities..total_ids).map(identity_name).collect();
        let pairs = pairs::make_pairs(&names, cfg.pairs_images_per_identity, cfg.pairs_folds, cfg.pairs_per_fold, cfg.seed);
        n_pairs = pairs.len();
        write_atomic(&pairs_file, format_pairs(cfg.pairs_folds, cfg.pairs_per_fold, &pairs).as_bytes())
            .with_context(|| format!("cannot write {}", pairs_file.display()))?;
    }
    write_atomic(&out.join("synth.json"), serde_json::to_string_pretty(cfg)?.as_bytes())?;
    let pairs_images = if with_pairs { cfg.pairs_identities * cfg.pairs_images_per_identity } else { 0 };
    Ok(SynthSummary {
        train_dir,
        pairs_dir,
        pairs_file,
        train_images: cfg.identities * cfg.images_per_identity,
        pairs_images,
        pairs: n_pairs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Refuses to mix two different datasets in one folder.
fn check_previous_run(out: &Path, cfg: &SynthConfig) -> Result<()> {
    let marker = out.join("synth.json");
    if let Ok(text) = std::fs::read_to_string(&marker) {
        match serde_json::from_str::<SynthConfig>(&text) {
            Ok(prev) if &prev == cfg => {}
            _ => bail!(
                "{} holds a synthetic dataset made with other settings ({}); choose another folder or delete it",
                out.display(),
                marker.display()
            ),
        }
    } else if out.join("train").exists() {
        bail!("{} already has a train/ folder that facenet synth did not make; choose another folder", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::baseline::pixel_embedding;
    use crate::eval::metrics::{evaluate, EvalOptions};

    /// Pixel-baseline accuracy on pairs rendered with `nuisance(identity, image)`.
    fn baseline_with(nuisance: impl Fn(usize, usize) -> Nuisance) -> f64 {
        let (ids, per, size) = (20usize, 6usize, 96u32);
        let names: Vec<String> = (0..ids).map(identity_name).collect();
        let pairs = pairs::make_pairs(&names, per, 10, 10, 5);
        let emb = |name: &str, i: u32| {
            let k = names.iter().position(|n| n == name).unwrap();
            let img = render::render_face(&identity_params(5, k), &nuisance(k, i as usize - 1), size).unwrap();
            pixel_embedding(&img)
        };
        let mut flat = Vec::new();
        let mut same = Vec::new();
        for p in &pairs {
            flat.extend(emb(&p.name1, p.index1));
            flat.extend(emb(&p.name2, p.index2));
            same.push(p.is_same());
        }
        let dim = flat.len() / (2 * pairs.len());
        evaluate(&flat, dim, &same, &EvalOptions::default()).unwrap().accuracy_mean
    }

    #[test]
    fn identity_is_in_the_pixels_and_nuisances_hide_it() {
        // Pose and expression vary, lighting, background, clothes, noise and occluders do not:
        // the identity's features alone make pixels verify well.
        let geometric = baseline_with(|k, j| {
            let r = image_nuisance(5, k, j);
            Nuisance {
                rotation_deg: r.rotation_deg,
                scale: r.scale,
                shift: r.shift,
                yaw: r.yaw,
                smile: r.smile,
                mouth_open: r.mouth_open,
                eye_open: r.eye_open,
                gaze: r.gaze,
                brow_raise: r.brow_raise,
                ..Nuisance::neutral()
            }
        });
        // Everything varies: the raw-pixel baseline must be far from solving the task.
        let full = baseline_with(|k, j| image_nuisance(5, k, j));
        assert!(geometric >= 0.85, "geometry-only accuracy {geometric}");
        assert!(full <= 0.72, "full-nuisance accuracy {full}");
        assert!(geometric - full >= 0.15, "{geometric} vs {full}");
    }

    #[test]
    fn images_are_a_pure_function_of_seed_identity_and_index() {
        let cfg = SynthConfig { image_size: 40, ..SynthConfig::default() };
        let f = identity_params(cfg.seed, 3);
        assert_eq!(f, identity_params(cfg.seed, 3));
        assert_ne!(f, identity_params(cfg.seed, 4));
        assert_eq!(render_png(&cfg, &f, 3, 2).unwrap(), render_png(&cfg, &f, 3, 2).unwrap());
        assert_ne!(render_png(&cfg, &f, 3, 2).unwrap(), render_png(&cfg, &f, 3, 1).unwrap());
    }

    #[test]
    fn refuses_bad_settings() {
        assert!(SynthConfig { image_size: 8, ..SynthConfig::default() }.validate().is_err());
        assert!(SynthConfig { identities: 0, ..SynthConfig::default() }.validate().is_err());
        assert!(SynthConfig { pairs_images_per_identity: 1, ..SynthConfig::default() }.validate().is_err());
        assert!(SynthConfig { pairs_images_per_identity: 1, pairs_folds: 0, ..SynthConfig::default() }.validate().is_ok());
    }
}
