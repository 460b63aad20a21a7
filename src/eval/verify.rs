//! Verification of a model on an LFW-style pairs file: embed each distinct image once, then
//! run the LFW protocol. Shared by `validate`, the demo and reports.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::prelude::Device;

use crate::data::pairs::{read_pairs, resolve_pairs};
use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_paths, EmbedOptions};
use crate::eval::metrics::{evaluate, EvalOptions, Evaluation};
use crate::model::load::load_inference_model;
use crate::util::progress;

/// How to embed the pairs' images; `None` fields take the model's own settings.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub image_size: Option<u32>,
    pub standardization: Option<Standardization>,
    pub batch_size: usize,
    pub use_flipped_images: bool,
    pub skip_missing: bool,
    pub show_progress: bool,
}

/// The outcome of [`verify_model`].
pub struct Verification {
    pub evaluation: Evaluation,
    pub issame: Vec<bool>,
    /// Two image paths per evaluated pair.
    pub image_paths: Vec<PathBuf>,
    pub dropped_pairs: usize,
    pub distinct_images: usize,
}

/// Loads the model at `model_path` and evaluates it on `pairs_file` with images under `dir`.
pub fn verify_model(
    dir: &Path,
    pairs_file: &Path,
    model_path: &Path,
    vo: &VerifyOptions,
    eo: &EvalOptions,
    device: &Device,
) -> Result<Verification> {
    let pairs = read_pairs(pairs_file)?;
    let (paths, issame, dropped) = resolve_pairs(dir, &pairs.pairs, vo.skip_missing)?;
    let (model, meta) = load_inference_model(model_path, device).with_context(|| format!("cannot load model {}", model_path.display()))?;
    if let Some(size) = vo.image_size {
        meta.check_image_size(size)?;
    }
    let opts = EmbedOptions {
        image_size: vo.image_size.unwrap_or(meta.image_size),
        batch_size: vo.batch_size.max(1),
        standardization: vo.standardization.unwrap_or(meta.standardization),
        use_flipped_images: vo.use_flipped_images,
    };
    let mut unique: Vec<PathBuf> = paths.clone();
    unique.sort();
    unique.dedup();
    let pb = if vo.show_progress { progress::bar(unique.len() as u64, "img") } else { indicatif::ProgressBar::hidden() };
    pb.set_message("embedding");
    let emb = embed_paths(&model, &unique, &opts, device, |n| pb.inc(n as u64))?;
    pb.finish_and_clear();
    let dim = emb.len() / unique.len().max(1);
    let mut flat = Vec::with_capacity(paths.len() * dim);
    for p in &paths {
        let row = unique.binary_search(p).map_err(|_| anyhow::anyhow!("internal: {} not embedded", p.display()))?;
        flat.extend(emb[row * dim..(row + 1) * dim].iter().map(|&v| v as f64));
    }
    let evaluation = evaluate(&flat, dim, &issame, eo).context("evaluating the pairs")?;
    Ok(Verification { evaluation, issame, image_paths: paths, dropped_pairs: dropped, distinct_images: unique.len() })
}
