//! The reference's optimisers with TensorFlow 1 semantics, applied to a burn module.
//!
//! burn's own optimisers differ in details that change the trajectory (RMSProp's epsilon
//! outside the root and zero-initialised mean square, Adam's bias correction on epsilon, no
//! Nesterov form matching TF's), so the five update rules are written here, one per file, each
//! exactly as TF1's `Apply*` kernels compute it:
//!
//! | `--optimizer` | rule | fixed hyper-parameters |
//! |---|---|---|
//! | `ADAGRAD` | [`adagrad`] | initial accumulator 0.1 |
//! | `ADADELTA` | [`adadelta`] | rho 0.9, epsilon 1e-6 |
//! | `ADAM` | [`adam`] | beta1 0.9, beta2 0.999, epsilon 0.1 |
//! | `RMSPROP` | [`rmsprop`] | decay 0.9, momentum 0.9, epsilon 1.0, mean square starts at 1 |
//! | `MOM` | [`momentum`] | momentum 0.9, Nesterov |
//!
//! [`Tf1Optimizer`] walks the module with a [`ModuleMapper`], so its state (the "slots") is
//! keyed by the parameter's path (`repeat_1.0.branch0.conv.weight`), not by burn's random
//! parameter ids: a checkpoint's optimiser state reloads into a freshly built model. Every
//! parameter that has a gradient is updated; frozen ones (BN gamma) have none and keep their
//! value, like TF's non-trainable variables.

pub mod adadelta;
pub mod adagrad;
pub mod adam;
pub mod momentum;
pub mod rmsprop;

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use super::options::OptimizerKind;

/// One TF1 update rule over a flattened parameter.
pub trait UpdateRule: Send + Sync {
    /// Names of the per-parameter slots (as TF calls them), in the order of `apply`'s slots.
    fn slot_names(&self) -> &'static [&'static str];
    /// Initial slot values for a parameter shaped like `like`.
    fn init_slots(&self, like: &Tensor<1>) -> Vec<Tensor<1>>;
    /// One update with learning rate `lr`; `t` counts the optimiser's steps including this
    /// one (1 for the first). Returns the new parameter; updates `slots` in place.
    fn apply(&self, lr: f64, t: u64, w: Tensor<1>, g: Tensor<1>, slots: &mut [Tensor<1>]) -> Tensor<1>;
}

/// The rule of `kind`.
pub fn rule_for(kind: OptimizerKind) -> Box<dyn UpdateRule> {
    match kind {
        OptimizerKind::Adagrad => Box::new(adagrad::Adagrad::default()),
        OptimizerKind::Adadelta => Box::new(adadelta::Adadelta::default()),
        OptimizerKind::Adam => Box::new(adam::Adam::default()),
        OptimizerKind::Rmsprop => Box::new(rmsprop::RmsProp::default()),
        OptimizerKind::Mom => Box::new(momentum::NesterovMomentum::default()),
    }
}

/// A named f32 tensor as stored in a checkpoint: `(shape, values)`.
pub type StoredTensor = (Vec<usize>, Vec<f32>);

/// A TF1-semantics optimiser for a whole module, with its state keyed by parameter path.
pub struct Tf1Optimizer {
    kind: OptimizerKind,
    rule: Box<dyn UpdateRule>,
    slots: BTreeMap<String, Vec<Tensor<1>>>,
    steps: u64,
}

impl Tf1Optimizer {
    pub fn new(kind: OptimizerKind) -> Self {
        Tf1Optimizer { kind, rule: rule_for(kind), slots: BTreeMap::new(), steps: 0 }
    }

    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Number of steps applied so far (TF's `global_step` as seen by the optimiser).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Number of parameters with state.
    pub fn num_tracked(&self) -> usize {
        self.slots.len()
    }

    /// Applies one update with learning rate `lr` to every parameter of `module` that has a
    /// gradient in `grads`; returns the updated module (same parameter ids, same autodiff
    /// state).
    pub fn step<M: Module>(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        self.step_scaled(lr, module, grads, 1.0)
    }

    /// [`step`](Self::step) with gradients of a loss multiplied by `loss_scale` (f16 training,
    /// [`crate::train::loss_scale`]): each is divided by it before the update.
    pub fn step_scaled<M: Module>(&mut self, lr: f64, module: M, mut grads: GradientsParams, loss_scale: f64) -> M {
        self.steps += 1;
        let mut mapper = StepMapper {
            path: Vec::new(),
            grads: &mut grads,
            rule: self.rule.as_ref(),
            slots: &mut self.slots,
            lr,
            t: self.steps,
            unscale: (loss_scale != 1.0).then(|| 1.0 / loss_scale),
        };
        module.map(&mut mapper)
    }

    /// The finiteness probe (see [`Probe`]) over every optimiser slot, `[1]` on `device`.
    /// Nothing is read back.
    pub fn slot_probe(&self, mode: ProbeMode, device: &Device) -> Tensor<1> {
        let mut p = Probe::new(mode);
        for t in self.slots.values().flatten() {
            p.add(t.clone());
        }
        p.total(device)
    }

    /// A copy of the state (tensor handles: no values are copied), to put back with
    /// [`restore`](Self::restore) when a step must not count.
    pub fn snapshot(&self) -> OptimizerSnapshot {
        OptimizerSnapshot { slots: self.slots.clone(), steps: self.steps }
    }

    /// Puts back the state of [`snapshot`](Self::snapshot).
    pub fn restore(&mut self, s: OptimizerSnapshot) {
        self.slots = s.slots;
        self.steps = s.steps;
    }

    /// The state as named tensors (`<param path>/<slot name>`) for a checkpoint.
    pub fn state_tensors(&self) -> Result<BTreeMap<String, StoredTensor>> {
        let names = self.rule.slot_names();
        let mut out = BTreeMap::new();
        for (path, slots) in &self.slots {
            for (name, t) in names.iter().zip(slots) {
                let values: Vec<f32> = t.clone().try_into_vec_as::<f32>().map_err(|e| anyhow::anyhow!("reading optimizer state: {e:?}"))?;
                out.insert(format!("{path}/{name}"), (t.dims().to_vec(), values));
            }
        }
        Ok(out)
    }

    /// Restores the state saved by [`state_tensors`](Self::state_tensors) after `steps` steps;
    /// tensors are created on `device` (the plain, non-autodiff device).
    pub fn load_state(&mut self, tensors: &BTreeMap<String, StoredTensor>, steps: u64, device: &Device) -> Result<()> {
        let names = self.rule.slot_names();
        let mut by_param: BTreeMap<String, Vec<Option<Tensor<1>>>> = BTreeMap::new();
        for (key, (shape, values)) in tensors {
            let Some((path, slot)) = key.rsplit_once('/') else {
                bail!("optimizer state: unexpected tensor name '{key}'");
            };
            let Some(i) = names.iter().position(|n| *n == slot) else {
                bail!(
                    "optimizer state: slot '{slot}' does not belong to {} (slots {:?}); was the run trained with another --optimizer?",
                    self.kind.name(),
                    names
                );
            };
            let n: usize = shape.iter().product();
            if n != values.len() {
                bail!("optimizer state: '{key}' has {} values for shape {shape:?}", values.len());
            }
            let t = Tensor::<1>::from_data(TensorData::new(values.clone(), [n]), device);
            by_param.entry(path.to_string()).or_insert_with(|| vec![None; names.len()])[i] = Some(t);
        }
        let mut slots = BTreeMap::new();
        for (path, v) in by_param {
            if v.iter().any(Option::is_none) {
                bail!("optimizer state: '{path}' lacks some of the slots {names:?}");
            }
            slots.insert(path, v.into_iter().flatten().collect());
        }
        self.slots = slots;
        self.steps = steps;
        Ok(())
    }
}

/// The optimiser state at one point ([`Tf1Optimizer::snapshot`]).
pub struct OptimizerSnapshot {
    slots: BTreeMap<String, Vec<Tensor<1>>>,
    steps: u64,
}

/// `0` when every element of `t` is finite, NaN when one is NaN or infinite: `sum(t * 0)`.
/// One element-wise pass into a temporary and a reduction per tensor, no read-back; unlike
/// `sum(t)` it cannot overflow on large finite values, and it needs no NaN-aware max.
pub fn finite_probe<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    t.mul_scalar(0.0).sum()
}

/// How a [`Probe`] reduces each tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// `sum(t)`: one read pass and no temporary. Finite when every value is, except that
    /// large finite values can overflow the sum; so a non-finite quick probe is a question
    /// that the exact probe answers (the training step does so before refusing anything).
    Quick,
    /// [`finite_probe`]: exactly "every value is finite", at the cost of a temporary.
    Exact,
}

impl ProbeMode {
    /// The probe of one tensor in this mode.
    pub fn probe<const D: usize>(self, t: Tensor<D>) -> Tensor<1> {
        match self {
            ProbeMode::Quick => t.sum(),
            ProbeMode::Exact => finite_probe(t),
        }
    }
}

/// Finiteness probes of several tensors, combined into one with [`Probe::total`].
pub struct Probe {
    mode: ProbeMode,
    parts: Vec<Tensor<1>>,
}

impl Probe {
    pub fn new(mode: ProbeMode) -> Self {
        Probe { mode, parts: Vec::new() }
    }

    /// Adds the probe of `t`.
    pub fn add<const D: usize>(&mut self, t: Tensor<D>) {
        self.parts.push(self.mode.probe(t));
    }

    /// `[1]` on `device`: the sum of the probes (0 when none were added). In [`ProbeMode::Exact`]
    /// 0 when all the tensors added were finite, else NaN.
    pub fn total(self, device: &Device) -> Tensor<1> {
        if self.parts.is_empty() {
            return Tensor::zeros([1], device);
        }
        Tensor::cat(self.parts.into_iter().map(|t| t.to_device(device)).collect(), 0).sum()
    }
}

struct StepMapper<'a> {
    path: Vec<String>,
    grads: &'a mut GradientsParams,
    rule: &'a dyn UpdateRule,
    slots: &'a mut BTreeMap<String, Vec<Tensor<1>>>,
    lr: f64,
    t: u64,
    /// Multiplies every gradient first (`1 / loss scale`), if set.
    unscale: Option<f64>,
}

impl ModuleMapper for StepMapper<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let autodiff = tensor.is_autodiff();
        let require_grad = tensor.is_require_grad();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let w: Tensor<1> = tensor.inner().reshape([n]);
        let mut g: Tensor<1> = grad.inner().reshape([n]);
        if let Some(u) = self.unscale {
            g = g.mul_scalar(u);
        }
        let key = self.path.join(".");
        let slots = self.slots.entry(key).or_insert_with(|| self.rule.init_slots(&w));
        let mut out = self.rule.apply(self.lr, self.t, w, g, slots).reshape(dims);
        if autodiff {
            out = Tensor::from_inner(out);
            if let Some(s) = checkpointing {
                out = out.with_gradient_checkpointing_strategy(s);
            }
            if require_grad {
                out = out.require_grad();
            }
        }
        Param::from_mapped_value(id, out, mapper)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::UpdateRule;

    /// Runs `rule` on a 2-element parameter with the given gradients; returns the parameter
    /// after each step.
    pub fn run(rule: &dyn UpdateRule, lr: f64, w0: [f32; 2], grads: &[[f32; 2]]) -> Vec<[f32; 2]> {
        let device = Device::flex();
        let mut w = Tensor::<1>::from_data(TensorData::new(w0.to_vec(), [2]), &device);
        let mut slots = rule.init_slots(&w);
        let mut out = Vec::new();
        for (i, g) in grads.iter().enumerate() {
            let g = Tensor::<1>::from_data(TensorData::new(g.to_vec(), [2]), &device);
            w = rule.apply(lr, i as u64 + 1, w, g, &mut slots);
            let v: Vec<f32> = w.clone().try_into_vec_as::<f32>().unwrap();
            out.push([v[0], v[1]]);
        }
        out
    }

    pub fn assert_close(got: &[[f32; 2]], want: &[[f64; 2]]) {
        assert_eq!(got.len(), want.len());
        for (s, (g, w)) in got.iter().zip(want).enumerate() {
            for k in 0..2 {
                assert!((g[k] as f64 - w[k]).abs() <= 1e-6 * (1.0 + w[k].abs()), "step {} element {k}: got {}, want {}", s + 1, g[k], w[k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    fn linear(device: &Device) -> Linear {
        let mut l = LinearConfig::new(2, 1).init(device);
        l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.5f32, -1.0], [2, 1]), device));
        l.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.25f32], [1]), device)));
        l
    }

    fn grads_of(l: &Linear, device: &Device) -> GradientsParams {
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2]), device);
        let loss = l.forward(x).sum();
        GradientsParams::from_grads(loss.backward(), l)
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn module_step_uses_paths_and_keeps_autodiff() {
        let device = Device::flex().autodiff();
        let mut l = linear(&device);
        let mut opt = Tf1Optimizer::new(OptimizerKind::Mom);
        for _ in 0..2 {
            let g = grads_of(&l, &device);
            l = opt.step(0.1, l, g);
        }
        // loss = x.w + b: dL/dw = x = [1, 2], dL/db = 1, every step.
        // Nesterov: a1 = g, w1 = w0 - lr*g - lr*0.9*a1; a2 = 0.9*a1 + g, w2 = w1 - lr*g - lr*0.9*a2
        let step = |w: f64, g: f64| {
            let a1 = g;
            let w1 = w - 0.1 * g - 0.1 * 0.9 * a1;
            let a2 = 0.9 * a1 + g;
            w1 - 0.1 * g - 0.1 * 0.9 * a2
        };
        let w = values(l.weight.val());
        assert!((w[0] as f64 - step(0.5, 1.0)).abs() < 1e-6, "{w:?}");
        assert!((w[1] as f64 - step(-1.0, 2.0)).abs() < 1e-6, "{w:?}");
        let b = values(l.bias.as_ref().unwrap().val());
        assert!((b[0] as f64 - step(0.25, 1.0)).abs() < 1e-6, "{b:?}");
        assert!(l.weight.val().is_require_grad(), "updated weights must still get gradients");
        let state = opt.state_tensors().unwrap();
        let keys: Vec<_> = state.keys().cloned().collect();
        assert_eq!(keys, vec!["bias/accumulation".to_string(), "weight/accumulation".to_string()]);
        assert_eq!(state["weight/accumulation"].0, vec![2]);
        assert_eq!(opt.steps(), 2);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let device = Device::flex().autodiff();
        for kind in [OptimizerKind::Adagrad, OptimizerKind::Adadelta, OptimizerKind::Adam, OptimizerKind::Rmsprop, OptimizerKind::Mom] {
            let mut a = linear(&device);
            let mut opt = Tf1Optimizer::new(kind);
            for _ in 0..2 {
                let g = grads_of(&a, &device);
                a = opt.step(0.05, a, g);
            }
            let saved = opt.state_tensors().unwrap();
            let mut restored = Tf1Optimizer::new(kind);
            restored.load_state(&saved, opt.steps(), &Device::flex()).unwrap();
            // a fresh module with the same values (new parameter ids)
            let mut b = linear(&device);
            b.weight = Param::from_tensor(Tensor::from_data(a.weight.val().to_data(), &device));
            b.bias = Some(Param::from_tensor(Tensor::from_data(a.bias.as_ref().unwrap().val().to_data(), &device)));
            let ga = grads_of(&a, &device);
            let gb = grads_of(&b, &device);
            let a2 = opt.step(0.05, a, ga);
            let b2 = restored.step(0.05, b, gb);
            assert_eq!(values(a2.weight.val()), values(b2.weight.val()), "{kind:?}");
            // another optimiser's state is refused
            let other = if kind == OptimizerKind::Adam { OptimizerKind::Mom } else { OptimizerKind::Adam };
            assert!(Tf1Optimizer::new(other).load_state(&saved, 2, &Device::flex()).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn frozen_parameters_are_left_alone() {
        let device = Device::flex().autodiff();
        let mut l = linear(&device);
        l.bias = l.bias.map(|b| b.set_require_grad(false));
        let mut opt = Tf1Optimizer::new(OptimizerKind::Adam);
        let g = grads_of(&l, &device);
        let l = opt.step(0.1, l, g);
        assert_eq!(values(l.bias.as_ref().unwrap().val()), vec![0.25]);
        assert_ne!(values(l.weight.val()), vec![0.5, -1.0]);
        assert_eq!(opt.num_tracked(), 1);
    }

    /// The cost of one RMSProp update of the full network (23.5 M parameters) on the CPU,
    /// timed alone. `cargo test --release --lib update_cost -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn update_cost_on_the_full_network() {
        use crate::model::inception_resnet_v1::InceptionResnetV1Config;
        let ad = Device::flex().autodiff();
        let mut model = InceptionResnetV1Config::new().with_embedding_size(128).with_num_classes(1000).init(&ad);
        let x = Tensor::<4>::random([2, 3, 160, 160], burn::tensor::Distribution::Normal(0.0, 1.0), &ad);
        let mut opt = Tf1Optimizer::new(OptimizerKind::Rmsprop);
        let mut times = Vec::new();
        for _ in 0..5 {
            let loss = model.forward(x.clone()).logits.unwrap().sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let t = std::time::Instant::now();
            model = opt.step(0.01, model, grads);
            times.push(t.elapsed().as_secs_f64());
        }
        eprintln!("RMSProp update of the full network: {:?} ms", times.iter().map(|t| (t * 1e4).round() / 10.0).collect::<Vec<_>>());
    }
}
