//! The non-finite guard of a training step: what is checked, how cheaply, and how a bad step
//! is undone.
//!
//! Every step, before anything is committed, one `[4]` tensor of finiteness probes is built on
//! the device and read back with the loss values (one transfer): new weights, new batch-norm
//! running statistics, new optimiser slots, new class centres. Each probe is the plain sum of
//! its tensors ([`ProbeMode::Quick`]: one read pass, no temporary), finite when all are; a
//! non-finite sum can also be an overflow of large finite values, so then the exact probes
//! (`sum(t * 0)`, [`finite_probe`]) decide, read back a second time (only on such steps).
//! Gradients are not probed: a non-finite gradient always reaches a slot (RMSProp's mean
//! square, momentum's accumulator, Adam's moments) or, for plain SGD, the weight.
//!
//! burn updates batch-norm running statistics inside the forward pass, in state shared by
//! every clone of the network ([`burn::module::RunningState`]); so the statistics are
//! snapshotted (tensor handles, nothing copied) before the forward and written back when the
//! step is refused. Found by a tester: at a diverging learning rate the running variances
//! overflow to infinity while the loss is still finite, so they are probed too.
//!
//! [`NonFinitePolicy`] is what the loop does with refused steps: after `--max_nonfinite_steps`
//! consecutive ones, roll back to the last checkpoint with the learning rate multiplied by
//! `--nonfinite_lr_factor`, or stop.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor};

use super::optim::{finite_probe, Probe, ProbeMode};
use crate::model::inception_resnet_v1::InceptionResnetV1;

/// What each element of the probe tensor covers, in order.
pub const PROBED: [&str; 4] = ["weight", "batch-norm running statistic", "optimiser slot", "class centre"];

/// Rollbacks to a checkpoint one process makes before it gives up and stops.
pub const MAX_ROLLBACKS: usize = 5;

fn is_running_stat(name: &str, container: &str) -> bool {
    container == "Struct:BatchNorm" && (name == "running_mean" || name == "running_var")
}

/// Tracks the field being visited, to tell batch-norm running statistics from parameters.
#[derive(Default)]
struct Path(Vec<(String, String)>);

impl Path {
    fn enter(&mut self, name: &str, container: &str) {
        self.0.push((name.to_string(), container.to_string()));
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn in_running_stat(&self) -> bool {
        self.0.last().is_some_and(|(n, c)| is_running_stat(n, c))
    }
}

/// The batch-norm running statistics of a network (handles), keyed by their id.
pub struct RunningStats(HashMap<ParamId, Tensor<1>>);

struct StatsVisitor {
    path: Path,
    stats: HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for StatsVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // only running statistics are read: a parameter not used yet stays uninitialised
        if self.path.in_running_stat() {
            let t = param.val();
            let n = t.dims().iter().product::<usize>();
            self.stats.insert(param.id, t.reshape([n]));
        }
    }
}

struct StatsRestorer<'a> {
    path: Path,
    stats: &'a HashMap<ParamId, Tensor<1>>,
}

impl ModuleMapper for StatsRestorer<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.path.in_running_stat() {
            return param;
        }
        match self.stats.get(&param.id) {
            Some(saved) => {
                let dims = param.val().dims();
                Param::initialized(param.id, saved.clone().reshape(dims))
            }
            None => param,
        }
    }
}

/// Folds the running-statistics updates the last forward pass left pending into the values
/// (burn does so lazily, at the next forward or `valid()`), so that they can be read and
/// restored. Only after a forward pass: `valid()` initialises parameters not used yet.
pub fn sync_running_stats(model: &InceptionResnetV1) {
    let _ = model.valid();
}

impl RunningStats {
    /// The current (synced) running statistics of `model`.
    pub fn of(model: &InceptionResnetV1) -> Self {
        let mut v = StatsVisitor { path: Path::default(), stats: HashMap::new() };
        model.visit(&mut v);
        RunningStats(v.stats)
    }

    /// Writes these statistics back into `model` (into the state it shares with its clones),
    /// after syncing the updates a forward pass left pending (which would otherwise overwrite
    /// them at the next forward). Only after a forward pass (see [`sync_running_stats`]).
    pub fn restore(&self, model: InceptionResnetV1) -> InceptionResnetV1 {
        sync_running_stats(&model);
        model.map(&mut StatsRestorer { path: Path::default(), stats: &self.0 })
    }

    /// The probe over all of them.
    pub fn probe(&self, device: &Device, mode: ProbeMode) -> Tensor<1> {
        let mut p = Probe::new(mode);
        for t in self.0.values() {
            p.add(t.clone().inner());
        }
        p.total(device)
    }
}

struct WeightsVisitor {
    path: Path,
    probe: Probe,
}

impl ModuleVisitor for WeightsVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.path.in_running_stat() {
            self.probe.add(param.val().inner());
        }
    }
}

/// The probe over every trainable and frozen parameter of `model` (not the running
/// statistics), on `device`.
pub fn weights_probe(model: &InceptionResnetV1, device: &Device, mode: ProbeMode) -> Tensor<1> {
    let mut v = WeightsVisitor { path: Path::default(), probe: Probe::new(mode) };
    model.visit(&mut v);
    v.probe.total(device)
}

/// The kind of value of `model` that is not finite ("weight" or "batch-norm running
/// statistic"), if any; two numbers read back. For a network whose running statistics are
/// synced (an inference copy, or the training network between steps).
pub fn non_finite_in_model(model: &InceptionResnetV1) -> Option<&'static str> {
    let device = model.conv2d_1a.conv.weight.val().inner().device();
    let exact = ProbeMode::Exact;
    let probes = Tensor::cat(vec![weights_probe(model, &device, exact), RunningStats::of(model).probe(&device, exact)], 0);
    let v: Vec<f32> = probes.try_into_vec_as::<f32>().unwrap_or_else(|_| vec![f32::NAN; 2]);
    non_finite_kinds(&v).first().copied()
}

/// Which probed kinds of values were not finite (names from [`PROBED`]).
pub fn non_finite_kinds(probes: &[f32]) -> Vec<&'static str> {
    PROBED.iter().zip(probes).filter(|(_, p)| !p.is_finite()).map(|(n, _)| *n).collect()
}

/// The probe of one tensor, for callers outside a step (a checkpoint about to be written).
pub fn all_finite<const D: usize>(t: Tensor<D>) -> bool {
    finite_probe(t).into_scalar::<f32>().is_finite()
}

/// What the loop does after a refused step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NonFiniteAction {
    /// Go on with the next batch.
    Continue,
    /// Roll back to the last checkpoint, the learning rate multiplied by this factor.
    Rollback(f64),
    /// Stop the run.
    Stop,
}

/// Counts consecutive refused steps (`--max_nonfinite_steps`, `--nonfinite_lr_factor`).
#[derive(Clone, Debug)]
pub struct NonFinitePolicy {
    pub max_consecutive: usize,
    pub lr_factor: f64,
    pub consecutive: usize,
    pub rollbacks: usize,
}

impl NonFinitePolicy {
    pub fn new(max_consecutive: usize, lr_factor: f64) -> Self {
        NonFinitePolicy { max_consecutive, lr_factor, consecutive: 0, rollbacks: 0 }
    }

    /// A step was applied.
    pub fn good(&mut self) {
        self.consecutive = 0;
    }

    /// A step was refused; `has_checkpoint`: there is a checkpoint to go back to.
    pub fn bad(&mut self, has_checkpoint: bool) -> NonFiniteAction {
        self.consecutive += 1;
        if self.consecutive < self.max_consecutive.max(1) {
            return NonFiniteAction::Continue;
        }
        self.consecutive = 0;
        if self.lr_factor > 0.0 && has_checkpoint && self.rollbacks < MAX_ROLLBACKS {
            self.rollbacks += 1;
            NonFiniteAction::Rollback(self.lr_factor)
        } else {
            NonFiniteAction::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inception_resnet_v1::InceptionResnetV1Config;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn probes_are_zero_when_finite_and_nan_otherwise() {
        let d = Device::flex();
        let big = Tensor::<1>::from_data(TensorData::new(vec![3e38f32, 3e38, -1.0], [3]), &d);
        assert!(all_finite(big), "large finite values must not overflow the probe");
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let t = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, bad, 0.0, 2.0], [2, 2]), &d);
            assert!(!all_finite(t), "{bad}");
        }
        assert_eq!(non_finite_kinds(&[f32::NAN, 0.0, f32::INFINITY, 0.0]), vec!["weight", "optimiser slot"]);
    }

    #[test]
    fn a_quick_probe_is_finite_when_all_values_are_and_may_overflow_otherwise() {
        let d = Device::flex();
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &d);
        let quick = |v: Vec<f32>| ProbeMode::Quick.probe(t(v)).into_scalar::<f32>();
        assert!(quick(vec![1.0, -2.0, 1e30]).is_finite());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(!quick(vec![1.0, bad, 2.0]).is_finite(), "{bad}");
        }
        // the overflow the exact probe is there for
        assert!(!quick(vec![3e38, 3e38]).is_finite());
        assert!(ProbeMode::Exact.probe(t(vec![3e38, 3e38])).into_scalar::<f32>() == 0.0);
    }

    #[test]
    fn running_statistics_are_restored_after_a_forward_pass() {
        let plain = Device::flex();
        let ad = plain.clone().autodiff();
        ad.seed(3);
        let model = InceptionResnetV1Config::small(16, 1.0, 4).init(&ad);
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.3, 2.0), &ad);
        let _ = model.forward(x.clone());
        sync_running_stats(&model);
        let before = RunningStats::of(&model);
        let values = |m: &InceptionResnetV1| m.last_bn.running_var.value().try_into_vec_as::<f32>().unwrap();
        let v0 = values(&model);
        assert!(before.probe(&plain, ProbeMode::Exact).into_scalar::<f32>() == 0.0);
        // a forward pass moves them (in state shared with every clone) ...
        let _ = model.forward(x.mul_scalar(50.0));
        sync_running_stats(&model);
        assert_ne!(values(&model), v0);
        assert!(weights_probe(&model, &plain, ProbeMode::Exact).into_scalar::<f32>() == 0.0);
        // ... and restoring puts every one back
        let model = before.restore(model.clone());
        assert_eq!(values(&model), v0);
        let after = RunningStats::of(&model);
        assert_eq!(after.0.len(), before.0.len());
        for (id, t) in &before.0 {
            assert_eq!(t.clone().try_into_vec_as::<f32>().unwrap(), after.0[id].clone().try_into_vec_as::<f32>().unwrap());
        }
    }

    /// The guard's cost on the full network (23.5 M parameters), CPU: the weights and
    /// running-statistics probes read back, timed, exact and quick; the slot probe is a pass
    /// over the same number of values per tensor. `cargo test --release --lib probe_cost --
    /// --ignored --nocapture`
    #[test]
    #[ignore]
    fn probe_cost_on_the_full_network() {
        let plain = Device::flex();
        let ad = plain.clone().autodiff();
        let model = InceptionResnetV1Config::new().with_embedding_size(128).with_num_classes(1000).init(&ad);
        let _ = model.forward(Tensor::<4>::random([2, 3, 160, 160], Distribution::Normal(0.0, 1.0), &ad));
        sync_running_stats(&model);
        for mode in [ProbeMode::Exact, ProbeMode::Quick] {
            let mut times = Vec::new();
            for _ in 0..5 {
                let t = std::time::Instant::now();
                let p = Tensor::cat(vec![weights_probe(&model, &plain, mode), RunningStats::of(&model).probe(&plain, mode)], 0);
                assert!(p.try_into_vec_as::<f32>().unwrap().iter().all(|v| v.is_finite()));
                times.push(t.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            eprintln!("weights + running statistics probe of the full network, {mode:?}: median {:.1} ms", times[2] * 1e3);
        }
    }

    #[test]
    fn policy_rolls_back_after_n_consecutive_then_stops() {
        let mut p = NonFinitePolicy::new(3, 0.5);
        assert_eq!(p.bad(true), NonFiniteAction::Continue);
        assert_eq!(p.bad(true), NonFiniteAction::Continue);
        p.good();
        assert_eq!(p.bad(true), NonFiniteAction::Continue);
        assert_eq!(p.bad(true), NonFiniteAction::Continue);
        assert_eq!(p.bad(true), NonFiniteAction::Rollback(0.5));
        // no checkpoint to go back to, or rollbacks disabled: stop
        let mut q = NonFinitePolicy::new(1, 0.5);
        assert_eq!(q.bad(false), NonFiniteAction::Stop);
        let mut r = NonFinitePolicy::new(1, 0.0);
        assert_eq!(r.bad(true), NonFiniteAction::Stop);
        let mut s = NonFinitePolicy::new(1, 0.5);
        for _ in 0..MAX_ROLLBACKS {
            assert_eq!(s.bad(true), NonFiniteAction::Rollback(0.5));
        }
        assert_eq!(s.bad(true), NonFiniteAction::Stop);
    }
}
