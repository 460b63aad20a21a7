//! The per-epoch evaluations: the LFW pairs protocol on held-out images (the shared
//! embedding path and metrics of `validate`), and loss/accuracy on the validation split.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::center_loss::CenterLoss;
use super::loss::{loss_terms, LossWeights};
use crate::data::augment::Augment;
use crate::data::loader::{plans_from_indices, BadImages, BatchLoader, LoaderConfig};
use crate::data::pairs::{read_pairs, resolve_pairs};
use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_paths, EmbedOptions};
use crate::eval::metrics::{evaluate, EvalOptions};
use crate::model::inception_resnet_v1::InceptionResnetV1;

/// LFW-protocol results of one evaluation.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LfwMetrics {
    pub accuracy: f64,
    pub accuracy_std: f64,
    pub val: f64,
    pub val_std: f64,
    pub far: f64,
    pub auc: f64,
    pub eer: f64,
    pub pairs: usize,
    pub seconds: f64,
}

/// Validation-set results.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ValMetrics {
    pub loss: f64,
    pub xent: f64,
    pub accuracy: f64,
    pub images: usize,
    pub seconds: f64,
}

/// The resolved LFW pairs of a run.
#[derive(Clone, Debug)]
pub struct LfwSet {
    /// Two paths per pair.
    pub paths: Vec<PathBuf>,
    pub issame: Vec<bool>,
    /// Pairs dropped because an image is missing.
    pub dropped: usize,
}

impl LfwSet {
    /// Reads `pairs_file` and resolves its images under `dir` (pairs with a missing image are
    /// dropped and counted, as the reference's `get_paths` does).
    pub fn load(dir: &Path, pairs_file: &Path) -> Result<LfwSet> {
        let pf = read_pairs(pairs_file).with_context(|| "reading --lfw_pairs".to_string())?;
        let (paths, issame, dropped) = resolve_pairs(dir, &pf.pairs, true)?;
        if issame.is_empty() {
            anyhow::bail!("{}: none of the {} pairs of {} has both images", dir.display(), pf.pairs.len(), pairs_file.display());
        }
        Ok(LfwSet { paths, issame, dropped })
    }
}

/// Embeds the pairs with `model` (inference mode) and runs the LFW protocol.
pub fn evaluate_lfw(
    model: &InceptionResnetV1,
    set: &LfwSet,
    embed: &EmbedOptions,
    eval: &EvalOptions,
    device: &Device,
) -> Result<LfwMetrics> {
    let t = Instant::now();
    let emb = embed_paths(model, &set.paths, embed, device, |_| {})?;
    let dim = emb.len() / set.paths.len().max(1);
    let emb: Vec<f64> = emb.into_iter().map(f64::from).collect();
    let e = evaluate(&emb, dim, &set.issame, eval).context("LFW evaluation")?;
    Ok(LfwMetrics {
        accuracy: e.accuracy_mean,
        accuracy_std: e.accuracy_std,
        val: e.val_mean,
        val_std: e.val_std,
        far: e.far_mean,
        auc: e.auc,
        eer: e.eer,
        pairs: set.issame.len(),
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// What validation needs besides the model.
pub struct ValidationInput<'a> {
    pub paths: Arc<Vec<PathBuf>>,
    pub labels: Arc<Vec<usize>>,
    pub image_size: u32,
    pub standardization: Standardization,
    pub batch_size: usize,
    pub threads: usize,
    pub centers: &'a CenterLoss,
    pub weights: LossWeights,
    pub bad: Arc<BadImages>,
}

/// Loss and accuracy of `model` (inference mode) on the validation images (centre crops),
/// averaged over images; the centres are not updated.
pub fn validate(model: &InceptionResnetV1, input: &ValidationInput, device: &Device) -> ValMetrics {
    let t = Instant::now();
    let indices: Vec<usize> = (0..input.paths.len()).collect();
    let plans = plans_from_indices(&indices, input.batch_size, 0);
    let cfg = LoaderConfig {
        augment: Augment::center_only(input.image_size),
        standardization: input.standardization,
        threads: input.threads,
        seed: 0,
    };
    let size = input.image_size as usize;
    let (mut loss, mut xent, mut acc, mut n_total) = (0.0, 0.0, 0.0, 0usize);
    for batch in BatchLoader::start(input.paths.clone(), input.labels.clone(), plans, cfg, input.bad.clone()) {
        let n = batch.len();
        if n == 0 {
            continue;
        }
        let x = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(batch.labels, [n]), device);
        let out = model.forward(x);
        let Some(logits) = out.logits else { break };
        let bc = input.centers.batch_centers(&labels);
        let terms = loss_terms(model, out.prelogits, logits, labels, &bc, &input.weights);
        let v = terms.values(&input.weights);
        loss += v.total * n as f64;
        xent += v.xent * n as f64;
        acc += v.accuracy * n as f64;
        n_total += n;
    }
    let d = n_total.max(1) as f64;
    ValMetrics { loss: loss / d, xent: xent / d, accuracy: acc / d, images: n_total, seconds: t.elapsed().as_secs_f64() }
}
