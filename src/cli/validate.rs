//! `facenet validate`: the LFW verification protocol on a model's or a file's embeddings.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::limits::{self, MAX_FOLDS};
use crate::data::npy;
use crate::data::preprocess::Standardization;
use crate::eval::metrics::{evaluate, DistanceMetric, EvalOptions, Evaluation};
use crate::eval::summary::print_summary;
use crate::eval::verify::{verify_model, VerifyOptions};
use crate::report::verification::write_verification_report;
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceArg;
use crate::util::precision::{describe_products, set_precision, PrecisionArg};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Aligned LFW-style image folder (reference: first positional argument)
    #[arg(value_name = "LFW_DIR")]
    pub lfw_dir_pos: Option<PathBuf>,
    /// Model checkpoint (reference: second positional argument)
    #[arg(value_name = "MODEL")]
    pub model_pos: Option<PathBuf>,
    /// Aligned LFW-style image folder
    #[arg(long)]
    pub lfw_dir: Option<PathBuf>,
    /// Pairs file
    #[arg(long, default_value = "data/pairs.txt")]
    pub lfw_pairs: PathBuf,
    /// Model checkpoint folder or file (also a facenet-pytorch .pt, or the reference's TensorFlow
    /// model: folder, checkpoint prefix or frozen .pb)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Precomputed embeddings (.npy, 2N x D float32/float64; rows 2k and 2k+1 form pair k)
    #[arg(long, requires = "issame")]
    pub embeddings: Option<PathBuf>,
    /// Same-person flags for --embeddings (.npy, N bools)
    #[arg(long, requires = "embeddings")]
    pub issame: Option<PathBuf>,
    /// Images per embedding batch
    #[arg(long, default_value_t = 100, value_parser = limits::batch_size())]
    pub lfw_batch_size: usize,
    /// Image side in pixels fed to the model [default: the model's own, 160 for published models]
    #[arg(long, value_parser = limits::image_size())]
    pub image_size: Option<u32>,
    /// Number of cross-validation folds
    #[arg(long, default_value_t = 10, value_parser = limits::usize_in(2, MAX_FOLDS))]
    pub lfw_nrof_folds: usize,
    /// Distance: 0 = squared Euclidean, 1 = arccos of cosine similarity / pi
    #[arg(long, default_value_t = 0, value_parser = limits::u32_in(0, 1))]
    pub distance_metric: u32,
    /// Concatenate each image's embedding with that of its horizontal flip
    #[arg(long)]
    pub use_flipped_images: bool,
    /// Subtract the training folds' mean embedding before computing distances
    #[arg(long)]
    pub subtract_mean: bool,
    /// Standardise pixels as (x - 127.5) / 128 instead of per image [default: what the model was trained with]
    #[arg(long)]
    pub use_fixed_image_standardization: bool,
    /// Drop pairs whose images are missing instead of failing
    #[arg(long)]
    pub skip_missing: bool,
    /// Also write the results as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an HTML report (ROC, distance histograms, per-fold table, worst errors)
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArg,
}

pub fn run(a: ValidateArgs) -> Result<()> {
    let opts = EvalOptions {
        nrof_folds: a.lfw_nrof_folds,
        distance_metric: DistanceMetric::from_index(a.distance_metric)?,
        subtract_mean: a.subtract_mean,
        ..EvalOptions::default()
    };
    let mut image_paths: Option<Vec<PathBuf>> = None;
    let (eval, issame) = match (&a.embeddings, &a.issame) {
        (Some(e), Some(i)) => evaluate_files(e, i, &opts)?,
        _ => {
            let lfw_dir = a.lfw_dir.clone().or(a.lfw_dir_pos.clone());
            let model = a.model.clone().or(a.model_pos.clone());
            match (lfw_dir, model) {
                (Some(dir), Some(model)) => {
                    let (e, same, paths) = evaluate_model(&dir, &model, &a, &opts)?;
                    image_paths = Some(paths);
                    (e, same)
                }
                _ => bail!("give --lfw_dir and --model (or LFW_DIR MODEL), or --embeddings and --issame"),
            }
        }
    };
    print_summary(&eval);
    if let Some(path) = &a.json {
        write_json(path, &eval)?;
        println!("Results written to {}", path.display());
    }
    if let Some(path) = &a.report {
        let source = a.embeddings.clone().or(a.model.clone()).or(a.model_pos.clone()).unwrap_or_default();
        let title = format!("facenet validate: {}", source.display());
        write_verification_report(path, &title, &eval, &issame, image_paths.as_deref())?;
        println!("Report written to {}", path.display());
    }
    Ok(())
}

/// Embeds every distinct image of the pairs once with the model and evaluates.
fn evaluate_model(dir: &Path, model_path: &Path, a: &ValidateArgs, opts: &EvalOptions) -> Result<(Evaluation, Vec<bool>, Vec<PathBuf>)> {
    let vo = VerifyOptions {
        image_size: a.image_size,
        standardization: a.use_fixed_image_standardization.then_some(Standardization::Fixed),
        batch_size: a.lfw_batch_size,
        use_flipped_images: a.use_flipped_images,
        skip_missing: a.skip_missing,
        show_progress: true,
    };
    let device = a.device.open()?;
    set_precision(a.precision.precision, &device)?;
    eprintln!("Device: {}, {}", device.description, describe_products());
    let v = verify_model(dir, &a.lfw_pairs, model_path, &vo, opts, &device.device)?;
    if v.dropped_pairs > 0 {
        eprintln!("warning: {} pairs dropped: image missing (--skip_missing)", v.dropped_pairs);
    }
    println!("Evaluated {} pairs ({} distinct images)", v.issame.len(), v.distinct_images);
    Ok((v.evaluation, v.issame, v.image_paths))
}

/// Evaluates embeddings and pair labels stored as .npy files.
pub fn evaluate_files(embeddings: &Path, issame: &Path, opts: &EvalOptions) -> Result<(Evaluation, Vec<bool>)> {
    let (values, rows, cols) = npy::read_matrix(embeddings)?;
    let same = npy::read_bools(issame)?;
    if rows != 2 * same.len() {
        bail!(
            "{} has {rows} rows but {} holds {} pairs: expected {} rows (two per pair)",
            embeddings.display(),
            issame.display(),
            same.len(),
            2 * same.len()
        );
    }
    let eval = evaluate(&values, cols, &same, opts).with_context(|| format!("evaluating {}", embeddings.display()))?;
    Ok((eval, same))
}

/// The JSON summary of `validate --json`.
pub fn write_json(path: &Path, e: &Evaluation) -> Result<()> {
    let v = serde_json::json!({
        "accuracy_mean": e.accuracy_mean,
        "accuracy_std": e.accuracy_std,
        "val_mean": e.val_mean,
        "val_std": e.val_std,
        "far_mean": e.far_mean,
        "auc": e.auc,
        "eer": e.eer,
        "accuracy_per_fold": e.accuracy_per_fold,
        "best_threshold_per_fold": e.best_threshold_per_fold,
    });
    write_atomic(path, serde_json::to_string_pretty(&v)?.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}
