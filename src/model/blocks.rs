//! Building blocks of Inception-ResNet-v1: the conv-BN-ReLU unit, the three residual
//! Inception blocks (35x35 "A", 17x17 "B", 8x8 "C" in the paper's 299-pixel terms) and the two
//! reduction blocks.
//!
//! Field names follow facenet-pytorch (`branch0`, `branch1.0`, ..., `conv2d`, `conv`, `bn`) so a
//! facenet-pytorch state dict maps onto these modules with burn's `PyTorchToBurnAdapter` alone
//! (it renames BatchNorm `weight`/`bias` to `gamma`/`beta` and transposes Linear weights).
//! A `Vec<BasicConv2d>` is stored under `name.0`, `name.1`, ..., exactly like an
//! `nn.Sequential` in PyTorch.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::{batch_norm, batch_norm_train};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor};

use super::autocast;

/// The weight initialiser of every conv and fully connected layer: Glorot/Xavier uniform with
/// gain 1, i.e. U(-sqrt(6/(fan_in+fan_out)), +sqrt(6/(fan_in+fan_out))) with
/// fan = channels x kernel area, which is what TF-slim's `xavier_initializer()` (uniform=True,
/// mode FAN_AVG) draws in the reference.
pub fn xavier_uniform() -> Initializer {
    Initializer::XavierUniform { gain: 1.0 }
}

/// How the layers that the reference pads `VALID` are padded (the stride-2 stem and reduction
/// convolutions and max-pools, and the stem's `Conv2d_2a`/`Conv2d_4a`).
///
/// All other convolutions are `SAME` (stride 1, odd kernels, hence symmetric padding) in both
/// modes.
#[derive(burn::config::Config, Debug, Copy, PartialEq, Eq)]
pub enum PaddingMode {
    /// The reference network: `VALID` where TF-slim says `VALID` (input 160 -> 3x3 final grid).
    Valid,
    /// TF `SAME` everywhere: every stride-2 layer gives ceil(size/2). Lets small inputs
    /// (64x64, 32x32) survive the five downsamplings; used by the small variant.
    Same,
}

impl PaddingMode {
    /// The burn padding for a layer the reference pads `VALID`.
    pub fn config(self) -> PaddingConfig2d {
        match self {
            PaddingMode::Valid => PaddingConfig2d::Valid,
            PaddingMode::Same => PaddingConfig2d::Same,
        }
    }

    /// Output size along one axis of a layer the reference pads `VALID`, `None` when the input
    /// is too small for the kernel.
    pub fn out_size(self, size: usize, kernel: usize, stride: usize) -> Option<usize> {
        match self {
            PaddingMode::Valid => (size >= kernel).then(|| (size - kernel) / stride + 1),
            PaddingMode::Same => (size > 0).then(|| size.div_ceil(stride)),
        }
    }
}

/// Batch-norm settings shared by every BN of the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BnSettings {
    /// Added to the variance (reference: 0.001).
    pub epsilon: f64,
    /// Weight of the new batch statistic in the running average (burn/PyTorch convention;
    /// the reference's moving-average decay 0.995 is momentum 0.005).
    pub momentum: f64,
    /// Whether gamma is trained. The reference (TF-slim `batch_norm`, `scale=False`) has no
    /// gamma: we keep burn's `gamma` parameter (so PyTorch weights, which have one, load) but
    /// leave it at 1 and exclude it from gradients unless this is true.
    pub train_gamma: bool,
}

impl BnSettings {
    /// A BatchNorm over `features` channels with these settings.
    pub fn init(&self, features: usize, device: &Device) -> BatchNorm {
        let mut bn = BatchNormConfig::new(features).with_epsilon(self.epsilon).with_momentum(self.momentum).init(device);
        if !self.train_gamma {
            bn.gamma = bn.gamma.set_require_grad(false);
        }
        bn
    }
}

/// A convolution without bias, then batch norm, then ReLU (`slim.conv2d` under the reference's
/// arg_scope; facenet-pytorch `BasicConv2d`).
#[derive(Module, Debug)]
pub struct BasicConv2d {
    /// The bias-free convolution.
    pub conv: Conv2d,
    /// Its batch norm.
    pub bn: BatchNorm,
    /// True once `bn` is folded into `conv` ([`BasicConv2d::fold_batch_norm`]): the layer is
    /// then `ReLU(conv + bias)`, for inference only.
    pub folded: bool,
}

impl BasicConv2d {
    /// `in_ch -> out_ch` with the given kernel `[kh, kw]`, stride and padding.
    pub fn new(
        in_ch: usize,
        out_ch: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: PaddingConfig2d,
        bn: &BnSettings,
        device: &Device,
    ) -> Self {
        let conv = Conv2dConfig::new([in_ch, out_ch], kernel)
            .with_stride([stride, stride])
            .with_padding(padding)
            .with_bias(false)
            .with_initializer(xavier_uniform())
            .init(device);
        BasicConv2d { conv, bn: bn.init(out_ch, device), folded: false }
    }

    /// Stride-1 `SAME` convolution (every non-reducing conv of the network).
    pub fn same(in_ch: usize, out_ch: usize, kernel: [usize; 2], bn: &BnSettings, device: &Device) -> Self {
        Self::new(in_ch, out_ch, kernel, 1, PaddingConfig2d::Same, bn, device)
    }

    /// conv -> BN -> ReLU (once folded: conv with bias -> ReLU).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if self.folded {
            relu(autocast::conv(&self.conv, x))
        } else {
            relu(self.bn.forward(autocast::conv(&self.conv, x)))
        }
    }

    /// Inference with the batch norm's running statistics folded into the convolution:
    /// `w' = w * s`, `bias = beta - mean * s` with `s = gamma / sqrt(var + eps)` per output
    /// channel, so the layer runs as one convolution (bias written with its output) and a
    /// ReLU: one pass over the activations fewer. Equal to `conv -> BN(running statistics)`
    /// up to rounding. For a network in inference mode only: a folded layer is neither
    /// trained nor saved (its convolution has a bias the weight files do not have).
    pub fn fold_batch_norm(mut self) -> Self {
        if self.folded {
            return self;
        }
        let bn = &self.bn;
        let w = self.conv.weight.val();
        let device = w.device();
        let out = w.dims()[0];
        let scale = bn.gamma.val().to_device(&device) / bn.running_var.value().to_device(&device).add_scalar(bn.epsilon).sqrt();
        let bias = bn.beta.val().to_device(&device) - bn.running_mean.value().to_device(&device) * scale.clone();
        self.conv.weight = Param::from_tensor(w * scale.reshape([out, 1, 1, 1]));
        self.conv.bias = Some(Param::from_tensor(bias));
        self.folded = true;
        self
    }

    /// The conv weight, for the L2 penalty.
    pub fn weight(&self) -> Tensor<4> {
        self.conv.weight.val()
    }
}

/// The 1x1 convolutions that open the branches of a residual block all read the block's
/// input: they run as one convolution (their weights stacked along the output channels),
/// one batch norm over all their channels (each channel keeps its own layer's parameters
/// and running statistics) and one ReLU; each branch then gets its own channels. Per channel
/// this is each layer's own `conv -> BN -> ReLU`; the parameters stay in their layers, so
/// weight files and the L2 penalty do not change.
///
/// Why: one GEMM of `sum(c_out)` rows instead of one per branch (the input is packed once),
/// and in training one input gradient instead of one per branch plus their sums. At batch 32
/// and 160x160 input this saves about 1 % of a training step (`tests/block_stems.rs`
/// `block_stems_speed`); the slices' gradients (zeros + the slice written in) take back part
/// of what the fused GEMMs save.
pub fn forward_stems(stems: &[&BasicConv2d], x: Tensor<4>) -> Vec<Tensor<4>> {
    let widths: Vec<usize> = stems.iter().map(|l| l.conv.weight.dims()[0]).collect();
    if stems.iter().any(|l| l.folded) && !stems.iter().all(|l| l.folded) {
        // a mix (no network of ours makes one): each layer on its own
        return stems.iter().map(|l| l.forward(x.clone())).collect();
    }
    if stems.iter().all(|l| l.folded) {
        // inference with folded batch norms: one convolution with bias, one ReLU
        debug_assert!(stems.iter().all(|l| l.conv.weight.dims()[2..] == [1, 1] && l.conv.stride == [1, 1]));
        let weight = Tensor::cat(stems.iter().map(|l| l.conv.weight.val()).collect(), 0);
        let bias = stems.iter().map(|l| l.conv.bias.as_ref().map(|b| b.val())).collect::<Option<Vec<_>>>().map(|b| Tensor::cat(b, 0));
        let y = relu(autocast::conv2d(x, weight, bias, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)));
        return split_channels(y, &widths);
    }
    debug_assert!(stems.iter().all(|l| {
        let [_, _, kh, kw] = l.conv.weight.dims();
        (kh, kw) == (1, 1) && l.conv.bias.is_none() && l.conv.stride == [1, 1] && l.bn.epsilon == stems[0].bn.epsilon
    }));
    let cat1 = |f: &dyn Fn(&BasicConv2d) -> Tensor<1>| Tensor::cat(stems.iter().map(|l| f(l)).collect(), 0);
    let weight = Tensor::cat(stems.iter().map(|l| l.conv.weight.val()).collect(), 0);
    let y = autocast::conv2d(x, weight, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
    let (gamma, beta) = (cat1(&|l| l.bn.gamma.val()), cat1(&|l| l.bn.beta.val()));
    let first = &stems[0].bn;
    let y = if y.device().is_autodiff() && first.training.is_enabled() {
        let r = batch_norm_train(y, gamma, beta, first.epsilon);
        let mut at = 0;
        for (l, &w) in stems.iter().zip(&widths) {
            // the update of `BatchNorm::forward` in training, on this layer's channels
            let bn = &l.bn;
            let device = r.mean.device();
            let (mean, var) = (r.mean.clone().slice([at..at + w]), r.variance.clone().slice([at..at + w]));
            let m = bn.momentum;
            let rm = bn.running_mean.value_sync().to_device(&device).mul_scalar(1.0 - m).add(mean.detach().mul_scalar(m));
            let rv = bn.running_var.value_sync().to_device(&device).mul_scalar(1.0 - m).add(var.detach().mul_scalar(m));
            bn.running_mean.update(rm.detach());
            bn.running_var.update(rv.detach());
            at += w;
        }
        r.output
    } else {
        let device = y.device();
        let mean = Tensor::cat(stems.iter().map(|l| l.bn.running_mean.value().to_device(&device)).collect(), 0);
        let var = Tensor::cat(stems.iter().map(|l| l.bn.running_var.value().to_device(&device)).collect(), 0);
        batch_norm(y, gamma, beta, mean, var, first.epsilon)
    };
    split_channels(relu(y), &widths)
}

/// The consecutive channel groups of `y` of the given widths.
fn split_channels(y: Tensor<4>, widths: &[usize]) -> Vec<Tensor<4>> {
    let [n, _, h, w] = y.dims();
    let mut at = 0;
    widths
        .iter()
        .map(|&c| {
            at += c;
            y.clone().slice([0..n, at - c..at, 0..h, 0..w])
        })
        .collect()
}

/// [`BasicConv2d::fold_batch_norm`] of every layer of a chain.
pub fn fold_chain(chain: Vec<BasicConv2d>) -> Vec<BasicConv2d> {
    chain.into_iter().map(BasicConv2d::fold_batch_norm).collect()
}

/// Runs a chain of `BasicConv2d` (an `nn.Sequential` in facenet-pytorch).
pub fn forward_chain(chain: &[BasicConv2d], x: Tensor<4>) -> Tensor<4> {
    chain.iter().fold(x, |h, layer| layer.forward(h))
}

/// The residual "up" projection: a 1x1 convolution with bias, no BN, no activation
/// (`normalizer_fn=None, activation_fn=None` in the reference). Bias starts at zero like
/// TF-slim's default `biases_initializer`.
fn up_projection(in_ch: usize, out_ch: usize, device: &Device) -> Conv2d {
    let mut conv = Conv2dConfig::new([in_ch, out_ch], [1, 1]).with_bias(true).with_initializer(xavier_uniform()).init(device);
    conv.bias = Some(Initializer::Zeros.init([out_ch], device));
    conv
}

/// `out = x + scale * up`, then ReLU when `activation`.
fn residual(x: Tensor<4>, up: Tensor<4>, scale: f64, activation: bool) -> Tensor<4> {
    let out = x + up.mul_scalar(scale);
    if activation {
        relu(out)
    } else {
        out
    }
}

/// Inception-ResNet-A (`block35`): 1x1-w | 1x1-w, 3x3-w | 1x1-w, 3x3-w, 3x3-w; concat;
/// 1x1 back to `channels` with bias; `ReLU(x + scale * up)`.
#[derive(Module, Debug)]
pub struct Block35 {
    /// 1x1.
    pub branch0: BasicConv2d,
    /// 1x1, 3x3.
    pub branch1: Vec<BasicConv2d>,
    /// 1x1, 3x3, 3x3.
    pub branch2: Vec<BasicConv2d>,
    /// Up projection (1x1 with bias).
    pub conv2d: Conv2d,
    /// Residual scale (0.17 in the reference).
    pub scale: f64,
    /// Whether the block ends with ReLU.
    pub activation: bool,
}

impl Block35 {
    /// A block over `channels` input/output channels with branch width `width`.
    pub fn new(channels: usize, width: usize, scale: f64, bn: &BnSettings, device: &Device) -> Self {
        Block35 {
            branch0: BasicConv2d::same(channels, width, [1, 1], bn, device),
            branch1: vec![BasicConv2d::same(channels, width, [1, 1], bn, device), BasicConv2d::same(width, width, [3, 3], bn, device)],
            branch2: vec![
                BasicConv2d::same(channels, width, [1, 1], bn, device),
                BasicConv2d::same(width, width, [3, 3], bn, device),
                BasicConv2d::same(width, width, [3, 3], bn, device),
            ],
            conv2d: up_projection(3 * width, channels, device),
            scale,
            activation: true,
        }
    }

    /// Batch norms folded into the convolutions (inference only).
    pub fn fold_batch_norm(self) -> Self {
        Block35 { branch0: self.branch0.fold_batch_norm(), branch1: fold_chain(self.branch1), branch2: fold_chain(self.branch2), ..self }
    }

    /// Forward pass; shape-preserving.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut stems = forward_stems(&[&self.branch0, &self.branch1[0], &self.branch2[0]], x.clone()).into_iter();
        let (x0, s1, s2) = (stems.next().unwrap(), stems.next().unwrap(), stems.next().unwrap());
        let x1 = forward_chain(&self.branch1[1..], s1);
        let x2 = forward_chain(&self.branch2[1..], s2);
        let up = autocast::conv(&self.conv2d, Tensor::cat(vec![x0, x1, x2], 1));
        residual(x, up, self.scale, self.activation)
    }

    /// Conv weights (including the up projection's), for the L2 penalty.
    pub fn weights(&self) -> Vec<Tensor<4>> {
        let mut w = vec![self.branch0.weight()];
        w.extend(self.branch1.iter().chain(&self.branch2).map(BasicConv2d::weight));
        w.push(self.conv2d.weight.val());
        w
    }
}

/// Inception-ResNet-B (`block17`): 1x1-w | 1x1-w, 1x7-w, 7x1-w; concat; 1x1 back to
/// `channels` with bias; `ReLU(x + scale * up)`.
#[derive(Module, Debug)]
pub struct Block17 {
    /// 1x1.
    pub branch0: BasicConv2d,
    /// 1x1, 1x7, 7x1.
    pub branch1: Vec<BasicConv2d>,
    /// Up projection (1x1 with bias).
    pub conv2d: Conv2d,
    /// Residual scale (0.10 in the reference).
    pub scale: f64,
    /// Whether the block ends with ReLU.
    pub activation: bool,
}

impl Block17 {
    /// Batch norms folded into the convolutions (inference only).
    pub fn fold_batch_norm(self) -> Self {
        Block17 { branch0: self.branch0.fold_batch_norm(), branch1: fold_chain(self.branch1), ..self }
    }

    /// A block over `channels` input/output channels with branch width `width`.
    pub fn new(channels: usize, width: usize, scale: f64, bn: &BnSettings, device: &Device) -> Self {
        Block17 {
            branch0: BasicConv2d::same(channels, width, [1, 1], bn, device),
            branch1: vec![
                BasicConv2d::same(channels, width, [1, 1], bn, device),
                BasicConv2d::same(width, width, [1, 7], bn, device),
                BasicConv2d::same(width, width, [7, 1], bn, device),
            ],
            conv2d: up_projection(2 * width, channels, device),
            scale,
            activation: true,
        }
    }

    /// Forward pass; shape-preserving.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut stems = forward_stems(&[&self.branch0, &self.branch1[0]], x.clone()).into_iter();
        let (x0, s1) = (stems.next().unwrap(), stems.next().unwrap());
        let x1 = forward_chain(&self.branch1[1..], s1);
        let up = autocast::conv(&self.conv2d, Tensor::cat(vec![x0, x1], 1));
        residual(x, up, self.scale, self.activation)
    }

    /// Conv weights (including the up projection's), for the L2 penalty.
    pub fn weights(&self) -> Vec<Tensor<4>> {
        let mut w = vec![self.branch0.weight()];
        w.extend(self.branch1.iter().map(BasicConv2d::weight));
        w.push(self.conv2d.weight.val());
        w
    }
}

/// Inception-ResNet-C (`block8`): 1x1-w | 1x1-w, 1x3-w, 3x1-w; concat; 1x1 back to
/// `channels` with bias; `x + scale * up`, then ReLU unless it is the network's last block.
#[derive(Module, Debug)]
pub struct Block8 {
    /// 1x1.
    pub branch0: BasicConv2d,
    /// 1x1, 1x3, 3x1.
    pub branch1: Vec<BasicConv2d>,
    /// Up projection (1x1 with bias).
    pub conv2d: Conv2d,
    /// Residual scale (0.20 in the repeated blocks, 1.0 in the final one).
    pub scale: f64,
    /// Whether the block ends with ReLU (false for the final block).
    pub activation: bool,
}

impl Block8 {
    /// Batch norms folded into the convolutions (inference only).
    pub fn fold_batch_norm(self) -> Self {
        Block8 { branch0: self.branch0.fold_batch_norm(), branch1: fold_chain(self.branch1), ..self }
    }

    /// A block over `channels` input/output channels with branch width `width`.
    pub fn new(channels: usize, width: usize, scale: f64, activation: bool, bn: &BnSettings, device: &Device) -> Self {
        Block8 {
            branch0: BasicConv2d::same(channels, width, [1, 1], bn, device),
            branch1: vec![
                BasicConv2d::same(channels, width, [1, 1], bn, device),
                BasicConv2d::same(width, width, [1, 3], bn, device),
                BasicConv2d::same(width, width, [3, 1], bn, device),
            ],
            conv2d: up_projection(2 * width, channels, device),
            scale,
            activation,
        }
    }

    /// Forward pass; shape-preserving.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut stems = forward_stems(&[&self.branch0, &self.branch1[0]], x.clone()).into_iter();
        let (x0, s1) = (stems.next().unwrap(), stems.next().unwrap());
        let x1 = forward_chain(&self.branch1[1..], s1);
        let up = autocast::conv(&self.conv2d, Tensor::cat(vec![x0, x1], 1));
        residual(x, up, self.scale, self.activation)
    }

    /// Conv weights (including the up projection's), for the L2 penalty.
    pub fn weights(&self) -> Vec<Tensor<4>> {
        let mut w = vec![self.branch0.weight()];
        w.extend(self.branch1.iter().map(BasicConv2d::weight));
        w.push(self.conv2d.weight.val());
        w
    }
}

/// 3x3 stride-2 max pool, padded like the reference's `VALID` layers under `mode`.
pub fn reduction_pool(mode: PaddingMode) -> MaxPool2d {
    MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(mode.config()).init()
}

/// Reduction-A (`Mixed_6a`, `reduction_a(net, k, l, m, n)`): 3x3/2-n | 1x1-k, 3x3-l, 3x3/2-m |
/// maxpool 3x3/2. Output channels `n + m + channels`.
#[derive(Module, Debug)]
pub struct ReductionA {
    /// 3x3 stride 2 to `n`.
    pub branch0: BasicConv2d,
    /// 1x1-k, 3x3-l, 3x3/2-m.
    pub branch1: Vec<BasicConv2d>,
    /// Max pool 3x3/2.
    pub branch2: MaxPool2d,
}

impl ReductionA {
    /// Batch norms folded into the convolutions (inference only).
    pub fn fold_batch_norm(self) -> Self {
        ReductionA { branch0: self.branch0.fold_batch_norm(), branch1: fold_chain(self.branch1), ..self }
    }

    /// `[k, l, m, n]` as in the reference's `reduction_a` (full network: 192, 192, 256, 384).
    pub fn new(channels: usize, klmn: [usize; 4], mode: PaddingMode, bn: &BnSettings, device: &Device) -> Self {
        let [k, l, m, n] = klmn;
        let pad = mode.config();
        ReductionA {
            branch0: BasicConv2d::new(channels, n, [3, 3], 2, pad.clone(), bn, device),
            branch1: vec![
                BasicConv2d::same(channels, k, [1, 1], bn, device),
                BasicConv2d::same(k, l, [3, 3], bn, device),
                BasicConv2d::new(l, m, [3, 3], 2, pad, bn, device),
            ],
            branch2: reduction_pool(mode),
        }
    }

    /// Forward pass: spatial size halves, channels become `n + m + channels`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x0 = self.branch0.forward(x.clone());
        let x1 = forward_chain(&self.branch1, x.clone());
        let x2 = self.branch2.forward(x);
        Tensor::cat(vec![x0, x1, x2], 1)
    }

    /// Conv weights, for the L2 penalty.
    pub fn weights(&self) -> Vec<Tensor<4>> {
        let mut w = vec![self.branch0.weight()];
        w.extend(self.branch1.iter().map(BasicConv2d::weight));
        w
    }
}

/// Reduction-B (`Mixed_7a`): 1x1-a, 3x3/2-b | 1x1-c, 3x3/2-d | 1x1-e, 3x3-f, 3x3/2-g |
/// maxpool 3x3/2. Output channels `b + d + g + channels`.
#[derive(Module, Debug)]
pub struct ReductionB {
    /// 1x1, 3x3/2.
    pub branch0: Vec<BasicConv2d>,
    /// 1x1, 3x3/2.
    pub branch1: Vec<BasicConv2d>,
    /// 1x1, 3x3, 3x3/2.
    pub branch2: Vec<BasicConv2d>,
    /// Max pool 3x3/2.
    pub branch3: MaxPool2d,
}

impl ReductionB {
    /// Batch norms folded into the convolutions (inference only).
    pub fn fold_batch_norm(self) -> Self {
        ReductionB { branch0: fold_chain(self.branch0), branch1: fold_chain(self.branch1), branch2: fold_chain(self.branch2), ..self }
    }

    /// `[a, b, c, d, e, f, g]` (full network: 256, 384, 256, 256, 256, 256, 256).
    pub fn new(channels: usize, w: [usize; 7], mode: PaddingMode, bn: &BnSettings, device: &Device) -> Self {
        let [a, b, c, d, e, f, g] = w;
        let pad = mode.config();
        ReductionB {
            branch0: vec![BasicConv2d::same(channels, a, [1, 1], bn, device), BasicConv2d::new(a, b, [3, 3], 2, pad.clone(), bn, device)],
            branch1: vec![BasicConv2d::same(channels, c, [1, 1], bn, device), BasicConv2d::new(c, d, [3, 3], 2, pad.clone(), bn, device)],
            branch2: vec![
                BasicConv2d::same(channels, e, [1, 1], bn, device),
                BasicConv2d::same(e, f, [3, 3], bn, device),
                BasicConv2d::new(f, g, [3, 3], 2, pad, bn, device),
            ],
            branch3: reduction_pool(mode),
        }
    }

    /// Forward pass: spatial size halves, channels become `b + d + g + channels`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x0 = forward_chain(&self.branch0, x.clone());
        let x1 = forward_chain(&self.branch1, x.clone());
        let x2 = forward_chain(&self.branch2, x.clone());
        let x3 = self.branch3.forward(x);
        Tensor::cat(vec![x0, x1, x2, x3], 1)
    }

    /// Conv weights, for the L2 penalty.
    pub fn weights(&self) -> Vec<Tensor<4>> {
        self.branch0.iter().chain(&self.branch1).chain(&self.branch2).map(BasicConv2d::weight).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::tensor::Distribution;

    fn bn() -> BnSettings {
        BnSettings { epsilon: 1e-3, momentum: 0.2, train_gamma: true }
    }

    fn values(t: Tensor<1>) -> Vec<f32> {
        t.to_data().try_into_vec_as::<f32>().unwrap()
    }

    fn flat<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.to_data().try_into_vec_as::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * scale, "{what}[{i}]: {x} vs {y}");
        }
    }

    /// The branches of `block35` one layer at a time (the unfused formula).
    fn separate35(b: &Block35, x: Tensor<4>) -> Tensor<4> {
        let x0 = b.branch0.forward(x.clone());
        let x1 = forward_chain(&b.branch1, x.clone());
        let x2 = forward_chain(&b.branch2, x.clone());
        residual(x, b.conv2d.forward(Tensor::cat(vec![x0, x1, x2], 1)), b.scale, b.activation)
    }

    #[test]
    fn fused_stems_equal_separate_layers_in_training() {
        let device = Device::flex().autodiff();
        let fused = Block35::new(12, 4, 0.17, &bn(), &device);
        // an independent copy: same parameters and running statistics, its own state
        let plain = Block35::new(12, 4, 0.17, &bn(), &device).load_record(fused.clone().into_record());
        let x = Tensor::<4>::random([3, 12, 7, 7], Distribution::Normal(0.3, 1.5), &device);
        let (xa, xb) = (x.clone().require_grad(), x.require_grad());
        let ya = fused.forward(xa.clone());
        let yb = separate35(&plain, xb.clone());
        close(&flat(ya.clone()), &flat(yb.clone()), "output");
        let ga = (ya.clone() * ya).sum().backward();
        let gb = (yb.clone() * yb).sum().backward();
        close(&flat(xa.grad(&ga).unwrap()), &flat(xb.grad(&gb).unwrap()), "input gradient");
        for (la, lb) in [(&fused.branch0, &plain.branch0), (&fused.branch1[0], &plain.branch1[0]), (&fused.branch2[0], &plain.branch2[0])] {
            close(&flat(la.conv.weight.grad(&ga).unwrap()), &flat(lb.conv.weight.grad(&gb).unwrap()), "weight gradient");
            close(&flat(la.bn.beta.grad(&ga).unwrap()), &flat(lb.bn.beta.grad(&gb).unwrap()), "beta gradient");
            close(&flat(la.bn.gamma.grad(&ga).unwrap()), &flat(lb.bn.gamma.grad(&gb).unwrap()), "gamma gradient");
            let (ma, mb) = (values(la.bn.running_mean.value_sync()), values(lb.bn.running_mean.value_sync()));
            close(&ma, &mb, "running mean");
            assert!(ma.iter().any(|v| *v != 0.0), "running mean not updated");
            close(&values(la.bn.running_var.value_sync()), &values(lb.bn.running_var.value_sync()), "running var");
        }
    }

    #[test]
    fn fused_stems_equal_separate_layers_in_inference() {
        let ad = Device::flex().autodiff();
        let block = Block17::new(10, 6, 0.1, &bn(), &ad);
        // move the running statistics away from 0 / 1 first
        let _ = block.forward(Tensor::<4>::random([4, 10, 5, 5], Distribution::Normal(1.0, 2.0), &ad));
        let block = block.valid();
        let x = Tensor::<4>::random([2, 10, 5, 5], Distribution::Normal(0.0, 1.0), &Device::flex());
        let x0 = block.branch0.forward(x.clone());
        let x1 = forward_chain(&block.branch1, x.clone());
        let want = residual(x.clone(), block.conv2d.forward(Tensor::cat(vec![x0, x1], 1)), block.scale, block.activation);
        close(&flat(block.forward(x)), &flat(want), "block17 output");
    }
}
