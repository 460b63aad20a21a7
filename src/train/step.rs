//! One optimisation step of the classifier training, the one piece of code that `facenet
//! train`, `facenet bench train` and the tests all run:
//!
//! ```text
//! forward (training mode: batch statistics, dropout)
//! loss    = cross-entropy + weight decay + center loss + prelogits norm   (crate::train::loss)
//! backward, one TF1 optimiser update of every weight                      (crate::train::optim)
//! centres of the batch's classes moved toward its prelogits               (crate::train::center_loss)
//! check   loss and the new state finite, else nothing is kept             (crate::train::guard)
//! ```
//!
//! [`TrainStep`] owns the network (on the autodiff device), the optimiser state and the class
//! centres (on the plain device of the same backend);
//! the loop around it (data, learning rate, statistics, checkpoints) is in
//! [`crate::train::trainer`].

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::center_loss::CenterLoss;
use super::data_parallel::{replica_pass, ReplicaPass, SameDevice};
use super::guard::{non_finite_kinds, sync_running_stats, weights_probe, RunningStats};
use super::loss::{read_scalars, LossValues, LossWeights, STEP_SCALARS};
use super::loss_scale::LossScale;
use super::optim::{OptimizerSnapshot, ProbeMode, Tf1Optimizer};
use super::options::TrainOptions;
use crate::model::inception_resnet_v1::InceptionResnetV1;

/// Why a step was not applied (network, optimiser, batch-norm running statistics and centres
/// are left as they were).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StepError {
    /// The loss or the state the step would have left (weights, batch-norm
    /// running statistics, optimiser slots, centres) was not a finite number; the step's loss
    /// values and the kinds of values that were not finite (names from
    /// [`guard::PROBED`](super::guard::PROBED), "loss" first when the loss was).
    #[error("non-finite {} (loss {}, cross-entropy {}, regularisation {}, center loss {})", .kinds.join(", "), .values.total, .values.xent, .values.reg, .values.center)]
    NonFinite { values: LossValues, kinds: Vec<&'static str> },
    /// The network has no Logits layer (a model without classes cannot be trained as a classifier).
    #[error("the training network has no Logits layer")]
    NoLogits,
    /// f16 training: the scaled gradients overflowed (the loss was finite); nothing was
    /// applied and the loss scale halved (see [`crate::train::loss_scale`]).
    #[error("f16 gradients overflowed at loss scale {from}: not applied, loss scale now {to}")]
    Overflow { values: LossValues, from: f64, to: f64 },
}

/// The state before a step (tensor handles: nothing copied), to go back to.
pub(super) struct Undo {
    model: InceptionResnetV1,
    stats: RunningStats,
    optimizer: OptimizerSnapshot,
    centers: CenterLoss,
    loss_scale: Option<LossScale>,
}

/// Network, optimiser and class centres of a training run, on one device.
pub struct TrainStep {
    /// `None` only while [`TrainStep::run`] moves the network through the optimiser.
    model: Option<InceptionResnetV1>,
    optimizer: Tf1Optimizer,
    centers: CenterLoss,
    weights: LossWeights,
    /// The plain (non-autodiff) device of the centres and labels.
    device: Device,
    /// Model replicas the batch is shared among (`--devices`; 1: the whole batch at once).
    replicas: usize,
    /// f16 training's dynamic loss scale (`None`: the loss is not scaled).
    loss_scale: Option<LossScale>,
}

impl TrainStep {
    /// `model` lives on the autodiff version of `device`, `centers` on `device` itself.
    ///
    /// The network is not touched here: burn initialises a parameter when it is first used,
    /// so reading one now would draw its initial values at another point of the random
    /// stream than the first step does, and change the run.
    pub fn new(model: InceptionResnetV1, optimizer: Tf1Optimizer, centers: CenterLoss, weights: LossWeights, device: &Device) -> Self {
        TrainStep { model: Some(model), optimizer, centers, weights, device: device.clone(), replicas: 1, loss_scale: None }
    }

    /// Runs one step on the images `x` (`[n, 3, h, w]`, on the model's autodiff device) with
    /// class `labels` (`n` of them) at learning rate `lr`, and returns the step's loss
    /// values. The loss values and the finiteness probes of the new state
    /// (see [`crate::train::guard`]) are read back in one transfer: a step that fails leaves
    /// network, batch-norm running statistics, optimiser and centres as they were.
    pub fn run(&mut self, x: Tensor<4>, labels: &[i64], lr: f64) -> Result<LossValues, StepError> {
        let (undo, scalars) = self.advance(x, labels, lr)?;
        let v: Vec<f32> = scalars.try_into_vec_as::<f32>().unwrap_or_else(|_| vec![f32::NAN; STEP_SCALARS]);
        let (values, quick) = read_scalars(&v, &self.weights);
        let kinds = self.non_finite(&values, &quick);
        if !kinds.is_empty() {
            self.undo(undo);
            // f16: with a finite loss, an overflow of the scaled gradients (until the scale is 1)
            if let (Some(scale), false) = (&mut self.loss_scale, kinds.contains(&"loss")) {
                let from = scale.scale;
                if scale.overflowed() {
                    return Err(StepError::Overflow { values, from, to: scale.scale });
                }
            }
            return Err(StepError::NonFinite { values, kinds });
        }
        Ok(values)
    }

    /// One step applied without reading anything back (see
    /// [`StepWindow`](super::step_window::StepWindow)): what undoes it, and its loss terms and
    /// quick finiteness probes as `[STEP_SCALARS]` on the plain device, in the order
    /// [`read_scalars`] takes them.
    pub(super) fn advance(&mut self, x: Tensor<4>, labels: &[i64], lr: f64) -> Result<(Undo, Tensor<1>), StepError> {
        let model = self.model.take().expect("the network is back after every step");
        let n = labels.len();
        let labels_plain = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [n]), &self.device);
        // synced at the end of every step, so these are the values before this forward pass
        let stats_before = RunningStats::of(&model);
        let batch_centers = self.centers.batch_centers(&labels_plain);
        // forward, loss, backward: the whole batch, or one shard per replica (--devices)
        let scale = self.loss_scale.map_or(1.0, |s| s.scale);
        let pass = replica_pass(model, x, labels, &batch_centers, &self.weights, self.replicas, scale, &SameDevice);
        let ReplicaPass { model, terms, prelogits, grads } = match pass {
            Ok(p) => p,
            Err(model) => {
                self.model = Some(stats_before.restore(*model));
                return Err(StepError::NoLogits);
            }
        };
        // the old state is kept as handles (nothing copied); the network after its first
        // forward pass, so every parameter is initialised
        let undo = Undo {
            model: model.clone(),
            stats: stats_before,
            optimizer: self.optimizer.snapshot(),
            centers: self.centers.clone(),
            loss_scale: self.loss_scale,
        };
        let new_model = self.optimizer.step_scaled(lr, model, grads, scale);
        self.centers.update(&labels_plain, prelogits, batch_centers);
        sync_running_stats(&new_model);
        self.model = Some(new_model);
        // counted as applied now (undone with the step), so that a window of steps scales as
        // single steps do
        if let Some(s) = &mut self.loss_scale {
            s.applied();
        }
        Ok((undo, terms.scalars_with(self.probes(ProbeMode::Quick))))
    }

    /// The finiteness probes of the current state, in the order of [`guard::PROBED`](super::guard::PROBED).
    fn probes(&self, mode: ProbeMode) -> Tensor<1> {
        let model = self.model();
        Tensor::cat(
            vec![
                weights_probe(model, &self.device, mode),
                RunningStats::of(model).probe(&self.device, mode),
                self.optimizer.slot_probe(mode, &self.device),
                mode.probe(self.centers.centers().clone()),
            ],
            0,
        )
    }

    /// What was not finite after a step whose read-back gave `values` and the quick probes
    /// `quick` (empty: nothing): "loss", then the [`guard::PROBED`](super::guard::PROBED)
    /// kinds. A quick probe can also overflow on large finite values, so then the exact
    /// probes of the current state decide (a second read-back, only on such steps).
    pub(super) fn non_finite(&self, values: &LossValues, quick: &[f32]) -> Vec<&'static str> {
        let mut kinds = if values.total.is_finite() { Vec::new() } else { vec!["loss"] };
        if quick.iter().any(|p| !p.is_finite()) {
            let exact = self.probes(ProbeMode::Exact).try_into_vec_as::<f32>().unwrap_or_else(|_| vec![f32::NAN; 4]);
            kinds.extend(non_finite_kinds(&exact));
        }
        kinds
    }

    /// Puts back the state `undo` was taken from (network, batch-norm running statistics,
    /// optimiser, centres).
    pub(super) fn undo(&mut self, undo: Undo) {
        drop(self.model.take());
        self.optimizer.restore(undo.optimizer);
        self.centers = undo.centers;
        self.loss_scale = undo.loss_scale;
        self.model = Some(undo.stats.restore(undo.model));
    }

    /// A fresh step as `facenet train` starts one from its options: the optimiser of
    /// `--optimizer` with no state yet, zero centres (`--center_loss_alfa`), the loss
    /// weights of `--weight_decay`, `--center_loss_factor`, `--prelogits_norm_*`.
    /// `num_classes` and `embedding_size` are the network's (its configuration's).
    pub fn from_options(opts: &TrainOptions, model: InceptionResnetV1, num_classes: usize, embedding_size: usize, device: &Device) -> Self {
        let centers = CenterLoss::new(num_classes, embedding_size, opts.center_loss_alfa, device);
        Self::new(model, Tf1Optimizer::new(opts.optimizer), centers, LossWeights::from_options(opts), device)
            .with_loss_scale(LossScale::for_precision(opts.precision))
    }

    /// The same step with the loss scaled (f16 training; `None`: not scaled).
    pub fn with_loss_scale(mut self, loss_scale: Option<LossScale>) -> Self {
        self.loss_scale = loss_scale;
        self
    }

    /// f16 training's loss scale now.
    pub fn loss_scale(&self) -> Option<LossScale> {
        self.loss_scale
    }

    /// The same step with the batch shared among `replicas` model replicas, gradients
    /// combined (see [`crate::train::data_parallel`]).
    pub fn with_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// The network (training mode, autodiff device).
    pub fn model(&self) -> &InceptionResnetV1 {
        self.model.as_ref().expect("the network is back after every step")
    }

    /// The network in inference mode (running statistics, no dropout) on the plain device.
    pub fn inference_model(&self) -> InceptionResnetV1 {
        self.model().valid()
    }

    pub fn optimizer(&self) -> &Tf1Optimizer {
        &self.optimizer
    }

    pub fn centers(&self) -> &CenterLoss {
        &self.centers
    }

    pub fn loss_weights(&self) -> LossWeights {
        self.weights
    }

    /// The plain (non-autodiff) device.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inception_resnet_v1::InceptionResnetV1Config;
    use crate::train::options::OptimizerKind;
    use burn::tensor::Distribution;

    fn weights() -> LossWeights {
        LossWeights { weight_decay: 5e-5, center_loss_factor: 1e-2, prelogits_norm_loss_factor: 0.0, prelogits_norm_p: 1.0 }
    }

    fn new_step(device: &Device) -> TrainStep {
        let ad = device.clone().autodiff();
        ad.seed(7);
        let model = InceptionResnetV1Config::small(16, 1.0, 4).init(&ad);
        TrainStep::new(model, Tf1Optimizer::new(OptimizerKind::Rmsprop), CenterLoss::new(4, 16, 0.9, device), weights(), device)
    }

    fn first_weight(step: &TrainStep) -> Vec<f32> {
        step.model().conv2d_1a.conv.weight.val().try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn a_step_updates_weights_optimiser_and_centres_and_lowers_the_loss() {
        let device = Device::flex();
        let mut step = new_step(&device);
        let ad = device.clone().autodiff();
        ad.seed(11);
        let x = Tensor::<4>::random([8, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
        let labels = [0, 1, 2, 3, 0, 1, 2, 3];
        let w0 = first_weight(&step);
        let first = step.run(x.clone(), &labels, 0.01).unwrap();
        assert!(first.total.is_finite() && first.xent > 0.0, "{first:?}");
        assert_ne!(first_weight(&step), w0);
        assert_eq!(step.optimizer().steps(), 1);
        assert!(step.centers().values().unwrap().iter().any(|&c| c != 0.0));
        let mut last = first;
        for _ in 0..5 {
            last = step.run(x.clone(), &labels, 0.01).unwrap();
        }
        assert!(last.xent < first.xent, "memorising one batch: {first:?} -> {last:?}");
        assert_eq!(step.optimizer().steps(), 6);
    }

    fn bn_state(step: &TrainStep) -> Vec<f32> {
        let m = step.model();
        let mut v = m.last_bn.running_var.value().try_into_vec_as::<f32>().unwrap();
        v.extend(m.conv2d_1a.bn.running_mean.value().try_into_vec_as::<f32>().unwrap());
        v.extend(m.conv2d_1a.bn.running_var.value().try_into_vec_as::<f32>().unwrap());
        v
    }

    #[test]
    fn a_non_finite_loss_changes_nothing() {
        let device = Device::flex();
        let mut step = new_step(&device);
        let ad = device.clone().autodiff();
        let mut v = vec![0.5f32; 2 * 3 * 32 * 32];
        v[5] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(v, [2, 3, 32, 32]), &ad);
        let c0 = step.centers().values().unwrap();
        let e = step.run(x, &[0, 1], 0.01).unwrap_err();
        let StepError::NonFinite { values, kinds } = &e else { panic!("{e:?}") };
        assert!(!values.total.is_finite());
        assert_eq!(kinds[0], "loss");
        assert!(e.to_string().starts_with("non-finite loss"), "{e}");
        // the first forward pass initialised the weights: compare with a good step's start
        let w0 = first_weight(&step);
        let bn0 = bn_state(&step);
        assert!(bn0.iter().all(|x| x.is_finite()), "NaN statistics of the refused step were kept");
        assert_eq!(step.centers().values().unwrap(), c0);
        assert_eq!(step.optimizer().steps(), 0);
        assert_eq!(step.optimizer().num_tracked(), 0);
        // and the step after it runs from there
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
        step.run(x, &[0, 1], 0.01).unwrap();
        assert_ne!(first_weight(&step), w0);
        assert_ne!(bn_state(&step), bn0);
    }

    #[test]
    fn a_diverging_learning_rate_is_refused_before_any_state_turns_non_finite() {
        // ADAM at an absurd rate: weights, then batch-norm variances, blow up within a few
        // steps; every refused step leaves the last finite state in place
        let device = Device::flex();
        let ad = device.clone().autodiff();
        ad.seed(7);
        let model = InceptionResnetV1Config::small(16, 1.0, 4).init(&ad);
        let mut step =
            TrainStep::new(model, Tf1Optimizer::new(OptimizerKind::Adam), CenterLoss::new(4, 16, 0.9, &device), weights(), &device);
        ad.seed(11);
        let x = Tensor::<4>::random([8, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
        let labels = [0, 1, 2, 3, 0, 1, 2, 3];
        let mut refused = None;
        for i in 0..12 {
            let before = (first_weight(&step), bn_state(&step), step.centers().values().unwrap(), step.optimizer().steps());
            match step.run(x.clone(), &labels, 1e30) {
                Ok(v) => assert!(v.total.is_finite(), "step {i}: {v:?}"),
                Err(e) => {
                    let after = (first_weight(&step), bn_state(&step), step.centers().values().unwrap(), step.optimizer().steps());
                    assert_eq!(after, before, "step {i}: a refused step changed the state ({e})");
                    refused = Some(e);
                    break;
                }
            }
        }
        let e = refused.expect("a learning rate of 1e30 must be refused within 12 steps");
        assert!(matches!(e, StepError::NonFinite { .. }), "{e:?}");
        let weights_now = step.model().valid();
        assert!(crate::train::guard::weights_probe(&weights_now, &device, ProbeMode::Exact).into_scalar::<f32>() == 0.0);
        assert!(bn_state(&step).iter().all(|x| x.is_finite()));
        let slots = step.optimizer().state_tensors().unwrap();
        assert!(slots.values().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    }
}
