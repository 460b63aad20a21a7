//! Fused batch normalisation for `[batch, channels, ...]` tensors.
//!
//! burn-backend's generic versions build the statistics and gradients out of
//! tensor operations: each swaps the batch and channel axes (a full transposed
//! copy) before every per-channel reduction and then runs five to eight
//! broadcasting element-wise passes. Here each is one reduction pass per
//! channel plus one element-wise pass, parallel over channels and planes.
//! Plane sums are accumulated in eight `T` lanes (so they vectorise) and
//! combined across planes in f64.

use alloc::vec;
use alloc::vec::Vec;

use burn_backend::Element;
use burn_std::{Bytes, Shape};
use num_traits::{Float, ToPrimitive};

use super::par_chunks::for_each_chunk;
use crate::{FlexTensor, Layout};

const LANES: usize = 8;

/// `[batch, channels, spatial]` view of a contiguous tensor.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    channels: usize,
    spatial: usize,
}

impl Dims {
    fn of(shape: &Shape) -> Self {
        let batch = shape[0];
        let channels = shape[1];
        let spatial = shape.iter().skip(2).product();
        Self { batch, channels, spatial }
    }

    fn count(&self) -> f64 {
        (self.batch * self.spatial) as f64
    }

    fn plane(&self, b: usize, c: usize) -> core::ops::Range<usize> {
        let start = (b * self.channels + c) * self.spatial;
        start..start + self.spatial
    }
}

/// Sum of `f(i)` over a plane, in `LANES` partial sums.
#[inline]
fn lane_sum<T: Float>(len: usize, f: impl Fn(usize) -> T) -> f64 {
    let mut acc = [T::zero(); LANES];
    let full = len / LANES * LANES;
    let mut i = 0;
    while i < full {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = *a + f(i + l);
        }
        i += LANES;
    }
    let mut total: f64 = acc.iter().map(|v| f64_of(*v)).sum();
    for j in full..len {
        total += f64_of(f(j));
    }
    total
}

/// Runs `f(i, &mut out[i])` for every element of `out` (in parallel with rayon).
fn per_channel<V: Send, F: Fn(usize, &mut V) + Send + Sync>(out: &mut [V], f: F) {
    for_each_chunk(out, 1, |i, v| f(i, &mut v[0]));
}

fn values<T: Float + Element + bytemuck::Pod>(t: &FlexTensor) -> Vec<T> {
    t.to_contiguous().storage::<T>().to_vec()
}

fn tensor<T: Element + bytemuck::Pod>(data: Vec<T>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), T::dtype())
}

/// `out = x * scale[c] + shift[c]` for every plane.
fn affine<T: Float + Element + bytemuck::Pod + Send + Sync>(
    x: &[T],
    dims: Dims,
    scale: &[T],
    shift: &[T],
) -> Vec<T> {
    // every element is written below: no zeroing pass first (one thread's memset)
    let mut out: Vec<T> = Vec::with_capacity(x.len());
    for_each_chunk(&mut out.spare_capacity_mut()[..x.len()], dims.spatial, |p, o| {
        let c = p % dims.channels;
        let (a, b) = (scale[c], shift[c]);
        let src = &x[p * dims.spatial..(p + 1) * dims.spatial];
        for (o, v) in o.iter_mut().zip(src) {
            o.write(*v * a + b);
        }
    });
    // SAFETY: the planes cover the buffer and each was written whole
    unsafe { out.set_len(x.len()) };
    out
}

#[inline]
fn f64_of<T: Float>(v: T) -> f64 {
    ToPrimitive::to_f64(&v).unwrap_or(f64::NAN)
}

fn from_f64<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// Normalisation with given statistics (inference).
pub(crate) fn batch_norm_typed<T>(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
) -> FlexTensor
where
    T: Float + Element + bytemuck::Pod + Send + Sync,
{
    let x = x.to_contiguous();
    let shape = x.layout().shape().clone();
    let dims = Dims::of(&shape);
    let (gamma, beta) = (values::<T>(&gamma), values::<T>(&beta));
    let (mean, variance) = (values::<T>(&mean), values::<T>(&variance));
    let mut scale = vec![T::zero(); dims.channels];
    let mut shift = vec![T::zero(); dims.channels];
    for c in 0..dims.channels {
        let inv_std = 1.0 / (f64_of(variance[c]) + epsilon).sqrt();
        let s = f64_of(gamma[c]) * inv_std;
        scale[c] = from_f64(s);
        shift[c] = from_f64(
            f64_of(beta[c]) - f64_of(mean[c]) * s,
        );
    }
    tensor(affine(x.storage::<T>(), dims, &scale, &shift), shape)
}

/// Normalisation with the batch's own statistics: (output, mean, biased variance).
pub(crate) fn batch_norm_train_typed<T>(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    epsilon: f64,
) -> (FlexTensor, FlexTensor, FlexTensor)
where
    T: Float + Element + bytemuck::Pod + Send + Sync,
{
    let x = x.to_contiguous();
    let shape = x.layout().shape().clone();
    let dims = Dims::of(&shape);
    let data: &[T] = x.storage();
    let (gamma, beta) = (values::<T>(&gamma), values::<T>(&beta));

    // (mean, variance) per channel, two passes for accuracy.
    let mut stats = vec![(0.0f64, 0.0f64); dims.channels];
    per_channel(&mut stats, |c, st| {
        let n = dims.count();
        let sum: f64 = (0..dims.batch)
            .map(|b| {
                let p = &data[dims.plane(b, c)];
                lane_sum(p.len(), |i| p[i])
            })
            .sum();
        let mean = sum / n;
        let m: T = from_f64(mean);
        let sq: f64 = (0..dims.batch)
            .map(|b| {
                let p = &data[dims.plane(b, c)];
                lane_sum(p.len(), |i| {
                    let d = p[i] - m;
                    d * d
                })
            })
            .sum();
        *st = (mean, sq / n);
    });

    let mut scale = vec![T::zero(); dims.channels];
    let mut shift = vec![T::zero(); dims.channels];
    for (c, (mean, var)) in stats.iter().enumerate() {
        let s = f64_of(gamma[c]) / (var + epsilon).sqrt();
        scale[c] = from_f64(s);
        shift[c] = from_f64(f64_of(beta[c]) - mean * s);
    }
    let output = tensor(affine(data, dims, &scale, &shift), shape);
    let channels = Shape::new([dims.channels]);
    let mean = tensor(stats.iter().map(|s| from_f64::<T>(s.0)).collect(), channels.clone());
    let var = tensor(stats.iter().map(|s| from_f64::<T>(s.1)).collect(), channels);
    (output, mean, var)
}

/// Gradients of the training normalisation: (x, gamma, beta).
pub(crate) fn batch_norm_train_backward_typed<T>(
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    output_grad: FlexTensor,
) -> (FlexTensor, FlexTensor, FlexTensor)
where
    T: Float + Element + bytemuck::Pod + Send + Sync,
{
    let x = x.to_contiguous();
    let grad = output_grad.to_contiguous();
    let shape = x.layout().shape().clone();
    let dims = Dims::of(&shape);
    let xs: &[T] = x.storage();
    let gs: &[T] = grad.storage();
    let gamma = values::<T>(&gamma);
    let mean = values::<T>(&mean);
    let variance = values::<T>(&variance);
    let inv_std: Vec<f64> = variance
        .iter()
        .map(|v| 1.0 / (f64_of(*v) + epsilon).sqrt())
        .collect();

    // (sum of g, sum of g * x_hat) per channel
    let mut sums = vec![(0.0f64, 0.0f64); dims.channels];
    per_channel(&mut sums, |c, s| {
        let m = mean[c];
        let mut sum_g = 0.0;
        let mut sum_gxc = 0.0;
        for b in 0..dims.batch {
            let range = dims.plane(b, c);
            let (xp, gp) = (&xs[range.clone()], &gs[range]);
            sum_g += lane_sum(gp.len(), |i| gp[i]);
            sum_gxc += lane_sum(gp.len(), |i| gp[i] * (xp[i] - m));
        }
        *s = (sum_g, sum_gxc * inv_std[c]);
    });

    // x_grad = gamma * inv_std * (g - sum_g / n - x_hat * sum_gxhat / n)
    //        = g * a + (x - mean) * b + d   per channel
    let n = dims.count();
    let mut a = vec![T::zero(); dims.channels];
    let mut bcoef = vec![T::zero(); dims.channels];
    let mut d = vec![T::zero(); dims.channels];
    for c in 0..dims.channels {
        let k = f64_of(gamma[c]) * inv_std[c];
        let (sum_g, sum_gxhat) = sums[c];
        let xhat_coef = inv_std[c] * sum_gxhat / n; // multiplies (x - mean)
        a[c] = from_f64(k);
        bcoef[c] = from_f64(-k * xhat_coef);
        d[c] = from_f64(-k * sum_g / n);
    }
    // every element is written below: no zeroing pass first (it ran on one thread)
    let mut x_grad: Vec<T> = Vec::with_capacity(xs.len());
    for_each_chunk(&mut x_grad.spare_capacity_mut()[..xs.len()], dims.spatial, |p, out| {
        let c = p % dims.channels;
        let (ka, kb, kd, m) = (a[c], bcoef[c], d[c], mean[c]);
        let range = p * dims.spatial..(p + 1) * dims.spatial;
        for ((o, g), x) in out.iter_mut().zip(&gs[range.clone()]).zip(&xs[range]) {
            o.write(*g * ka + (*x - m) * kb + kd);
        }
    });
    // SAFETY: the chunks, one per (image, channel) plane, cover all `xs.len()` elements
    unsafe { x_grad.set_len(xs.len()) };

    let channels = Shape::new([dims.channels]);
    let gamma_grad = tensor(sums.iter().map(|s| from_f64::<T>(s.1)).collect(), channels.clone());
    let beta_grad = tensor(sums.iter().map(|s| from_f64::<T>(s.0)).collect(), channels);
    (tensor(x_grad, shape), gamma_grad, beta_grad)
}
