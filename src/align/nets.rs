//! The three MTCNN networks as burn modules (inference only).
//!
//! Layer and field names are those of facenet-pytorch's `PNet` / `RNet` / `ONet`, so its
//! published state dicts (`pnet.pt`, `rnet.pt`, `onet.pt`) load with burn-store's PyTorch
//! reader; only the PReLU slopes are renamed (`preluN.weight` -> `preluN.alpha`). Those
//! weights are the reference's `det1-3.npy` with the kernels' spatial axes swapped, so the
//! nets run on the image as is (NCHW) instead of on its transpose like the TF original. The
//! fully connected layers flatten in the TF order (`N x W x H x C`).
//!
//! Max pools use `ceil_mode`, which equals TF `SAME` pooling for these sizes (the padding
//! falls at the end); R-Net's and O-Net's second pool is `VALID` in TF and gives the same size
//! either way.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PRelu, PReluConfig};
use burn::tensor::activation::softmax;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

fn conv(cin: usize, cout: usize, k: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k]).init(device)
}

fn prelu(n: usize, device: &Device) -> PRelu {
    PReluConfig::new().with_num_parameters(n).init(device)
}

fn pool(k: usize) -> MaxPool2d {
    MaxPool2dConfig::new([k, k]).with_strides([2, 2]).with_ceil_mode(true).init()
}

fn dense(din: usize, dout: usize, device: &Device) -> Linear {
    LinearConfig::new(din, dout).init(device)
}

/// Flattens `[N, C, H, W]` in TF's `[N, W, H, C]` order (the reference's nets see the image
/// transposed).
fn flatten_tf(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 3, 2, 1]).reshape([n, w * h * c])
}

/// Channel 1 of the softmax over the two channels of `[N, 2, H, W]` logits, as `[N, 1, H, W]`:
/// `exp(l1 - m) / (exp(l0 - m) + exp(l1 - m))` with `m = max(l0, l1)`, computed on the host
/// (the generic softmax over axis 1 transposes the maps twice).
fn softmax2(logits: Tensor<4>) -> Tensor<4> {
    let [n, _, h, w] = logits.dims();
    let device = logits.device();
    let v: Vec<f32> = logits.into_data().try_into_vec_as::<f32>().unwrap_or_default();
    let plane = h * w;
    let mut p = vec![0f32; n * plane];
    for (b, out) in p.chunks_exact_mut(plane.max(1)).enumerate() {
        let (l0, l1) = (&v[2 * b * plane..(2 * b + 1) * plane], &v[(2 * b + 1) * plane..(2 * b + 2) * plane]);
        for ((o, &a), &c) in out.iter_mut().zip(l0).zip(l1) {
            let m = a.max(c);
            let (e0, e1) = ((a - m).exp(), (c - m).exp());
            *o = e1 / (e0 + e1);
        }
    }
    Tensor::from_data(TensorData::new(p, [n, 1, h, w]), &device)
}

/// Proposal net: fully convolutional, 12x12 receptive field, stride 2.
#[derive(Module, Debug)]
pub struct PNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub conv4_1: Conv2d,
    pub conv4_2: Conv2d,
}

/// P-Net output maps at one pyramid level.
pub struct PNetOutput {
    /// Face probability (softmax channel 1), `[N, 1, H', W']`.
    pub prob: Tensor<4>,
    /// Box regression `[dx1, dy1, dx2, dy2]`, `[N, 4, H', W']`.
    pub reg: Tensor<4>,
}

impl PNet {
    /// A P-Net with untrained weights (load the published ones with
    /// [`super::weights::load_nets`]).
    pub fn new(device: &Device) -> Self {
        PNet {
            conv1: conv(3, 10, 3, device),
            prelu1: prelu(10, device),
            pool1: pool(2),
            conv2: conv(10, 16, 3, device),
            prelu2: prelu(16, device),
            conv3: conv(16, 32, 3, device),
            prelu3: prelu(32, device),
            conv4_1: conv(32, 2, 1, device),
            conv4_2: conv(32, 4, 1, device),
        }
    }

    /// `x`: normalised image `[N, 3, H, W]` with H, W >= 12.
    pub fn forward(&self, x: Tensor<4>) -> PNetOutput {
        let x = self.prelu1.forward(self.conv1.forward(x));
        let x = self.pool1.forward(x);
        let x = self.prelu2.forward(self.conv2.forward(x));
        let x = self.prelu3.forward(self.conv3.forward(x));
        // both heads as one 1x1 convolution with 6 output channels (one pass over `x`; each
        // output channel is the same dot product as in its own convolution)
        let weight = Tensor::cat(vec![self.conv4_1.weight.val(), self.conv4_2.weight.val()], 0);
        let bias = match (&self.conv4_1.bias, &self.conv4_2.bias) {
            (Some(a), Some(b)) => Some(Tensor::cat(vec![a.val(), b.val()], 0)),
            _ => None,
        };
        let heads = conv2d(x, weight, bias, ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        let [n, _, h, w] = heads.dims();
        let prob = softmax2(heads.clone().slice([0..n, 0..2, 0..h, 0..w]));
        PNetOutput { prob, reg: heads.slice([0..n, 2..6, 0..h, 0..w]) }
    }
}

/// Refinement net on 24x24 crops.
#[derive(Module, Debug)]
pub struct RNet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub dense4: Linear,
    pub prelu4: PRelu,
    pub dense5_1: Linear,
    pub dense5_2: Linear,
}

/// R-Net outputs for a batch of crops.
pub struct RNetOutput {
    /// Face probability `[N]` (as `[N, 1]`).
    pub prob: Tensor<2>,
    /// Box regression `[N, 4]`.
    pub reg: Tensor<2>,
}

impl RNet {
    pub fn new(device: &Device) -> Self {
        RNet {
            conv1: conv(3, 28, 3, device),
            prelu1: prelu(28, device),
            pool1: pool(3),
            conv2: conv(28, 48, 3, device),
            prelu2: prelu(48, device),
            pool2: pool(3),
            conv3: conv(48, 64, 2, device),
            prelu3: prelu(64, device),
            dense4: dense(576, 128, device),
            prelu4: prelu(128, device),
            dense5_1: dense(128, 2, device),
            dense5_2: dense(128, 4, device),
        }
    }

    /// `x`: normalised crops `[N, 3, 24, 24]`.
    pub fn forward(&self, x: Tensor<4>) -> RNetOutput {
        let x = self.pool1.forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self.pool2.forward(self.prelu2.forward(self.conv2.forward(x)));
        let x = self.prelu3.forward(self.conv3.forward(x));
        let x = self.prelu4.forward(self.dense4.forward(flatten_tf(x)));
        let logits = self.dense5_1.forward(x.clone());
        let n = logits.dims()[0];
        let prob = softmax(logits, 1).slice([0..n, 1..2]);
        RNetOutput { prob, reg: self.dense5_2.forward(x) }
    }
}

/// Output net on 48x48 crops, with landmarks.
#[derive(Module, Debug)]
pub struct ONet {
    pub conv1: Conv2d,
    pub prelu1: PRelu,
    pub pool1: MaxPool2d,
    pub conv2: Conv2d,
    pub prelu2: PRelu,
    pub pool2: MaxPool2d,
    pub conv3: Conv2d,
    pub prelu3: PRelu,
    pub pool3: MaxPool2d,
    pub conv4: Conv2d,
    pub prelu4: PRelu,
    pub dense5: Linear,
    pub prelu5: PRelu,
    pub dense6_1: Linear,
    pub dense6_2: Linear,
    pub dense6_3: Linear,
}

/// O-Net outputs for a batch of crops.
pub struct ONetOutput {
    /// Face probability `[N, 1]`.
    pub prob: Tensor<2>,
    /// Box regression `[N, 4]`.
    pub reg: Tensor<2>,
    /// Landmarks relative to the crop, `[N, 10]`: x1..x5 then y1..y5.
    pub points: Tensor<2>,
}

impl ONet {
    pub fn new(device: &Device) -> Self {
        ONet {
            conv1: conv(3, 32, 3, device),
            prelu1: prelu(32, device),
            pool1: pool(3),
            conv2: conv(32, 64, 3, device),
            prelu2: prelu(64, device),
            pool2: pool(3),
            conv3: conv(64, 64, 3, device),
            prelu3: prelu(64, device),
            pool3: pool(2),
            conv4: conv(64, 128, 2, device),
            prelu4: prelu(128, device),
            dense5: dense(1152, 256, device),
            prelu5: prelu(256, device),
            dense6_1: dense(256, 2, device),
            dense6_2: dense(256, 4, device),
            dense6_3: dense(256, 10, device),
        }
    }

    /// `x`: normalised crops `[N, 3, 48, 48]`.
    pub fn forward(&self, x: Tensor<4>) -> ONetOutput {
        let x = self.pool1.forward(self.prelu1.forward(self.conv1.forward(x)));
        let x = self.pool2.forward(self.prelu2.forward(self.conv2.forward(x)));
        let x = self.pool3.forward(self.prelu3.forward(self.conv3.forward(x)));
        let x = self.prelu4.forward(self.conv4.forward(x));
        let x = self.prelu5.forward(self.dense5.forward(flatten_tf(x)));
        let logits = self.dense6_1.forward(x.clone());
        let n = logits.dims()[0];
        let prob = softmax(logits, 1).slice([0..n, 1..2]);
        ONetOutput { prob, reg: self.dense6_2.forward(x.clone()), points: self.dense6_3.forward(x) }
    }
}

/// The three nets on one device.
#[derive(Debug)]
pub struct Nets {
    pub pnet: PNet,
    pub rnet: RNet,
    pub onet: ONet,
    pub device: Device,
}

impl Nets {
    /// Untrained nets (tests, shapes); see [`super::weights::load_nets`] for the real ones.
    pub fn untrained(device: &Device) -> Self {
        Nets { pnet: PNet::new(device), rnet: RNet::new(device), onet: ONet::new(device), device: device.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shapes() {
        let d = Device::flex();
        let nets = Nets::untrained(&d);
        // P-Net on 12x12 gives one cell; on 25x31: conv 23x29, pool 12x15, conv 10x13, 8x11
        let o = nets.pnet.forward(Tensor::zeros([1, 3, 12, 12], &d));
        assert_eq!(o.prob.dims(), [1, 1, 1, 1]);
        assert_eq!(o.reg.dims(), [1, 4, 1, 1]);
        let o = nets.pnet.forward(Tensor::zeros([2, 3, 25, 31], &d));
        assert_eq!(o.prob.dims(), [2, 1, 8, 11]);
        let o = nets.rnet.forward(Tensor::zeros([3, 3, 24, 24], &d));
        assert_eq!(o.prob.dims(), [3, 1]);
        assert_eq!(o.reg.dims(), [3, 4]);
        let o = nets.onet.forward(Tensor::zeros([2, 3, 48, 48], &d));
        assert_eq!(o.prob.dims(), [2, 1]);
        assert_eq!(o.points.dims(), [2, 10]);
        let p: Vec<f32> = o.prob.to_data().try_into_vec_as::<f32>().unwrap();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
