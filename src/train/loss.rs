//! The training loss of the reference's classifier training:
//!
//! ```text
//! total = mean softmax cross-entropy
//!       + weight_decay * sum(w^2)/2 over conv and fully connected weights
//!       + center_loss_factor * center loss
//!       + prelogits_norm_loss_factor * mean_batch(|| |prelogits| + 1e-4 ||_p)
//! ```
//! plus the batch accuracy, all read back in one transfer per step.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Int, Tensor};

use super::center_loss::CenterLoss;
use super::options::TrainOptions;
use crate::model::inception_resnet_v1::InceptionResnetV1;

/// The loss weights (`--weight_decay`, `--center_loss_factor`, `--prelogits_norm_loss_factor`,
/// `--prelogits_norm_p`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    pub weight_decay: f64,
    pub center_loss_factor: f64,
    pub prelogits_norm_loss_factor: f64,
    pub prelogits_norm_p: f64,
}

impl LossWeights {
    /// The weights a `facenet train` command line gives.
    pub fn from_options(opts: &TrainOptions) -> Self {
        LossWeights {
            weight_decay: opts.weight_decay,
            center_loss_factor: opts.center_loss_factor,
            prelogits_norm_loss_factor: opts.prelogits_norm_loss_factor,
            prelogits_norm_p: opts.prelogits_norm_p,
        }
    }
}

/// The terms of one batch's loss (shape `[1]` each).
pub struct LossTerms {
    /// What is minimised.
    pub total: Tensor<1>,
    /// Mean cross-entropy.
    pub xent: Tensor<1>,
    /// `weight_decay * l2 penalty` (0 when the decay is 0).
    pub weight_decay: Tensor<1>,
    /// Center loss (unweighted).
    pub center: Tensor<1>,
    /// Mean prelogits p-norm (unweighted).
    pub prelogits_norm: Tensor<1>,
    /// Fraction of the batch whose arg-max logit is its label.
    pub accuracy: Tensor<1>,
}

/// The numbers of [`LossTerms`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossValues {
    pub total: f64,
    pub xent: f64,
    /// All regularisation added to the cross-entropy: weight decay + weighted center loss +
    /// weighted prelogits norm (the reference's `RegLoss`).
    pub reg: f64,
    pub center: f64,
    pub prelogits_norm: f64,
    pub accuracy: f64,
}

/// Mean softmax cross-entropy of `logits` `[n, classes]` against `labels` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let device = logits.device();
    CrossEntropyLossConfig::new().init(&device).forward(logits, labels)
}

/// Fraction of rows whose arg-max is the label (no gradient).
pub fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let predicted: Tensor<1, Int> = logits.detach().argmax(1).reshape([n]);
    predicted.equal(labels).float().mean()
}

/// `mean over rows of (sum_j (|x_ij| + 1e-4)^p)^(1/p)` (TF's `tf.norm(abs(x) + eps, ord=p)`).
pub fn prelogits_norm(prelogits: Tensor<2>, p: f64) -> Tensor<1> {
    let a = prelogits.abs().add_scalar(1e-4);
    if p == 1.0 {
        a.sum_dim(1).mean()
    } else if p == 2.0 {
        a.square().sum_dim(1).sqrt().mean()
    } else {
        a.powf_scalar(p).sum_dim(1).powf_scalar(1.0 / p).mean()
    }
}

/// Builds the loss of one batch. `batch_centers` are the centres of the batch's labels (a
/// constant); `labels` are on the logits' device.
pub fn loss_terms(
    model: &InceptionResnetV1,
    prelogits: Tensor<2>,
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    batch_centers: &Tensor<2>,
    w: &LossWeights,
) -> LossTerms {
    let device = logits.device();
    let xent = cross_entropy(logits.clone(), labels.clone());
    let accuracy = accuracy(logits, labels);
    let center = CenterLoss::loss(prelogits.clone(), batch_centers);
    let prelogits_norm = prelogits_norm(prelogits, w.prelogits_norm_p);
    let weight_decay =
        if w.weight_decay > 0.0 { model.l2_weight_penalty().mul_scalar(w.weight_decay) } else { Tensor::zeros([1], &device) };
    let mut total = xent.clone() + weight_decay.clone();
    if w.center_loss_factor > 0.0 {
        total = total + center.clone().mul_scalar(w.center_loss_factor);
    }
    if w.prelogits_norm_loss_factor > 0.0 {
        total = total + prelogits_norm.clone().mul_scalar(w.prelogits_norm_loss_factor);
    }
    LossTerms { total, xent, weight_decay, center, prelogits_norm, accuracy }
}

impl LossTerms {
    /// Reads the numbers (one device transfer).
    pub fn values(&self, w: &LossWeights) -> LossValues {
        let device = self.total.device();
        let v: Vec<f32> = self.scalars_with(Tensor::<1>::zeros([0], &device).inner()).try_into_vec_as::<f32>().unwrap_or_default();
        read_scalars(&v, w).0
    }

    /// The numbers and then `extra` (plain, `[k]`) as one plain `[TERMS + k]` tensor, on the
    /// device (nothing read back), in the order [`read_scalars`] takes them.
    pub fn scalars_with(&self, extra: Tensor<1>) -> Tensor<1> {
        let terms = Tensor::cat(
            vec![
                self.total.clone(),
                self.xent.clone(),
                self.weight_decay.clone(),
                self.center.clone(),
                self.prelogits_norm.clone(),
                self.accuracy.clone(),
            ],
            0,
        )
        .detach()
        .inner();
        if extra.dims()[0] == 0 {
            return terms;
        }
        let device = terms.device();
        Tensor::cat(vec![terms, extra.to_device(&device)], 0)
    }
}

/// How many numbers [`LossTerms::scalars_with`] puts before the extra ones.
pub const TERMS: usize = 6;

/// What a training step leaves to read back: the loss terms and one finiteness probe per
/// kind of state ([`guard::PROBED`](super::guard::PROBED)).
pub const STEP_SCALARS: usize = TERMS + super::guard::PROBED.len();

/// The loss values and the extra numbers of what [`LossTerms::scalars_with`] made, read
/// back as `v` (missing numbers are NaN).
pub fn read_scalars(v: &[f32], w: &LossWeights) -> (LossValues, Vec<f32>) {
    let f = |i: usize| v.get(i).copied().unwrap_or(f32::NAN) as f64;
    let (center, norm) = (f(3), f(4));
    let values = LossValues {
        total: f(0),
        xent: f(1),
        reg: f(2) + w.center_loss_factor * center + w.prelogits_norm_loss_factor * norm,
        center,
        prelogits_norm: norm,
        accuracy: f(5),
    };
    let extra = v.iter().skip(TERMS).copied().collect();
    (values, extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn cross_entropy_accuracy_and_norm_by_hand() {
        let d = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![2.0f32, 0.0, 0.0, 0.0, 1.0, 3.0], [2, 3]), &d);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &d);
        let xe: f32 = cross_entropy(logits.clone(), labels.clone()).into_scalar();
        let row = |l: [f64; 3], k: usize| -(l[k] - l.iter().map(|x| x.exp()).sum::<f64>().ln());
        let want = (row([2.0, 0.0, 0.0], 0) + row([0.0, 1.0, 3.0], 1)) / 2.0;
        assert!((xe as f64 - want).abs() < 1e-5, "{xe} vs {want}");
        let acc: f32 = accuracy(logits, labels).into_scalar();
        assert_eq!(acc, 0.5);
        let p = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, -4.0, 0.0, 1.0], [2, 2]), &d);
        let n1: f32 = prelogits_norm(p.clone(), 1.0).into_scalar();
        assert!((n1 as f64 - (7.0002 + 1.0002) / 2.0).abs() < 1e-5, "{n1}");
        let n2: f32 = prelogits_norm(p.clone(), 2.0).into_scalar();
        let want2 = ((3.0001f64.powi(2) + 4.0001f64.powi(2)).sqrt() + (0.0001f64.powi(2) + 1.0001f64.powi(2)).sqrt()) / 2.0;
        assert!((n2 as f64 - want2).abs() < 1e-5, "{n2}");
        let n3: f32 = prelogits_norm(p, 3.0).into_scalar();
        let want3 = ((3.0001f64.powi(3) + 4.0001f64.powi(3)).cbrt() + (0.0001f64.powi(3) + 1.0001f64.powi(3)).cbrt()) / 2.0;
        assert!((n3 as f64 - want3).abs() < 1e-4, "{n3}");
    }
}
