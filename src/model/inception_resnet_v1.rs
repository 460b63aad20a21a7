//! Inception-ResNet-v1, the network behind `--model_def models.inception_resnet_v1`, and its
//! small variant `inception_resnet_v1_small`.
//!
//! Layout (the reference's `src/models/inception_resnet_v1.py`; facenet-pytorch's
//! `InceptionResnetV1` is the same network): stem (3x3/2 valid 32, 3x3 valid 32, 3x3 same 64, maxpool 3x3/2, 1x1 80, 3x3 valid
//! 192, 3x3/2 valid 256), 5 x Block35 (scale 0.17), Reduction-A, 10 x Block17 (0.10),
//! Reduction-B, 5 x Block8 (0.20), one Block8 with scale 1.0 and no ReLU, global average pool,
//! dropout, `last_linear` (no bias) -> `last_bn` = prelogits; embedding = L2-normalised
//! prelogits; optional `logits` (Linear with bias, no BN) for classifier training.
//!
//! Input: `[batch, 3, height, width]` (NCHW), already standardised by the data pipeline.
//!
//! # Cost (conv + fully connected multiply-accumulates; BN, ReLU, pooling, adds not counted)
//!
//! | model | input | parameters | forward MACs / image | forward FLOPs / image |
//! |---|---|---|---|---|
//! | `inception_resnet_v1`, embedding 128 | 160x160 | 22,793,728 | 1.417 G | 2.83 G |
//! | `inception_resnet_v1`, embedding 512 (published weights) | 160x160 | 23,482,624 | 1.418 G | 2.84 G |
//! | `inception_resnet_v1_small`, embedding 128 | 64x64 | 387,272 | 11.8 M | 23.6 M |
//! | `inception_resnet_v1_small`, embedding 128 | 32x32 | 387,272 | 2.98 M | 6.0 M |
//!
//! "Parameters" are trainable-sized tensors: conv/linear weights and biases and BN gamma and
//! beta (gamma is held fixed at 1 by default, see [`InceptionResnetV1Config::train_bn_gamma`]);
//! BN running mean/var buffers are extra (`ModelCost::bn_buffers`). A Logits layer adds
//! `(embedding + 1) * classes`. A training step (forward + backward) costs about three
//! forwards: ~8.5 GFLOP per 160x160 image for the full model.
//! These numbers are computed by [`InceptionResnetV1Config::cost`] and checked by the tests.
//!
//! # Train / inference mode (burn 0.22)
//!
//! There is no `train()`/`eval()` switch on the forward: dropout and batch norm take their
//! training path iff the input lives on an autodiff device (`Device::autodiff()`) *and* the
//! layer's `training` flag is on (it is, after `init`). So: build the model on
//! `device.autodiff()` to train; call `model.valid()` to get an inference copy (plain device,
//! flags off: dropout is the identity, BN uses its running statistics); `.train()` goes back.

use burn::config::Config;
use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::blocks::{xavier_uniform, BasicConv2d, Block17, Block35, Block8, BnSettings, PaddingMode, ReductionA, ReductionB};

/// Width and depth of the network: the same code builds the full and the small variant.
#[derive(Config, Debug, PartialEq)]
pub struct InceptionResnetV1Arch {
    /// Output channels of the stem convs `conv2d_1a`, `2a`, `2b`, `3b`, `4a`, `4b`
    /// (full: 32, 32, 64, 80, 192, 256).
    pub stem: [usize; 6],
    /// Padding of the layers the reference pads `VALID` (full: `Valid`).
    pub padding: PaddingMode,
    /// Number of Block35 (full: 5).
    pub block35_repeats: usize,
    /// Branch width of Block35 (full: 32).
    pub block35_width: usize,
    /// Residual scale of Block35.
    #[config(default = 0.17)]
    pub block35_scale: f64,
    /// `[k, l, m, n]` of Reduction-A (full: 192, 192, 256, 384).
    pub reduction_a: [usize; 4],
    /// Number of Block17 (full: 10).
    pub block17_repeats: usize,
    /// Branch width of Block17 (full: 128).
    pub block17_width: usize,
    /// Residual scale of Block17.
    #[config(default = 0.10)]
    pub block17_scale: f64,
    /// Reduction-B widths: branch0 1x1, 3x3/2; branch1 1x1, 3x3/2; branch2 1x1, 3x3, 3x3/2
    /// (full: 256, 384, 256, 256, 256, 256, 256).
    pub reduction_b: [usize; 7],
    /// Number of Block8 with ReLU (full: 5); a final Block8 without ReLU always follows.
    pub block8_repeats: usize,
    /// Branch width of Block8 (full: 192).
    pub block8_width: usize,
    /// Residual scale of the repeated Block8 (the final one uses 1.0, as in the reference).
    #[config(default = 0.20)]
    pub block8_scale: f64,
}

impl InceptionResnetV1Arch {
    /// The reference network (input 160x160 -> 3x3x1792 before pooling; smallest input
    /// 75x75 -> 1x1x1792).
    pub fn full() -> Self {
        InceptionResnetV1Arch {
            stem: [32, 32, 64, 80, 192, 256],
            padding: PaddingMode::Valid,
            block35_repeats: 5,
            block35_width: 32,
            block35_scale: 0.17,
            reduction_a: [192, 192, 256, 384],
            block17_repeats: 10,
            block17_width: 128,
            block17_scale: 0.10,
            reduction_b: [256, 384, 256, 256, 256, 256, 256],
            block8_repeats: 5,
            block8_width: 192,
            block8_scale: 0.20,
        }
    }

    /// The small variant for tests and the CPU demo: same block types, 1-2 blocks per stage,
    /// a quarter to a sixth of the widths, `SAME` padding so 64x64 (and 32x32, down to 1x1)
    /// inputs work (64x64 -> 2x2x288 before pooling, 32x32 -> 1x1x288).
    /// 387,272 parameters (embedding 128, no Logits), 11.8 MMAC = 23.6 MFLOP forward per 64x64
    /// image, 1/120 of the full model's compute at 160x160.
    pub fn small() -> Self {
        InceptionResnetV1Arch {
            stem: [8, 8, 16, 24, 48, 64],
            padding: PaddingMode::Same,
            block35_repeats: 2,
            block35_width: 16,
            block35_scale: 0.17,
            reduction_a: [32, 32, 48, 64],
            block17_repeats: 2,
            block17_width: 32,
            block17_scale: 0.10,
            reduction_b: [32, 48, 32, 32, 32, 32, 32],
            block8_repeats: 1,
            block8_width: 32,
            block8_scale: 0.20,
        }
    }

    /// Channels out of the stem, Reduction-A and Reduction-B.
    pub fn stage_channels(&self) -> [usize; 3] {
        let c35 = self.stem[5];
        let [_, _, m, n] = self.reduction_a;
        let c17 = n + m + c35;
        let [_, b, _, d, _, _, g] = self.reduction_b;
        let c8 = b + d + g + c17;
        [c35, c17, c8]
    }
}

// Limits of a configuration ([`InceptionResnetV1Config::validate`]) and of the input side:
// far above any real network (the full one has widths up to 384, at most 10 blocks per stage,
// 23.5 M parameters with a 512-d embedding; facenet-pytorch's VGGFace2 weights add a Logits
// layer of 8631 classes), low enough that a hostile `model.json` cannot make building the
// network abort on an allocation.

/// Most channels of any layer of [`InceptionResnetV1Arch`].
pub const MAX_WIDTH: usize = 8192;
/// Most blocks of one stage (Block35, Block17, Block8).
pub const MAX_REPEATS: usize = 1000;
/// Widest embedding.
pub const MAX_EMBEDDING_SIZE: usize = 65536;
/// Most classes of the Logits layer.
pub const MAX_CLASSES: usize = 10_000_000;
/// Most values of a network (parameters and batch-norm buffers, Logits included): 2^31,
/// 8 GiB as `f32`.
pub const MAX_PARAMETERS: usize = 1 << 31;
/// Largest input side, in pixels (the published models take 160; options and model files
/// asking for more are refused).
pub const MAX_IMAGE_SIZE: u32 = 1024;

/// Configuration of [`InceptionResnetV1`].
#[derive(Config, Debug)]
pub struct InceptionResnetV1Config {
    /// Size of the embedding / bottleneck (`--embedding_size`; published models use 512).
    #[config(default = 128)]
    pub embedding_size: usize,
    /// Dropout keep probability before the bottleneck (`--keep_probability`, default 1.0 in
    /// `train_softmax.py`); must be in (0, 1].
    #[config(default = 1.0)]
    pub keep_probability: f64,
    /// Number of classes of the training Logits layer; 0 = no Logits layer.
    #[config(default = 0)]
    pub num_classes: usize,
    /// Width/depth description.
    #[config(default = "InceptionResnetV1Arch::full()")]
    pub arch: InceptionResnetV1Arch,
    /// BN epsilon (reference 0.001).
    #[config(default = 0.001)]
    pub bn_epsilon: f64,
    /// BN momentum in burn/PyTorch terms (reference decay 0.995 = momentum 0.005;
    /// facenet-pytorch uses 0.1).
    #[config(default = 0.005)]
    pub bn_momentum: f64,
    /// Train BN gamma. The reference has no gamma (`scale=False`); with `false` (default) the
    /// gamma tensors exist (facenet-pytorch weights have them and load into them) but stay at
    /// their value (1 after init) and receive no gradient.
    #[config(default = false)]
    pub train_bn_gamma: bool,
}

/// What [`InceptionResnetV1::forward`] returns.
#[derive(Debug, Clone)]
pub struct InceptionResnetV1Output {
    /// Bottleneck output after its batch norm, `[batch, embedding_size]` (not normalised).
    pub prelogits: Tensor<2>,
    /// Classifier logits `[batch, num_classes]` when the model has a Logits layer.
    pub logits: Option<Tensor<2>>,
}

impl InceptionResnetV1Output {
    /// The embeddings: L2-normalised prelogits.
    pub fn embeddings(&self) -> Tensor<2> {
        l2_normalize(self.prelogits.clone())
    }
}

/// Row-wise L2 normalisation as `tf.nn.l2_normalize(x, 1, 1e-10)`:
/// `x / sqrt(max(sum(x^2), 1e-10))`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).clamp_min(1e-10).sqrt();
    x / norm
}

/// Inception-ResNet-v1 (full or small, depending on its [`InceptionResnetV1Arch`]).
///
/// Field names match facenet-pytorch's `InceptionResnetV1` state dict (`conv2d_1a.conv.weight`,
/// `repeat_1.0.branch1.1.bn.running_mean`, `last_linear.weight`, `last_bn.bias`,
/// `logits.bias`, ...). Loading such a state dict needs burn's `PyTorchToBurnAdapter` (BN
/// `weight`/`bias` -> `gamma`/`beta`, Linear weight transpose) and skipping
/// `*.num_batches_tracked`; `maxpool_3a`, `avgpool_1a` and the reductions' pool branches
/// have no tensors.
#[derive(Module, Debug)]
pub struct InceptionResnetV1 {
    /// 3x3/2 valid.
    pub conv2d_1a: BasicConv2d,
    /// 3x3 valid.
    pub conv2d_2a: BasicConv2d,
    /// 3x3 same.
    pub conv2d_2b: BasicConv2d,
    /// Max pool 3x3/2.
    pub maxpool_3a: MaxPool2d,
    /// 1x1.
    pub conv2d_3b: BasicConv2d,
    /// 3x3 valid.
    pub conv2d_4a: BasicConv2d,
    /// 3x3/2 valid.
    pub conv2d_4b: BasicConv2d,
    /// Block35 x 5.
    pub repeat_1: Vec<Block35>,
    /// Reduction-A.
    pub mixed_6a: ReductionA,
    /// Block17 x 10.
    pub repeat_2: Vec<Block17>,
    /// Reduction-B.
    pub mixed_7a: ReductionB,
    /// Block8 x 5.
    pub repeat_3: Vec<Block8>,
    /// Final Block8 (scale 1, no ReLU).
    pub block8: Block8,
    /// Dropout before the bottleneck (probability 1 - keep_probability).
    pub dropout: Dropout,
    /// Bottleneck fully connected layer, no bias.
    pub last_linear: Linear,
    /// Bottleneck batch norm (its output is the prelogits).
    pub last_bn: BatchNorm,
    /// Training classifier (Linear with bias), absent when `num_classes == 0`.
    pub logits: Option<Linear>,
}

impl InceptionResnetV1Config {
    /// The small variant with this embedding size, keep probability and number of classes.
    pub fn small(embedding_size: usize, keep_probability: f64, num_classes: usize) -> Self {
        InceptionResnetV1Config::new()
            .with_embedding_size(embedding_size)
            .with_keep_probability(keep_probability)
            .with_num_classes(num_classes)
            .with_arch(InceptionResnetV1Arch::small())
    }

    /// Checks the numbers, within the limits above (not the input size; see
    /// [`cost`](Self::cost) for that).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_EMBEDDING_SIZE).contains(&self.embedding_size) {
            return Err(format!("embedding_size must be in 1..={MAX_EMBEDDING_SIZE}, got {}", self.embedding_size));
        }
        if self.num_classes > MAX_CLASSES {
            return Err(format!("num_classes must be at most {MAX_CLASSES}, got {}", self.num_classes));
        }
        if !(self.keep_probability > 0.0 && self.keep_probability <= 1.0) {
            return Err(format!("keep_probability must be in (0, 1], got {}", self.keep_probability));
        }
        if !(self.bn_epsilon.is_finite() && self.bn_epsilon > 0.0) {
            return Err(format!("bn_epsilon must be > 0, got {}", self.bn_epsilon));
        }
        if !(0.0..=1.0).contains(&self.bn_momentum) {
            return Err(format!("bn_momentum must be in [0, 1], got {}", self.bn_momentum));
        }
        let a = &self.arch;
        let widths = a.stem.iter().chain(&a.reduction_a).chain(&a.reduction_b).chain([&a.block35_width, &a.block17_width, &a.block8_width]);
        if widths.into_iter().any(|&w| w == 0 || w > MAX_WIDTH) {
            return Err(format!("every width of the architecture must be in 1..={MAX_WIDTH}"));
        }
        let repeats = [a.block35_repeats, a.block17_repeats, a.block8_repeats];
        if repeats.iter().any(|&r| r > MAX_REPEATS) {
            return Err(format!("block repeats must be at most {MAX_REPEATS}, got {repeats:?}"));
        }
        if ![a.block35_scale, a.block17_scale, a.block8_scale].iter().all(|s| s.is_finite()) {
            return Err("residual scales must be finite".into());
        }
        let values = self.values();
        if values > MAX_PARAMETERS {
            return Err(format!("{values} parameters and batch-norm values, more than {MAX_PARAMETERS}"));
        }
        Ok(())
    }

    /// Parameters and batch-norm buffers of the network, Logits layer included (what its
    /// weights file holds). The widths and repeats must be within the limits (else the count
    /// may overflow).
    pub fn values(&self) -> usize {
        // the count does not depend on the input size, and every architecture takes 160 x 160
        // (the full one needs 75 x 75)
        self.cost(160).map(|c| c.params + c.bn_buffers).unwrap_or(0)
    }

    fn bn(&self) -> BnSettings {
        BnSettings { epsilon: self.bn_epsilon, momentum: self.bn_momentum, train_gamma: self.train_bn_gamma }
    }

    /// Builds the network on `device` (use `device.autodiff()` to train it).
    ///
    /// # Panics
    /// When [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> InceptionResnetV1 {
        if let Err(e) = self.validate() {
            panic!("invalid InceptionResnetV1Config: {e}");
        }
        let bn = self.bn();
        let a = &self.arch;
        let pad = a.padding.config();
        let [c1a, c2a, c2b, c3b, c4a, c4b] = a.stem;
        let [c35, c17, c8] = a.stage_channels();
        let logits = (self.num_classes > 0).then(|| {
            let mut linear =
                LinearConfig::new(self.embedding_size, self.num_classes).with_bias(true).with_initializer(xavier_uniform()).init(device);
            linear.bias = Some(Initializer::Zeros.init([self.num_classes], device));
            linear
        });
        InceptionResnetV1 {
            conv2d_1a: BasicConv2d::new(3, c1a, [3, 3], 2, pad.clone(), &bn, device),
            conv2d_2a: BasicConv2d::new(c1a, c2a, [3, 3], 1, pad.clone(), &bn, device),
            conv2d_2b: BasicConv2d::same(c2a, c2b, [3, 3], &bn, device),
            maxpool_3a: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(pad.clone()).init(),
            conv2d_3b: BasicConv2d::new(c2b, c3b, [1, 1], 1, pad.clone(), &bn, device),
            conv2d_4a: BasicConv2d::new(c3b, c4a, [3, 3], 1, pad.clone(), &bn, device),
            conv2d_4b: BasicConv2d::new(c4a, c4b, [3, 3], 2, pad, &bn, device),
            repeat_1: (0..a.block35_repeats).map(|_| Block35::new(c35, a.block35_width, a.block35_scale, &bn, device)).collect(),
            mixed_6a: ReductionA::new(c35, a.reduction_a, a.padding, &bn, device),
            repeat_2: (0..a.block17_repeats).map(|_| Block17::new(c17, a.block17_width, a.block17_scale, &bn, device)).collect(),
            mixed_7a: ReductionB::new(c17, a.reduction_b, a.padding, &bn, device),
            repeat_3: (0..a.block8_repeats).map(|_| Block8::new(c8, a.block8_width, a.block8_scale, true, &bn, device)).collect(),
            block8: Block8::new(c8, a.block8_width, 1.0, false, &bn, device),
            dropout: DropoutConfig::new(1.0 - self.keep_probability).init(),
            last_linear: LinearConfig::new(c8, self.embedding_size).with_bias(false).with_initializer(xavier_uniform()).init(device),
            last_bn: bn.init(self.embedding_size, device),
            logits,
        }
    }

    /// Parameter count and forward multiply-accumulates for one `image_size` x `image_size`
    /// image, computed from the architecture without building it. Errors when the image is too
    /// small for the `VALID` layers.
    pub fn cost(&self, image_size: usize) -> Result<ModelCost, String> {
        let a = &self.arch;
        let mut c = CostCounter::default();
        let mode = a.padding;
        let too_small = || format!("input {image_size}x{image_size} is too small for this network");
        let [c1a, c2a, c2b, c3b, c4a, c4b] = a.stem;
        let mut s = image_size;
        s = c.conv(s, 3, c1a, [3, 3], 2, Some(mode), true).ok_or_else(too_small)?;
        s = c.conv(s, c1a, c2a, [3, 3], 1, Some(mode), true).ok_or_else(too_small)?;
        s = c.conv(s, c2a, c2b, [3, 3], 1, None, true).ok_or_else(too_small)?;
        s = mode.out_size(s, 3, 2).ok_or_else(too_small)?;
        c.activations += (c2b * s * s) as u64;
        s = c.conv(s, c2b, c3b, [1, 1], 1, Some(mode), true).ok_or_else(too_small)?;
        s = c.conv(s, c3b, c4a, [3, 3], 1, Some(mode), true).ok_or_else(too_small)?;
        s = c.conv(s, c4a, c4b, [3, 3], 2, Some(mode), true).ok_or_else(too_small)?;
        let s35 = s;
        let [c35, c17, c8] = a.stage_channels();
        for _ in 0..a.block35_repeats {
            let w = a.block35_width;
            c.conv(s, c35, w, [1, 1], 1, None, true);
            c.conv(s, c35, w, [1, 1], 1, None, true);
            c.conv(s, w, w, [3, 3], 1, None, true);
            c.conv(s, c35, w, [1, 1], 1, None, true);
            c.conv(s, w, w, [3, 3], 1, None, true);
            c.conv(s, w, w, [3, 3], 1, None, true);
            c.conv(s, 3 * w, c35, [1, 1], 1, None, false);
        }
        let [k, l, m, n] = a.reduction_a;
        let s17 = c.conv(s, c35, n, [3, 3], 2, Some(mode), true).ok_or_else(too_small)?;
        c.conv(s, c35, k, [1, 1], 1, None, true);
        c.conv(s, k, l, [3, 3], 1, None, true);
        c.conv(s, l, m, [3, 3], 2, Some(mode), true);
        s = s17;
        for _ in 0..a.block17_repeats {
            let w = a.block17_width;
            c.conv(s, c17, w, [1, 1], 1, None, true);
            c.conv(s, c17, w, [1, 1], 1, None, true);
            c.conv(s, w, w, [1, 7], 1, None, true);
            c.conv(s, w, w, [7, 1], 1, None, true);
            c.conv(s, 2 * w, c17, [1, 1], 1, None, false);
        }
        let [b0a, b0b, b1a, b1b, b2a, b2b, b2c] = a.reduction_b;
        c.conv(s, c17, b0a, [1, 1], 1, None, true);
        let s8 = c.conv(s, b0a, b0b, [3, 3], 2, Some(mode), true).ok_or_else(too_small)?;
        c.conv(s, c17, b1a, [1, 1], 1, None, true);
        c.conv(s, b1a, b1b, [3, 3], 2, Some(mode), true);
        c.conv(s, c17, b2a, [1, 1], 1, None, true);
        c.conv(s, b2a, b2b, [3, 3], 1, None, true);
        c.conv(s, b2b, b2c, [3, 3], 2, Some(mode), true);
        s = s8;
        for _ in 0..a.block8_repeats + 1 {
            let w = a.block8_width;
            c.conv(s, c8, w, [1, 1], 1, None, true);
            c.conv(s, c8, w, [1, 1], 1, None, true);
            c.conv(s, w, w, [1, 3], 1, None, true);
            c.conv(s, w, w, [3, 1], 1, None, true);
            c.conv(s, 2 * w, c8, [1, 1], 1, None, false);
        }
        let e = self.embedding_size;
        c.params += c8 * e + 2 * e;
        c.bn_buffers += 2 * e;
        c.macs += (c8 * e) as u64;
        if self.num_classes > 0 {
            c.params += (e + 1) * self.num_classes;
            c.macs += (e * self.num_classes) as u64;
        }
        // the branches' concatenations, each block's residual sum and the reductions' pooled branch
        let s8 = s;
        c.activations += (a.block35_repeats * 2 * c35 * s35 * s35 + 2 * c17 * s17 * s17) as u64;
        c.activations += (a.block17_repeats * 2 * c17 * s17 * s17 + 2 * c8 * s8 * s8) as u64;
        c.activations += ((a.block8_repeats + 1) * 2 * c8 * s8 * s8) as u64;
        c.activations += (2 * c8 + 2 * e + 2 * self.num_classes) as u64;
        Ok(ModelCost { params: c.params, bn_buffers: c.bn_buffers, macs: c.macs, activations: c.activations, final_grid: s })
    }

    /// The smallest square input this configuration accepts.
    pub fn min_image_size(&self) -> usize {
        (1..1024).find(|&s| self.cost(s).is_ok()).unwrap_or(1024)
    }
}

/// Size and compute of a configuration, from [`InceptionResnetV1Config::cost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelCost {
    /// Conv/linear weights and biases, BN gamma and beta.
    pub params: usize,
    /// BN running mean and variance elements (saved with the model, not trained).
    pub bn_buffers: usize,
    /// Forward multiply-accumulates of convs and fully connected layers, per image.
    pub macs: u64,
    /// Values of the feature maps one image makes on the way through (every convolution's
    /// output, the pooled and concatenated maps, the residual sums), the measure of the
    /// activation memory training keeps for the backward pass (`crate::train::memory`).
    pub activations: u64,
    /// Spatial size of the last feature map (before global pooling).
    pub final_grid: usize,
}

impl ModelCost {
    /// Forward FLOPs per image (2 per multiply-accumulate).
    pub fn forward_flops(&self) -> u64 {
        2 * self.macs
    }
}

#[derive(Default)]
struct CostCounter {
    params: usize,
    bn_buffers: usize,
    macs: u64,
    activations: u64,
}

impl CostCounter {
    /// Counts a conv on a `size` x `size` input; `pad` None = SAME stride 1, Some(mode) = a
    /// layer the reference pads VALID. `bn`: conv without bias + BN, else conv with bias.
    /// Returns the output size.
    #[allow(clippy::too_many_arguments)] // one argument per property of the layer
    fn conv(
        &mut self,
        size: usize,
        cin: usize,
        cout: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: Option<PaddingMode>,
        bn: bool,
    ) -> Option<usize> {
        let out = match pad {
            None => size.div_ceil(stride),
            Some(PaddingMode::Valid) => {
                let need = kernel[0].max(kernel[1]);
                if size < need {
                    return None;
                }
                (size - need) / stride + 1
            }
            Some(PaddingMode::Same) => size.div_ceil(stride),
        };
        if out == 0 {
            return None;
        }
        let weights = cin * cout * kernel[0] * kernel[1];
        self.params += weights + if bn { 2 * cout } else { cout };
        if bn {
            self.bn_buffers += 2 * cout;
        }
        self.macs += (weights * out * out) as u64;
        self.activations += (cout * out * out) as u64;
        Some(out)
    }
}

impl InceptionResnetV1 {
    /// The last feature map (after the final Block8, before pooling): `[batch, C, g, g]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.conv2d_1a.forward(images);
        x = self.conv2d_2a.forward(x);
        x = self.conv2d_2b.forward(x);
        x = self.maxpool_3a.forward(x);
        x = self.conv2d_3b.forward(x);
        x = self.conv2d_4a.forward(x);
        x = self.conv2d_4b.forward(x);
        x = self.repeat_1.iter().fold(x, |h, b| b.forward(h));
        x = self.mixed_6a.forward(x);
        x = self.repeat_2.iter().fold(x, |h, b| b.forward(h));
        x = self.mixed_7a.forward(x);
        x = self.repeat_3.iter().fold(x, |h, b| b.forward(h));
        self.block8.forward(x)
    }

    /// Prelogits and (when the model has a Logits layer) logits for `images`
    /// `[batch, 3, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> InceptionResnetV1Output {
        let x = self.features(images);
        let [n, c, _, _] = x.dims();
        // Global average pool (the reference's VALID avg_pool over the whole grid).
        let x: Tensor<2> = x.mean_dim(3).mean_dim(2).reshape([n, c]);
        let x = self.dropout.forward(x);
        let prelogits = self.last_bn.forward(self.last_linear.forward(x));
        let logits = self.logits.as_ref().map(|l| l.forward(prelogits.clone()));
        InceptionResnetV1Output { prelogits, logits }
    }

    /// The network for inference with every convolution's batch norm folded into it
    /// ([`BasicConv2d::fold_batch_norm`]): the same embeddings up to rounding, one pass over
    /// the activations fewer per convolution. Call it on a network in inference mode
    /// (`valid()`); a folded network is not trained or saved.
    pub fn fold_batch_norm(self) -> Self {
        InceptionResnetV1 {
            conv2d_1a: self.conv2d_1a.fold_batch_norm(),
            conv2d_2a: self.conv2d_2a.fold_batch_norm(),
            conv2d_2b: self.conv2d_2b.fold_batch_norm(),
            conv2d_3b: self.conv2d_3b.fold_batch_norm(),
            conv2d_4a: self.conv2d_4a.fold_batch_norm(),
            conv2d_4b: self.conv2d_4b.fold_batch_norm(),
            repeat_1: self.repeat_1.into_iter().map(Block35::fold_batch_norm).collect(),
            mixed_6a: self.mixed_6a.fold_batch_norm(),
            repeat_2: self.repeat_2.into_iter().map(Block17::fold_batch_norm).collect(),
            mixed_7a: self.mixed_7a.fold_batch_norm(),
            repeat_3: self.repeat_3.into_iter().map(Block8::fold_batch_norm).collect(),
            block8: self.block8.fold_batch_norm(),
            ..self
        }
    }

    /// L2-normalised embeddings `[batch, embedding_size]`.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward(images).embeddings()
    }

    /// Embedding size (output width of the bottleneck).
    pub fn embedding_size(&self) -> usize {
        self.last_linear.weight.dims()[1]
    }

    /// Number of classes of the Logits layer (0 when absent).
    pub fn num_classes(&self) -> usize {
        self.logits.as_ref().map_or(0, |l| l.weight.dims()[1])
    }

    /// Every conv weight (stem, branches, residual up projections), the weights the reference
    /// regularises with `weights_regularizer`.
    pub fn conv_weights(&self) -> Vec<Tensor<4>> {
        let mut w: Vec<Tensor<4>> = [&self.conv2d_1a, &self.conv2d_2a, &self.conv2d_2b, &self.conv2d_3b, &self.conv2d_4a, &self.conv2d_4b]
            .iter()
            .map(|c| c.weight())
            .collect();
        w.extend(self.repeat_1.iter().flat_map(Block35::weights));
        w.extend(self.mixed_6a.weights());
        w.extend(self.repeat_2.iter().flat_map(Block17::weights));
        w.extend(self.mixed_7a.weights());
        w.extend(self.repeat_3.iter().flat_map(Block8::weights));
        w.extend(self.block8.weights());
        w
    }

    /// The fully connected weights: bottleneck and (when present) Logits.
    pub fn fc_weights(&self) -> Vec<Tensor<2>> {
        let mut w = vec![self.last_linear.weight.val()];
        w.extend(self.logits.as_ref().map(|l| l.weight.val()));
        w
    }

    /// `sum(w^2) / 2` over every conv and fully connected weight (not BN parameters, not
    /// biases), i.e. TF's `l2_loss` summed over the reference's regularised weights.
    /// The training loss adds `weight_decay * l2_weight_penalty()`. Shape `[1]`.
    pub fn l2_weight_penalty(&self) -> Tensor<1> {
        let conv = self.conv_weights().into_iter().map(|w| w.square().sum());
        let fc = self.fc_weights().into_iter().map(|w| w.square().sum());
        let mut terms = conv.chain(fc);
        let first = terms.next().expect("the network has weights");
        terms.fold(first, |acc, t| acc + t).mul_scalar(0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn small(classes: usize) -> InceptionResnetV1Config {
        InceptionResnetV1Config::small(128, 0.8, classes)
    }

    /// Every 1-D parameter (BN gamma / beta, biases) set to random values in [0.5, 1.5].
    fn perturb_vectors(model: InceptionResnetV1) -> InceptionResnetV1 {
        use burn::module::{ModuleMapper, Param};
        struct M;
        impl ModuleMapper for M {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                if D != 1 {
                    return param;
                }
                let (id, t, mapper) = param.consume();
                let r = Tensor::<D>::random(t.dims(), Distribution::Uniform(0.5, 1.5), &t.device());
                Param::from_mapped_value(id, r, mapper)
            }
        }
        model.map(&mut M)
    }

    #[test]
    fn folded_batch_norm_gives_the_same_embeddings() {
        let ad = Device::flex().autodiff();
        ad.seed(5);
        // momentum 0.5: a few training batches move the running statistics far from (0, 1)
        let config = small(4).with_bn_momentum(0.5);
        let model = perturb_vectors(config.init(&ad));
        for _ in 0..3 {
            let _ = model.forward(Tensor::<4>::random([6, 3, 48, 48], Distribution::Normal(0.4, 2.0), &ad));
        }
        let plain = Device::flex();
        let x = Tensor::<4>::random([5, 3, 48, 48], Distribution::Normal(0.0, 1.0), &plain);
        let inference = model.valid();
        let want = inference.forward(x.clone());
        let folded = inference.fold_batch_norm();
        assert!(folded.conv2d_1a.folded && folded.repeat_1[0].branch2[2].folded && folded.block8.branch1[2].folded);
        let got = folded.forward(x);
        let (w, g): (Vec<f32>, Vec<f32>) =
            (want.prelogits.try_into_vec_as::<f32>().unwrap(), got.prelogits.try_into_vec_as::<f32>().unwrap());
        let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = w.iter().zip(&g).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-4 * scale, "prelogits differ by {worst} (scale {scale})");
        let (we, ge): (Vec<f32>, Vec<f32>) = (
            l2_normalize(Tensor::from_data(TensorData::new(w, [5, 128]), &plain)).try_into_vec_as::<f32>().unwrap(),
            l2_normalize(Tensor::from_data(TensorData::new(g, [5, 128]), &plain)).try_into_vec_as::<f32>().unwrap(),
        );
        for i in 0..5 {
            let cos: f32 = (0..128).map(|j| we[i * 128 + j] * ge[i * 128 + j]).sum();
            assert!(cos > 0.99999, "image {i}: cosine {cos}");
        }
        let (wl, gl): (Vec<f32>, Vec<f32>) =
            (want.logits.unwrap().try_into_vec_as::<f32>().unwrap(), got.logits.unwrap().try_into_vec_as::<f32>().unwrap());
        assert!(wl.iter().zip(&gl).all(|(a, b)| (a - b).abs() <= 1e-3 * (1.0 + a.abs())));
    }

    #[test]
    fn documented_costs() {
        let full = InceptionResnetV1Config::new();
        let c = full.cost(160).unwrap();
        assert_eq!(c.final_grid, 3);
        assert_eq!(c.params, 22_793_728);
        assert_eq!(c.bn_buffers, 28_832);
        assert_eq!(c.macs, 1_416_974_176);
        let c512 = full.clone().with_embedding_size(512).cost(160).unwrap();
        assert_eq!(c512.params, 23_482_624);
        assert_eq!(full.min_image_size(), 75);

        let s = small(0);
        let c = s.cost(64).unwrap();
        assert_eq!(c.final_grid, 2);
        assert_eq!(c.params, 387_272);
        assert_eq!(c.bn_buffers, 2_832);
        assert_eq!(c.macs, 11_823_104);
        assert_eq!(s.cost(32).unwrap().macs, 2_983_424);
        assert_eq!(s.cost(32).unwrap().final_grid, 1);
        assert_eq!(s.min_image_size(), 1);
    }

    #[test]
    fn module_parameter_count_matches_cost() {
        let device = Device::flex();
        for (cfg, size) in [(small(10), 64), (InceptionResnetV1Config::new().with_num_classes(7), 160)] {
            let model = cfg.init(&device);
            let cost = cfg.cost(size).unwrap();
            // num_params counts BN running statistics too.
            assert_eq!(model.num_params(), cost.params + cost.bn_buffers);
        }
    }

    #[test]
    fn small_forward_shapes_64() {
        let device = Device::flex();
        let model = small(10).init(&device);
        let x = Tensor::<4>::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let out = model.forward(x);
        assert_eq!(out.prelogits.dims(), [2, 128]);
        assert_eq!(out.logits.as_ref().unwrap().dims(), [2, 10]);
        let norms: Vec<f32> = out.embeddings().square().sum_dim(1).sqrt().to_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(norms.len(), 2);
        for n in norms {
            assert!((n - 1.0).abs() < 1e-4, "embedding norm {n}");
        }
        assert_eq!(model.embedding_size(), 128);
        assert_eq!(model.num_classes(), 10);
    }

    #[test]
    fn small_forward_32_without_logits() {
        let device = Device::flex();
        let model = small(0).init(&device);
        let x = Tensor::<4>::random([3, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let out = model.forward(x);
        assert_eq!(out.prelogits.dims(), [3, 128]);
        assert!(out.logits.is_none());
        assert_eq!(model.num_classes(), 0);
    }

    #[test]
    fn full_forward_160() {
        let device = Device::flex();
        let model = InceptionResnetV1Config::new().init(&device);
        assert_eq!(model.features(Tensor::zeros([1, 3, 75, 75], &device)).dims(), [1, 1792, 1, 1]);
        let x = Tensor::<4>::random([1, 3, 160, 160], Distribution::Normal(0.0, 1.0), &device);
        let emb = model.embed(x);
        assert_eq!(emb.dims(), [1, 128]);
        let v: Vec<f32> = emb.to_data().try_into_vec_as::<f32>().unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn backward_reaches_conv_weights_and_not_gamma() {
        let device = Device::flex().autodiff();
        let model = small(5).init(&device);
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let out = model.forward(x);
        let loss = out.logits.unwrap().square().mean() + model.l2_weight_penalty().mul_scalar(1e-4);
        let grads = loss.backward();
        for w in [
            model.conv2d_1a.conv.weight.val(),
            model.repeat_1[0].branch2[2].conv.weight.val(),
            model.repeat_3[0].conv2d.weight.val(),
            model.block8.branch1[2].conv.weight.val(),
        ] {
            let g = w.grad(&grads).expect("conv weight gradient");
            let s: f32 = g.abs().sum().into_scalar();
            assert!(s > 0.0 && s.is_finite());
        }
        assert!(model.last_bn.beta.val().grad(&grads).is_some());
        assert!(model.conv2d_1a.bn.gamma.val().grad(&grads).is_none());
    }

    #[test]
    fn l2_penalty_matches_manual_sum() {
        let device = Device::flex();
        let model = small(3).init(&device);
        let p: f32 = model.l2_weight_penalty().into_scalar();
        let mut manual = 0.0f64;
        for w in model.conv_weights() {
            let v: Vec<f32> = w.to_data().try_into_vec_as::<f32>().unwrap();
            manual += v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
        }
        for w in model.fc_weights() {
            let v: Vec<f32> = w.to_data().try_into_vec_as::<f32>().unwrap();
            manual += v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
        }
        assert!((p as f64 - manual / 2.0).abs() < 1e-3 * manual, "{p} vs {}", manual / 2.0);
        // 6 stem + 2 x 7 (Block35) + 4 (Red-A) + 2 x 5 (Block17) + 7 (Red-B) + 2 x 5 (Block8).
        assert_eq!(model.conv_weights().len(), 6 + 14 + 4 + 10 + 7 + 10);
        assert_eq!(model.fc_weights().len(), 2);
    }

    #[test]
    fn xavier_uniform_bounds() {
        let device = Device::flex();
        let model = small(0).init(&device);
        // conv2d_2b: cin -> cout, 3x3: limit sqrt(6 / (cin*9 + cout*9)).
        let [cout, cin, kh, kw] = model.conv2d_2b.weight().dims();
        let limit = (6.0 / ((cin + cout) * kh * kw) as f64).sqrt() as f32;
        let v: Vec<f32> = model.conv2d_2b.weight().to_data().try_into_vec_as::<f32>().unwrap();
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max <= limit && max > 0.8 * limit, "max {max}, limit {limit}");
        let b: Vec<f32> = model.repeat_1[0].conv2d.bias.as_ref().unwrap().val().to_data().try_into_vec_as::<f32>().unwrap();
        assert!(b.iter().all(|x| *x == 0.0));
    }

    #[test]
    fn parameter_names_follow_facenet_pytorch() {
        use burn::module::ModuleVisitor;
        use burn::module::Param;
        struct Paths(Vec<String>, Vec<String>);
        impl ModuleVisitor for Paths {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.1.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.1.pop();
            }
            fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
                self.0.push(self.1.join("."));
            }
        }
        let model = small(4).init(&Device::flex());
        let mut v = Paths(Vec::new(), Vec::new());
        model.visit(&mut v);
        for expected in [
            "conv2d_1a.conv.weight",
            "conv2d_4b.bn.running_var",
            "repeat_1.0.branch1.1.conv.weight",
            "repeat_1.1.conv2d.bias",
            "mixed_6a.branch0.conv.weight",
            "mixed_6a.branch1.2.bn.beta",
            "repeat_2.0.branch1.2.conv.weight",
            "mixed_7a.branch2.2.conv.weight",
            "repeat_3.0.branch0.bn.gamma",
            "block8.conv2d.weight",
            "last_linear.weight",
            "last_bn.running_mean",
            "logits.bias",
        ] {
            assert!(v.0.iter().any(|p| p == expected), "missing {expected}; have e.g. {:?}", &v.0[..5]);
        }
    }

    /// Every tensor of the full model, named as facenet-pytorch names it (BN `weight`/`bias`
    /// are burn's `gamma`/`beta`); `num_batches_tracked` has no burn counterpart.
    #[test]
    fn full_model_keys_equal_facenet_pytorch_state_dict() {
        use burn::module::{ModuleVisitor, Param};
        use std::collections::BTreeSet;
        struct Keys(BTreeSet<String>, Vec<String>);
        impl ModuleVisitor for Keys {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.1.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.1.pop();
            }
            fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
                let mut path = self.1.clone();
                if path.len() >= 2 && path[path.len() - 2].ends_with("bn") {
                    let last = path.last_mut().unwrap();
                    if last == "gamma" {
                        *last = "weight".into();
                    } else if last == "beta" {
                        *last = "bias".into();
                    }
                }
                self.0.insert(path.join("."));
            }
        }
        fn basic(k: &mut BTreeSet<String>, p: &str) {
            k.insert(format!("{p}.conv.weight"));
            for t in ["weight", "bias", "running_mean", "running_var"] {
                k.insert(format!("{p}.bn.{t}"));
            }
        }
        fn up(k: &mut BTreeSet<String>, p: &str) {
            k.insert(format!("{p}.conv2d.weight"));
            k.insert(format!("{p}.conv2d.bias"));
        }
        let mut want = BTreeSet::new();
        for p in ["conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a", "conv2d_4b"] {
            basic(&mut want, p);
        }
        for i in 0..5 {
            let p = format!("repeat_1.{i}");
            basic(&mut want, &format!("{p}.branch0"));
            (0..2).for_each(|j| basic(&mut want, &format!("{p}.branch1.{j}")));
            (0..3).for_each(|j| basic(&mut want, &format!("{p}.branch2.{j}")));
            up(&mut want, &p);
        }
        basic(&mut want, "mixed_6a.branch0");
        (0..3).for_each(|j| basic(&mut want, &format!("mixed_6a.branch1.{j}")));
        let b17_b8 = |want: &mut BTreeSet<String>, p: String| {
            basic(want, &format!("{p}.branch0"));
            (0..3).for_each(|j| basic(want, &format!("{p}.branch1.{j}")));
            up(want, &p);
        };
        (0..10).for_each(|i| b17_b8(&mut want, format!("repeat_2.{i}")));
        (0..2).for_each(|j| basic(&mut want, &format!("mixed_7a.branch0.{j}")));
        (0..2).for_each(|j| basic(&mut want, &format!("mixed_7a.branch1.{j}")));
        (0..3).for_each(|j| basic(&mut want, &format!("mixed_7a.branch2.{j}")));
        (0..5).for_each(|i| b17_b8(&mut want, format!("repeat_3.{i}")));
        b17_b8(&mut want, "block8".to_string());
        want.insert("last_linear.weight".into());
        for t in ["weight", "bias", "running_mean", "running_var"] {
            want.insert(format!("last_bn.{t}"));
        }
        want.insert("logits.weight".into());
        want.insert("logits.bias".into());

        let model = InceptionResnetV1Config::new().with_embedding_size(512).with_num_classes(8631).init(&Device::flex());
        let mut keys = Keys(BTreeSet::new(), Vec::new());
        model.visit(&mut keys);
        let missing: Vec<_> = want.difference(&keys.0).collect();
        let extra: Vec<_> = keys.0.difference(&want).collect();
        assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
    }

    #[test]
    fn safetensors_round_trip_keeps_weights_and_running_stats() {
        use burn::store::{ModuleSnapshot, SafetensorsStore};
        let ad = Device::flex().autodiff();
        let trained = small(3).init(&ad);
        // One training-mode forward moves the BN running statistics away from 0/1.
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.5, 2.0), &ad);
        let _ = trained.forward(x);
        let trained = trained.valid();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.safetensors");
        trained.save_into(&mut SafetensorsStore::from_file(&path)).unwrap();

        let plain = Device::flex();
        let mut fresh = small(3).init(&plain);
        let result = fresh.load_from(&mut SafetensorsStore::from_file(&path)).unwrap();
        assert!(result.errors.is_empty() && result.missing.is_empty(), "{result:?}");

        let probe = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &plain);
        let a: Vec<f32> = trained.forward(probe.clone()).prelogits.to_data().try_into_vec_as::<f32>().unwrap();
        let b: Vec<f32> = fresh.forward(probe).prelogits.to_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(a, b);
        let rm: Vec<f32> = fresh.conv2d_1a.bn.running_mean.value().to_data().try_into_vec_as::<f32>().unwrap();
        assert!(rm.iter().any(|v| *v != 0.0), "running mean was not restored");
    }

    #[test]
    fn valid_copy_is_deterministic_and_train_copy_is_not() {
        let ad = Device::flex().autodiff();
        // keep_probability 0.5 makes dropout visible in training mode.
        let model = InceptionResnetV1Config::small(16, 0.5, 0).init(&ad);
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
        let v = model.valid();
        let xv = x.clone().without_autodiff();
        let a = v.forward(xv.clone()).prelogits.to_data();
        let b = v.forward(xv).prelogits.to_data();
        assert_eq!(a, b);
        let t1 = model.forward(x.clone()).prelogits.to_data();
        let t2 = model.forward(x).prelogits.to_data();
        assert_ne!(t1, t2);
    }

    #[test]
    fn optimizer_step_updates_weights_but_not_frozen_gamma() {
        use burn::nn::loss::CrossEntropyLossConfig;
        use burn::optim::{AdamConfig, GradientsParams};
        use burn::tensor::Int;
        let device = Device::flex().autodiff();
        let model = small(4).init(&device);
        let mut optim = AdamConfig::new().init();
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let y = Tensor::<1, Int>::from_data([0i64, 1, 2, 3].as_slice(), &device);
        let out = model.forward(x);
        let loss = CrossEntropyLossConfig::new().init(&device).forward(out.logits.unwrap(), y) + model.l2_weight_penalty().mul_scalar(1e-3);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let w_before = model.conv2d_1a.weight().to_data();
        let updated = optim.step(0.01, model, grads);
        assert_ne!(updated.conv2d_1a.weight().to_data(), w_before);
        let gamma: Vec<f32> = updated.conv2d_2b.bn.gamma.val().to_data().try_into_vec_as::<f32>().unwrap();
        assert!(gamma.iter().all(|g| *g == 1.0));
        let beta: Vec<f32> = updated.conv2d_2b.bn.beta.val().to_data().try_into_vec_as::<f32>().unwrap();
        assert!(beta.iter().any(|b| *b != 0.0));
        // The frozen gamma stays frozen through an inference round trip.
        let back = updated.valid().train();
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let grads = back.forward(x).prelogits.square().mean().backward();
        assert!(back.conv2d_2b.bn.gamma.val().grad(&grads).is_none());
        assert!(back.conv2d_2b.conv.weight.val().grad(&grads).is_some());
        // Trainable gamma when asked for.
        let model = small(4).with_train_bn_gamma(true).init(&device);
        let x = Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let grads = model.forward(x).prelogits.square().mean().backward();
        assert!(model.conv2d_2b.bn.gamma.val().grad(&grads).is_some());
    }

    /// Timing of the documented operations; `cargo test --release --lib bench_ -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_small_train_step_and_full_forward() {
        use burn::nn::loss::CrossEntropyLossConfig;
        use burn::optim::{AdamConfig, GradientsParams};
        use burn::tensor::Int;
        use std::time::Instant;
        let device = Device::flex().autodiff();
        let classes = 100;
        let mut model = small(classes).init(&device);
        let mut optim = AdamConfig::new().init();
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let mut times = Vec::new();
        for step in 0..8 {
            let x = Tensor::<4>::random([32, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
            let y = Tensor::<1, Int>::from_data((0..32).map(|i| ((i * 7 + step) % classes) as i64).collect::<Vec<_>>().as_slice(), &device);
            let t = Instant::now();
            let out = model.forward(x);
            let loss = loss_fn.forward(out.logits.unwrap(), y) + model.l2_weight_penalty().mul_scalar(5e-4);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(0.01, model, grads);
            let l: f32 = loss.into_scalar();
            times.push(t.elapsed().as_secs_f64());
            eprintln!("small train step {step}: {:.3} s (loss {l:.3})", times[step]);
        }
        let plain = Device::flex();
        let full = InceptionResnetV1Config::new().init(&plain);
        for i in 0..2 {
            let x = Tensor::<4>::random([1, 3, 160, 160], Distribution::Normal(0.0, 1.0), &plain);
            let t = Instant::now();
            let e = full.embed(x);
            let _: Vec<f32> = e.to_data().try_into_vec_as::<f32>().unwrap();
            eprintln!("full forward batch 1 #{i}: {:.3} s", t.elapsed().as_secs_f64());
        }
    }
}
