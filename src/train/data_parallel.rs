//! Data-parallel training (`facenet train --devices LIST`): the global batch (`--batch_size`)
//! is cut into one consecutive shard per replica; each replica runs forward, loss and backward
//! on its shard; the gradients are combined (weighted by each shard's share of the batch, so
//! that the result is the gradient of the global batch's mean loss) and one optimiser step is
//! applied, which every replica would apply identically. The class centres are moved with the
//! prelogits of every shard together, so they are what one device would compute.
//!
//! ```text
//! shard k of the batch -> forward (batch-norm statistics of shard k) -> loss_k -> backward -> g_k
//! g = sum_k (n_k / n) g_k            (GradientReducer)
//! one optimiser step with g; centres updated with all n prelogits       (crate::train::step)
//! ```
//!
//! Batch norm is per replica, as PyTorch's DDP does it: each shard is normalised with its own
//! batch statistics (so N replicas differ from one device on the whole batch unless the shards
//! have the same statistics), and the running statistics kept are replica 0's (DDP's
//! `broadcast_buffers` copies rank 0's buffers to the others at every forward).
//!
//! Why not burn's distributed autodiff here: burn 0.22 marks parameters with
//! `Tensor::set_distributed` and, during backward, submits their gradients to an in-process
//! sync server (burn-backend `backend/distributed/server.rs`) that calls the backend's
//! `all_reduce`. The CPU backend cannot take part: burn-flex implements `DistributedOps` with
//! the defaults only (`impl DistributedOps<Flex> for Flex {}` in burn-flex
//! `src/ops/transaction.rs`), whose `all_reduce` and `sync_collective` are `unimplemented!()`;
//! the dispatch layer lists only the cubecl and remote backends as collective-capable
//! (burn-backend-extension `src/catalog.rs`: `Flex { distributed: false }`) and panics with
//! "Distributed operations are not supported for device" for others; and flex has one device
//! value (`FlexDevice` is a unit struct with id (0,0)), while the sync server tells devices
//! apart by id. So on the CPU the replicas share the one device and take turns, and their
//! gradients are combined by [`SameDevice`], a [`GradientReducer`] made of plain burn tensor
//! ops. A multi-GPU reducer is the place for burn's all-reduce (NCCL on CUDA); it is not wired
//! yet, and `--devices` with more than one GPU is refused (see [`check_devices`]).

use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};

use super::guard::{sync_running_stats, RunningStats};
use super::loss::{loss_terms, LossTerms, LossWeights};
use crate::model::inception_resnet_v1::InceptionResnetV1;
use crate::util::device::DeviceSpec;
use crate::util::devices::DeviceList;

/// The replicas' consecutive shards of a batch of `n`: as even as possible (the first `n % r`
/// get one more), none empty (fewer shards than replicas when `n < replicas`: a batch that
/// lost images to unreadable files still trains).
pub fn shard_ranges(n: usize, replicas: usize) -> Vec<Range<usize>> {
    let r = replicas.max(1);
    let (base, extra) = (n / r, n % r);
    let mut out = Vec::with_capacity(r);
    let mut start = 0;
    for k in 0..r {
        let len = base + usize::from(k < extra);
        if len > 0 {
            out.push(start..start + len);
        }
        start += len;
    }
    out
}

/// Combines the replicas' gradients into the one the optimiser applies.
pub trait GradientReducer {
    /// `shards`: each replica's gradients with its weight (its share of the batch; the
    /// weights sum to 1). Returns `sum_k weight_k * g_k` for every parameter of `model` that
    /// has a gradient.
    fn reduce(&self, model: &InceptionResnetV1, shards: Vec<(GradientsParams, f64)>) -> GradientsParams;
}

/// Replicas on one device: the weighted sum with burn tensor ops on that device.
pub struct SameDevice;

struct WeightedSum<'a> {
    shards: &'a mut [(GradientsParams, f64)],
    out: GradientsParams,
}

impl WeightedSum<'_> {
    fn add<const D: usize>(&mut self, id: ParamId) {
        let mut acc: Option<Tensor<D>> = None;
        for (grads, w) in self.shards.iter_mut() {
            if let Some(g) = grads.remove::<D>(id) {
                let g = g.mul_scalar(*w);
                acc = Some(match acc {
                    Some(a) => a + g,
                    None => g,
                });
            }
        }
        if let Some(a) = acc {
            self.out.register(id, a);
        }
    }
}

impl ModuleVisitor for WeightedSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.add::<D>(param.id);
    }
}

impl GradientReducer for SameDevice {
    fn reduce(&self, model: &InceptionResnetV1, mut shards: Vec<(GradientsParams, f64)>) -> GradientsParams {
        let mut v = WeightedSum { shards: &mut shards, out: GradientsParams::new() };
        model.visit(&mut v);
        v.out
    }
}

/// What the replicas' forward and backward passes leave for the optimiser step.
pub struct ReplicaPass {
    /// The network, with replica 0's batch-norm running statistics.
    pub model: InceptionResnetV1,
    /// The global batch's loss terms (each shard's, weighted by its share; detached).
    pub terms: LossTerms,
    /// The prelogits of the whole batch, in batch order (plain device, no gradient).
    pub prelogits: Tensor<2>,
    /// The combined gradients.
    pub grads: GradientsParams,
}

/// Forward, loss and backward of `replicas` replicas on their shards of the batch `x`
/// (`[n, 3, h, w]` on the autodiff device) with class `labels` and `batch_centers`
/// (`centres[labels]`, `[n, d]` on the plain device); gradients combined by `reducer`.
/// `Err(model)` (boxed) when the network has no Logits layer (with the running-statistics updates of
/// the forward pass synced and pending nothing). The backward passes start from the loss times
/// `loss_scale` (1, or f16 training's scale: the gradients come out multiplied by it).
#[allow(clippy::too_many_arguments)]
pub fn replica_pass(
    model: InceptionResnetV1,
    x: Tensor<4>,
    labels: &[i64],
    batch_centers: &Tensor<2>,
    weights: &LossWeights,
    replicas: usize,
    loss_scale: f64,
    reducer: &dyn GradientReducer,
) -> Result<ReplicaPass, Box<InceptionResnetV1>> {
    let n = labels.len();
    let ad = x.device();
    let shards = shard_ranges(n, replicas);
    if shards.len() <= 1 {
        return whole_batch_pass(model, x, labels, batch_centers, weights, loss_scale);
    }
    let mut replica0_stats = None;
    let mut grads = Vec::with_capacity(shards.len());
    let mut prelogits = Vec::with_capacity(shards.len());
    let mut terms: Option<LossTerms> = None;
    for (k, r) in shards.iter().enumerate() {
        let len = r.len();
        let w = len as f64 / n as f64;
        let labels_ad = Tensor::<1, Int>::from_data(TensorData::new(labels[r.clone()].to_vec(), [len]), &ad);
        let out = model.forward(x.clone().slice(r.clone()));
        if k == 0 {
            sync_running_stats(&model);
            replica0_stats = Some(RunningStats::of(&model));
        }
        let Some(logits) = out.logits else {
            sync_running_stats(&model);
            return Err(Box::new(model));
        };
        let t = loss_terms(&model, out.prelogits.clone(), logits, labels_ad, &batch_centers.clone().slice(r.clone()), weights);
        prelogits.push(out.prelogits.detach().inner());
        let weighted = weighted_terms(&t, w);
        terms = Some(match terms {
            None => weighted,
            Some(acc) => add_terms(acc, weighted),
        });
        grads.push((GradientsParams::from_grads(scaled(&t.total, loss_scale).backward(), &model), w));
    }
    let grads = reducer.reduce(&model, grads);
    // the later replicas' running-statistics updates are dropped: replica 0's are kept
    sync_running_stats(&model);
    let model = match replica0_stats {
        Some(s) => s.restore(model),
        None => model,
    };
    let terms = match terms {
        Some(t) => t,
        None => empty_terms(&ad),
    };
    let prelogits = Tensor::cat(prelogits, 0);
    Ok(ReplicaPass { model, terms, prelogits, grads })
}

/// Forward, loss and backward of the whole batch (one replica).
fn whole_batch_pass(
    model: InceptionResnetV1,
    x: Tensor<4>,
    labels: &[i64],
    batch_centers: &Tensor<2>,
    weights: &LossWeights,
    loss_scale: f64,
) -> Result<ReplicaPass, Box<InceptionResnetV1>> {
    let labels_ad = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [labels.len()]), &x.device());
    let out = model.forward(x);
    let Some(logits) = out.logits else {
        sync_running_stats(&model);
        return Err(Box::new(model));
    };
    let terms = loss_terms(&model, out.prelogits.clone(), logits, labels_ad, batch_centers, weights);
    let prelogits = out.prelogits.detach().inner();
    let grads = GradientsParams::from_grads(scaled(&terms.total, loss_scale).backward(), &model);
    Ok(ReplicaPass { model, terms, prelogits, grads })
}

/// `loss * scale` (the loss itself when the scale is 1).
fn scaled(loss: &Tensor<1>, scale: f64) -> Tensor<1> {
    if scale == 1.0 {
        loss.clone()
    } else {
        loss.clone().mul_scalar(scale)
    }
}

fn weighted_terms(t: &LossTerms, w: f64) -> LossTerms {
    let f = |x: &Tensor<1>| x.clone().detach().mul_scalar(w);
    LossTerms {
        total: f(&t.total),
        xent: f(&t.xent),
        weight_decay: f(&t.weight_decay),
        center: f(&t.center),
        prelogits_norm: f(&t.prelogits_norm),
        accuracy: f(&t.accuracy),
    }
}

fn add_terms(a: LossTerms, b: LossTerms) -> LossTerms {
    LossTerms {
        total: a.total + b.total,
        xent: a.xent + b.xent,
        weight_decay: a.weight_decay + b.weight_decay,
        center: a.center + b.center,
        prelogits_norm: a.prelogits_norm + b.prelogits_norm,
        accuracy: a.accuracy + b.accuracy,
    }
}

/// The terms of an empty batch (never trained on: the loop skips empty batches).
fn empty_terms(ad: &burn::tensor::Device) -> LossTerms {
    let nan = || Tensor::<1>::from_data(TensorData::new(vec![f32::NAN], [1]), ad);
    LossTerms { total: nan(), xent: nan(), weight_decay: nan(), center: nan(), prelogits_norm: nan(), accuracy: nan() }
}

/// Why a `--devices` list cannot train in this build.
#[derive(Debug, thiserror::Error)]
pub enum DevicesUnsupported {
    #[error("--devices {list}: replicas on several GPUs need burn's all-reduce across devices, which facenet does not wire yet (burn 0.22: NCCL through cubecl on CUDA); train on one GPU (--device {first}), or use CPU replicas (cpu:0,cpu:1) to check data-parallel training")]
    SeveralGpus { list: String, first: DeviceSpec },
}

/// The one device the replicas of `devices` run on, or why they cannot run.
pub fn check_devices(devices: &DeviceList) -> Result<DeviceSpec, DevicesUnsupported> {
    let distinct = devices.distinct_devices();
    match distinct.as_slice() {
        [one] => Ok(*one),
        _ => Err(DevicesUnsupported::SeveralGpus { list: devices.to_string(), first: distinct[0] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::mix64;
    use crate::model::inception_resnet_v1::InceptionResnetV1Config;
    use crate::train::center_loss::CenterLoss;
    use crate::train::optim::Tf1Optimizer;
    use crate::train::options::OptimizerKind;
    use crate::train::step::TrainStep;
    use burn::module::Module;
    use burn::tensor::Device;

    const CLASSES: usize = 4;
    const DIM: usize = 16;

    fn weights() -> LossWeights {
        LossWeights { weight_decay: 5e-4, center_loss_factor: 1e-2, prelogits_norm_loss_factor: 1e-3, prelogits_norm_p: 1.0 }
    }

    fn config() -> InceptionResnetV1Config {
        // no dropout: the replicas draw no random masks
        InceptionResnetV1Config::small(DIM, 1.0, CLASSES)
    }

    /// The small network, every parameter initialised now (burn draws them lazily, at first
    /// use, from the device's generator, which tests running in parallel share).
    fn base_model(ad: &Device) -> InceptionResnetV1 {
        ad.seed(7);
        let m = config().init(ad);
        trained_values(&m);
        m
    }

    /// An independent copy of `m` (its own batch-norm running state: clones share theirs).
    fn copy(m: &InceptionResnetV1, ad: &Device) -> InceptionResnetV1 {
        config().init(ad).load_record(m.clone().into_record())
    }

    fn step(device: &Device, base: &InceptionResnetV1, replicas: usize) -> TrainStep {
        let ad = device.clone().autodiff();
        TrainStep::new(
            copy(base, &ad),
            Tf1Optimizer::new(OptimizerKind::Rmsprop),
            CenterLoss::new(CLASSES, DIM, 0.9, device),
            weights(),
            device,
        )
        .with_replicas(replicas)
    }

    /// Every parameter value but the batch-norm running statistics, in visiting order.
    #[derive(Default)]
    struct Values {
        names: Vec<String>,
        values: Vec<f32>,
    }

    impl ModuleVisitor for Values {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.names.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.names.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.names.last().is_some_and(|n| n.starts_with("running_")) {
                self.values.extend(param.val().try_into_vec_as::<f32>().unwrap());
            }
        }
    }

    fn trained_values(m: &InceptionResnetV1) -> Vec<f32> {
        let mut v = Values::default();
        m.visit(&mut v);
        assert!(v.values.len() > 10_000, "{} values", v.values.len());
        v.values
    }

    /// Largest |a - b| relative to the largest |b|.
    fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Deterministic images in [-1, 1) (not from the device's shared generator).
    fn images(n: usize, seed: u64, ad: &Device) -> Tensor<4> {
        let len = n * 3 * 32 * 32;
        let v: Vec<f32> = (0..len as u64).map(|i| (mix64(seed << 32 ^ i) >> 40) as f32 / (1u64 << 23) as f32 - 1.0).collect();
        Tensor::<4>::from_data(TensorData::new(v, [n, 3, 32, 32]), ad)
    }

    #[test]
    fn two_replicas_on_a_batch_of_two_equal_halves_train_like_one_device() {
        // [A; A]: each replica's shard has the batch-norm statistics of the whole batch, so
        // per-replica batch norm changes nothing and the two runs must agree
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let base = base_model(&ad);
        let (mut one, mut two) = (step(&device, &base, 1), step(&device, &base, 2));
        let labels = [0, 1, 2, 3, 1, 0, 0, 1, 2, 3, 1, 0];
        for i in 0..3 {
            let a = images(6, 100 + i, &ad);
            let x = Tensor::cat(vec![a.clone(), a], 0);
            let v1 = one.run(x.clone(), &labels, 0.01).unwrap();
            let v2 = two.run(x, &labels, 0.01).unwrap();
            for (p, q) in [(v1.total, v2.total), (v1.xent, v2.xent), (v1.center, v2.center), (v1.accuracy, v2.accuracy)] {
                assert!((p - q).abs() <= 1e-4 * p.abs().max(1.0), "step {i}: {v1:?} vs {v2:?}");
            }
        }
        let d = max_rel_diff(&trained_values(two.model()), &trained_values(one.model()));
        eprintln!("weights: largest difference {d:.2e} of their scale");
        assert!(d < 1e-4, "weights differ by {d} of their scale");
        let d = max_rel_diff(&two.centers().values().unwrap(), &one.centers().values().unwrap());
        assert!(d < 1e-4, "centres differ by {d} of their scale");
        assert_eq!(two.optimizer().steps(), 3);
    }

    #[test]
    fn two_replicas_apply_the_gradient_of_the_mean_of_their_shard_losses() {
        // distinct halves: the reference is one backward pass through
        // 0.5 * loss(first half) + 0.5 * loss(second half), each half normalised with its own
        // batch statistics (per-replica batch norm), then the same optimiser and centre update
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let base = base_model(&ad);
        let mut two = step(&device, &base, 2);
        let mut reference: Option<InceptionResnetV1> = None;
        let mut opt = Tf1Optimizer::new(OptimizerKind::Rmsprop);
        let mut centers = CenterLoss::new(CLASSES, DIM, 0.9, &device);
        let w = weights();
        let labels = [0i64, 1, 2, 3, 3, 2, 1, 1];
        let halves = [0..4, 4..8];
        for i in 0..3 {
            // every step from the same weights (same parameter ids, so the same optimiser
            // slots): the two ways of summing differ by rounding, and after a step at slightly
            // different weights some draws differ by 1e-3 (a max-pool or ReLU near-tie; seen
            // on an AVX2 CPU), which says nothing about the replicas
            let m = copy(two.model(), &ad);
            let x = images(8, 200 + i, &ad);
            two.run(x.clone(), &labels, 0.01).unwrap();

            let labels_plain = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [8]), &device);
            let batch_centers = centers.batch_centers(&labels_plain);
            let mut total = None;
            let mut prelogits = Vec::new();
            for h in halves.clone() {
                let out = m.forward(x.clone().slice(h.clone()));
                let l = Tensor::<1, Int>::from_data(TensorData::new(labels[h.clone()].to_vec(), [4]), &ad);
                let t = loss_terms(&m, out.prelogits.clone(), out.logits.unwrap(), l, &batch_centers.clone().slice(h), &w);
                prelogits.push(out.prelogits.detach().inner());
                let half = t.total.mul_scalar(0.5);
                total = Some(match total {
                    None => half,
                    Some(s) => s + half,
                });
            }
            let grads = GradientsParams::from_grads(total.unwrap().backward(), &m);
            reference = Some(opt.step(0.01, m, grads));
            centers.update(&labels_plain, Tensor::cat(prelogits, 0), batch_centers);
        }
        let d = max_rel_diff(&trained_values(two.model()), &trained_values(reference.as_ref().unwrap()));
        eprintln!("weights: largest difference {d:.2e} of their scale");
        assert!(d < 1e-4, "weights differ by {d} of their scale");
        let d = max_rel_diff(&two.centers().values().unwrap(), &centers.values().unwrap());
        assert!(d < 1e-4, "centres differ by {d} of their scale");
        // and they differ from one device on the whole batch (per-replica batch norm matters)
        let mut one = step(&device, &base, 1);
        for i in 0..3 {
            one.run(images(8, 200 + i, &ad), &labels, 0.01).unwrap();
        }
        let d = max_rel_diff(&trained_values(two.model()), &trained_values(one.model()));
        assert!(d > 1e-4, "per-replica batch norm should change the run ({d})");
    }

    #[test]
    fn replica_zero_keeps_its_running_statistics() {
        // momentum 1 in burn terms would replace the statistics; the small config's default
        // momentum moves them a little: compare with replica 0 alone on its shard
        let device = Device::flex();
        let ad = device.clone().autodiff();
        let x = images(8, 300, &ad);
        let labels = [0i64, 1, 2, 3, 0, 1, 2, 3];
        let base = base_model(&ad);
        let mut two = step(&device, &base, 2);
        two.run(x.clone(), &labels, 0.0).unwrap();
        let mut first_half = step(&device, &base, 1);
        first_half.run(x.slice(0..4), &labels[..4], 0.0).unwrap();
        let stats = |s: &TrainStep| {
            let m = s.model();
            let mut v = m.conv2d_1a.bn.running_mean.value().try_into_vec_as::<f32>().unwrap();
            v.extend(m.last_bn.running_var.value().try_into_vec_as::<f32>().unwrap());
            v
        };
        let (a, b) = (stats(&two), stats(&first_half));
        assert!(max_rel_diff(&a, &b) < 1e-5, "{a:?}\n{b:?}");
        assert!(a.iter().any(|&x| x != 0.0 && x != 1.0), "the statistics moved");
    }

    #[test]
    fn shards_cover_the_batch_once_in_order() {
        assert_eq!(shard_ranges(8, 2), vec![0..4, 4..8]);
        assert_eq!(shard_ranges(7, 3), vec![0..3, 3..5, 5..7]);
        assert_eq!(shard_ranges(2, 4), vec![0..1, 1..2]);
        assert_eq!(shard_ranges(5, 1), vec![0..5]);
        assert!(shard_ranges(0, 2).is_empty());
        for n in 0..40 {
            for r in 1..9 {
                let s = shard_ranges(n, r);
                let flat: Vec<usize> = s.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(flat, (0..n).collect::<Vec<_>>(), "n {n} r {r}");
                let (lo, hi) = (s.iter().map(|r| r.len()).min(), s.iter().map(|r| r.len()).max());
                assert!(hi.zip(lo).is_none_or(|(h, l)| h - l <= 1));
            }
        }
    }

    #[test]
    fn several_gpus_are_refused_cpu_replicas_share_the_cpu() {
        let cpu: DeviceList = "cpu:0,cpu:1".parse().unwrap();
        assert_eq!(check_devices(&cpu).unwrap(), DeviceSpec::Cpu);
        let one: DeviceList = "cuda:1".parse().unwrap();
        assert_eq!(check_devices(&one).unwrap(), DeviceSpec::Cuda(1));
        let two: DeviceList = "cuda:0,cuda:1".parse().unwrap();
        let e = check_devices(&two).unwrap_err().to_string();
        assert!(e.contains("--devices cuda:0,cuda:1") && e.contains("--device cuda:0"), "{e}");
    }
}
