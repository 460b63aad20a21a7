//! Do two devices compute the same thing? The same weights (written once, read onto each
//! device) give embeddings and a first training step on both, compared: the check that a GPU
//! backend is right before its speed means anything (`facenet bench parity`, `tools/gpu-check.sh`).

use anyhow::{Context, Result};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};

use super::center_loss::CenterLoss;
use super::loss::LossWeights;
use super::optim::Tf1Optimizer;
use super::options::OptimizerKind;
use super::step::TrainStep;
use crate::model::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Config};
use crate::model::load::load_weights;

/// What [`device_parity`] found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Parity {
    /// Lowest cosine similarity between the two devices' embeddings of the same image.
    pub embedding_cosine_min: f64,
    /// Loss of the first training step on each device (RMSProp, center loss, weight decay).
    pub first_step_loss: [f64; 2],
    /// `|a - b| / max(|a|, |b|)` of those losses.
    pub first_step_loss_rel: f64,
    /// Loss of the second step (after one update on each device).
    pub second_step_loss: [f64; 2],
    pub second_step_loss_rel: f64,
    /// How far the first device's own second-step loss moves when the images move by one
    /// part in a million ([`perturbed`]): the floor below which `second_step_loss_rel` means
    /// nothing. Some initial weights make the steps that sensitive (seen on the CPU alone:
    /// 1e-7 for most draws of the small network, 2e-4 for some; most likely a max-pool
    /// window's two largest values, or a ReLU input, within rounding of each other), and then
    /// any two backends differ by as much.
    pub second_step_sensitivity: f64,
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(1e-12)
}

/// A deterministic pseudo-random batch `[n, 3, s, s]` in about [-1, 1] (xorshift).
pub fn test_batch(n: usize, s: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n * 3 * s * s)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `x` with every value moved by a relative `amount` at most (deterministic, both signs).
pub fn perturbed(x: &[f32], amount: f32) -> Vec<f32> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    x.iter()
        .map(|v| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
            v * (1.0 + u * amount)
        })
        .collect()
}

/// Runs the network of `config` (dropout off: each backend draws its own masks) with the
/// same initial weights on `a` and `b`: embeddings of a batch of `n` images of `s` px in
/// inference mode (folded batch norm, as `facenet embed`), and two training steps.
pub fn device_parity(config: &InceptionResnetV1Config, a: &Device, b: &Device, n: usize, s: usize) -> Result<Parity> {
    let config = config.clone().with_keep_probability(1.0);
    let dir = std::env::temp_dir().join(format!("facenet-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("init.safetensors");
    // the same draw every time: how sensitive the steps are depends on it
    a.seed(0);
    let written = config.init(a).save_into(&mut SafetensorsStore::from_file(&file).overwrite(true));
    let result = written.map_err(|e| anyhow::anyhow!("{e}")).context("writing the initial weights").and_then(|_| {
        let load = |d: &Device| -> Result<InceptionResnetV1> {
            let mut m = config.init(&d.clone().autodiff());
            load_weights(&mut m, &file, true)?;
            Ok(m)
        };
        let x = test_batch(n, s);
        let embed = |d: &Device| -> Result<Vec<f32>> {
            let m = load(d)?.valid().fold_batch_norm();
            let t = Tensor::<4>::from_data(TensorData::new(x.clone(), [n, 3, s, s]), d);
            m.embed(t).try_into_vec_as::<f32>().map_err(|e| anyhow::anyhow!("{e:?}"))
        };
        let (ea, eb) = (embed(a)?, embed(b)?);
        let dim = config.embedding_size;
        let embedding_cosine_min = ea
            .chunks(dim)
            .zip(eb.chunks(dim))
            .map(|(p, q)| p.iter().zip(q).map(|(u, v)| (u * v) as f64).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        let labels: Vec<i64> = (0..n as i64).map(|i| i % config.num_classes.max(1) as i64).collect();
        let weights = LossWeights { weight_decay: 5e-5, center_loss_factor: 1e-2, prelogits_norm_loss_factor: 0.0, prelogits_norm_p: 1.0 };
        let two_steps = |d: &Device, x: &[f32]| -> Result<[f64; 2]> {
            let centers = CenterLoss::new(config.num_classes, dim, 0.9, d);
            let mut step = TrainStep::new(load(d)?, Tf1Optimizer::new(OptimizerKind::Rmsprop), centers, weights, d);
            let mut losses = [0.0; 2];
            for loss in losses.iter_mut() {
                let t = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, 3, s, s]), &d.clone().autodiff());
                *loss = step.run(t, &labels, 0.01).map_err(|e| anyhow::anyhow!("{e}"))?.total;
            }
            Ok(losses)
        };
        let (la, lb) = (two_steps(a, &x)?, two_steps(b, &x)?);
        let moved = two_steps(a, &perturbed(&x, 1e-6))?;
        let losses = [[la[0], lb[0]], [la[1], lb[1]]];
        Ok(Parity {
            embedding_cosine_min,
            first_step_loss: losses[0],
            first_step_loss_rel: rel(losses[0][0], losses[0][1]),
            second_step_loss: losses[1],
            second_step_loss_rel: rel(losses[1][0], losses[1][1]),
            second_step_sensitivity: rel(la[1], moved[1]),
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_agrees_with_itself() {
        let d = Device::flex();
        let p = device_parity(&InceptionResnetV1Config::small(16, 0.8, 4), &d, &d, 3, 48).unwrap();
        assert!(p.embedding_cosine_min > 0.99999, "{p:?}");
        assert!(p.first_step_loss_rel < 1e-6 && p.second_step_loss_rel < 1e-6, "{p:?}");
        assert!(p.first_step_loss[0].is_finite() && p.second_step_loss[0] != p.first_step_loss[0], "{p:?}");
        assert!(p.second_step_sensitivity.is_finite() && p.second_step_sensitivity < 1e-2, "{p:?}");
    }
}
