//! The CPU kernels of the patched burn-flex (`patches/burn-flex`, see `patches/README.md`)
//! against a direct evaluation of the definition in f64 (bit for bit where the patch must not
//! change results): the 2-D convolution and its gradients for the shapes the networks use
//! (1x1, 3x3, 1x7/7x1, stride 2, TF-SAME asymmetric padding) and for dilation, groups and
//! batches larger than one im2col chunk; batch normalisation, max pooling, PReLU, channel
//! slices and the parallel element-wise passes.

// the allocator of the `facenet` binary, so that timings see the same allocation costs
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

mod common;
use common::values;

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: [usize; 2],
    stride: [usize; 2],
    /// (begin, end) per axis
    pad: [(usize, usize); 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Case {
    fn out(&self) -> [usize; 2] {
        let o =
            |i: usize, size: usize| (size + self.pad[i].0 + self.pad[i].1 - self.dilation[i] * (self.k[i] - 1) - 1) / self.stride[i] + 1;
        [o(0, self.h), o(1, self.w)]
    }
}

/// conv(x, w, b) and d(sum(conv(x, w, b) * r))/dx, /dw, /db by the definition, in f64.
fn reference(case: &Case, x: &[f32], w: &[f32], bias: &[f32], r: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let [ho, wo] = case.out();
    let cg = case.c_in / case.groups;
    let og = case.c_out / case.groups;
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; case.c_out];
    let mut y = vec![0.0; r.len()];
    for b in 0..case.batch {
        for o in 0..case.c_out {
            let g = o / og;
            for p in 0..ho {
                for q in 0..wo {
                    let yi = ((b * case.c_out + o) * ho + p) * wo + q;
                    let go = r[yi] as f64;
                    db[o] += go;
                    y[yi] += bias[o] as f64;
                    for c in 0..cg {
                        for i in 0..case.k[0] {
                            for j in 0..case.k[1] {
                                let ih = (p * case.stride[0] + i * case.dilation[0]) as isize - case.pad[0].0 as isize;
                                let iw = (q * case.stride[1] + j * case.dilation[1]) as isize - case.pad[1].0 as isize;
                                if ih < 0 || iw < 0 || ih >= case.h as isize || iw >= case.w as isize {
                                    continue;
                                }
                                let xi = ((b * case.c_in + g * cg + c) * case.h + ih as usize) * case.w + iw as usize;
                                let wi = ((o * cg + c) * case.k[0] + i) * case.k[1] + j;
                                dx[xi] += w[wi] as f64 * go;
                                dw[wi] += x[xi] as f64 * go;
                                y[yi] += x[xi] as f64 * w[wi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    (y, dx, dw, db)
}

fn assert_close(name: &str, case: &Case, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name} length, {case:?}");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(((*g as f64) - w).abs() <= 1e-4 * scale, "{name}[{i}] = {g}, expected {w} (scale {scale}), {case:?}");
    }
}

fn check(case: Case) {
    let device = Device::flex().autodiff();
    let [ho, wo] = case.out();
    let cg = case.c_in / case.groups;
    let xv = values(case.batch * case.c_in * case.h * case.w, 1);
    let wv = values(case.c_out * cg * case.k[0] * case.k[1], 2);
    let bv = values(case.c_out, 3);
    let rv = values(case.batch * case.c_out * ho * wo, 4);

    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [case.batch, case.c_in, case.h, case.w]), &device).require_grad();
    let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), [case.c_out, cg, case.k[0], case.k[1]]), &device).require_grad();
    let b = Tensor::<1>::from_data(TensorData::new(bv.clone(), [case.c_out]), &device).require_grad();
    let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), [case.batch, case.c_out, ho, wo]), &device);
    let options = ConvOptions::new_with_padding(case.stride, case.pad, case.dilation, case.groups);
    let y = conv2d(x.clone(), w.clone(), Some(b.clone()), options);
    assert_eq!(y.dims(), [case.batch, case.c_out, ho, wo], "{case:?}");
    let (y_ref, dx, dw, db) = reference(&case, &xv, &wv, &bv, &rv);
    let y_got = y.clone().to_data().try_into_vec_as::<f32>().unwrap();
    assert_close("y", &case, &y_got, &y_ref);
    let grads = (y * r).sum().backward();
    let got = |t: &Tensor<4>| t.grad(&grads).unwrap().to_data().try_into_vec_as::<f32>().unwrap();
    assert_close("dx", &case, &got(&x), &dx);
    assert_close("dw", &case, &got(&w), &dw);
    let gb = b.grad(&grads).unwrap().to_data().try_into_vec_as::<f32>().unwrap();
    assert_close("db", &case, &gb, &db);
}

fn case(c_in: usize, c_out: usize, k: [usize; 2], stride: [usize; 2], pad: [(usize, usize); 2]) -> Case {
    Case { batch: 3, c_in, h: 9, w: 8, c_out, k, stride, pad, dilation: [1, 1], groups: 1 }
}

#[test]
fn pointwise() {
    check(case(5, 4, [1, 1], [1, 1], [(0, 0), (0, 0)]));
    // maps on which the gradients are one GEMM per image on the tensors as they lie (input
    // gradient from 64 positions, weight gradient from 256), with one image (no tasks) and
    // several; and a map below both
    for (batch, h, w) in [(3, 17, 17), (1, 16, 17), (2, 8, 8), (4, 3, 3)] {
        let z = [(0, 0), (0, 0)];
        check(Case { batch, c_in: 16, h, w, c_out: 8, k: [1, 1], stride: [1, 1], pad: z, dilation: [1, 1], groups: 1 });
    }
}

/// Backward passes of batches of small maps, several images per task (uneven last task):
/// 8x8 maps four tasks per worker, 3x3 maps as wide tasks; the partial weight gradients of
/// the tasks summed.
#[test]
fn small_maps_in_multi_image_backward_tasks() {
    let s1 = [(1, 1), (1, 1)];
    for (batch, h) in [(37usize, 8usize), (40, 8), (37, 3)] {
        check(Case { batch, c_in: 6, h, w: h, c_out: 5, k: [3, 3], stride: [1, 1], pad: s1, dilation: [1, 1], groups: 1 });
        check(Case { batch, c_in: 6, h, w: h, c_out: 5, k: [1, 1], stride: [1, 1], pad: [(0, 0), (0, 0)], dilation: [1, 1], groups: 1 });
    }
}

/// The weight gradient of a batch split into many tasks is the same, bit for bit, on every
/// run (its partial sums are grouped by the shapes, not by how the work happened to be stolen):
/// what lets a resumed training run repeat the uninterrupted one exactly.
#[test]
fn weight_gradient_is_the_same_on_every_run() {
    let (batch, c_in, hw, c_out) = (48usize, 8usize, 20usize, 6usize);
    let ad = Device::flex().autodiff();
    let xv = values(batch * c_in * hw * hw, 11);
    let wv = values(c_out * c_in * 9, 12);
    let options = ConvOptions::new_with_padding([1, 1], [(1, 1), (1, 1)], [1, 1], 1);
    let grad = || {
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [batch, c_in, hw, hw]), &ad);
        let w = Tensor::<4>::from_data(TensorData::new(wv.clone(), [c_out, c_in, 3, 3]), &ad).require_grad();
        let y = conv2d(x, w.clone(), None, options.clone());
        let grads = (y.clone() * y).sum().backward();
        w.grad(&grads).unwrap().to_data().try_into_vec_as::<f32>().unwrap()
    };
    let first = grad();
    for run in 1..12 {
        let again = grad();
        let same = first.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "run {run}: the weight gradient differs from the first run's");
    }
}

#[test]
fn three_by_three_same_and_valid() {
    check(case(3, 6, [3, 3], [1, 1], [(1, 1), (1, 1)]));
    check(case(4, 2, [3, 3], [1, 1], [(0, 0), (0, 0)]));
}

#[test]
fn strided_and_tf_same_asymmetric_padding() {
    // TF 'SAME' with stride 2 on an even size pads one pixel at the end only.
    check(case(3, 4, [3, 3], [2, 2], [(0, 1), (0, 1)]));
    check(case(2, 3, [3, 3], [2, 2], [(0, 0), (0, 0)]));
    check(case(2, 3, [1, 1], [2, 2], [(0, 0), (0, 0)]));
}

#[test]
fn factorised_kernels() {
    check(case(4, 3, [1, 7], [1, 1], [(0, 0), (3, 3)]));
    check(case(4, 3, [7, 1], [1, 1], [(3, 3), (0, 0)]));
    check(case(3, 2, [2, 3], [2, 1], [(1, 0), (2, 1)]));
}

#[test]
fn dilation_and_groups() {
    let mut c = case(4, 6, [3, 3], [1, 1], [(2, 2), (2, 2)]);
    c.dilation = [2, 2];
    check(c);
    let mut c = case(4, 6, [3, 3], [1, 2], [(1, 1), (1, 1)]);
    c.groups = 2;
    check(c);
}

#[test]
fn batch_larger_than_one_im2col_chunk() {
    // 24 * 9 * 48 * 48 rows x columns per image: a chunk (4 Mi elements) holds 8 images.
    let c =
        Case { batch: 20, c_in: 24, h: 48, w: 48, c_out: 8, k: [3, 3], stride: [1, 1], pad: [(1, 1), (1, 1)], dilation: [1, 1], groups: 1 };
    check(c);
}

#[test]
fn large_images_in_bands_of_output_rows() {
    // 27 x 218 x 198 im2col elements per image: above the banding threshold (1 Mi).
    let c =
        Case { batch: 2, c_in: 3, h: 220, w: 200, c_out: 5, k: [3, 3], stride: [1, 1], pad: [(0, 0), (0, 0)], dilation: [1, 1], groups: 1 };
    check(c);
    let c =
        Case { batch: 1, c_in: 4, h: 401, w: 357, c_out: 6, k: [3, 3], stride: [2, 2], pad: [(0, 1), (1, 1)], dilation: [1, 1], groups: 1 };
    check(c);
}

/// Batch normalisation with batch statistics (training) and with given statistics
/// (inference), and the training gradients, against the definition in f64. The input
/// has a large offset so that a formula that cancels catastrophically would show.
#[test]
fn batch_norm_train_inference_and_gradients() {
    use burn::tensor::module::{batch_norm, batch_norm_train};
    let (n, c, h, w) = (3usize, 4usize, 5usize, 6usize);
    let eps = 1e-3;
    let xv: Vec<f32> = values(n * c * h * w, 5).iter().enumerate().map(|(i, v)| v * (1.0 + (i % 3) as f32) + 20.0).collect();
    let gv = values(c, 6).iter().map(|v| v + 1.5).collect::<Vec<_>>();
    let bv = values(c, 7);
    let rv = values(n * c * h * w, 8);
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [n, c, h, w]), &device).require_grad();
    let gamma = Tensor::<1>::from_data(TensorData::new(gv.clone(), [c]), &device).require_grad();
    let beta = Tensor::<1>::from_data(TensorData::new(bv.clone(), [c]), &device).require_grad();
    let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), [n, c, h, w]), &device);
    let out = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), eps);
    let grads = (out.output.clone() * r).sum().backward();

    // reference
    let s = h * w;
    let m = (n * s) as f64;
    let idx = |b: usize, ch: usize, i: usize| (b * c + ch) * s + i;
    let mut want_y = vec![0.0; xv.len()];
    let mut want_dx = vec![0.0; xv.len()];
    let (mut want_mean, mut want_var, mut want_dg, mut want_db) = (vec![0.0; c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let all = || (0..n).flat_map(move |b| (0..s).map(move |i| idx(b, ch, i)));
        let mean = all().map(|k| xv[k] as f64).sum::<f64>() / m;
        let var = all().map(|k| (xv[k] as f64 - mean).powi(2)).sum::<f64>() / m;
        let inv = 1.0 / (var + eps).sqrt();
        let (g, b) = (gv[ch] as f64, bv[ch] as f64);
        let sum_r = all().map(|k| rv[k] as f64).sum::<f64>();
        let sum_rx = all().map(|k| rv[k] as f64 * (xv[k] as f64 - mean) * inv).sum::<f64>();
        for k in all() {
            let xh = (xv[k] as f64 - mean) * inv;
            want_y[k] = xh * g + b;
            want_dx[k] = g * inv * (rv[k] as f64 - sum_r / m - xh * sum_rx / m);
        }
        want_mean[ch] = mean;
        want_var[ch] = var;
        want_dg[ch] = sum_rx;
        want_db[ch] = sum_r;
    }
    let case = case(c, c, [1, 1], [1, 1], [(0, 0), (0, 0)]);
    let v1 = |t: Tensor<1>| t.to_data().try_into_vec_as::<f32>().unwrap();
    let v4 = |t: Tensor<4>| t.to_data().try_into_vec_as::<f32>().unwrap();
    assert_close("bn y", &case, &v4(out.output), &want_y);
    assert_close("bn mean", &case, &v1(out.mean.clone()), &want_mean);
    assert_close("bn var", &case, &v1(out.variance.clone()), &want_var);
    assert_close("bn dx", &case, &v4(x.grad(&grads).unwrap()), &want_dx);
    assert_close("bn dgamma", &case, &v1(gamma.grad(&grads).unwrap()), &want_dg);
    assert_close("bn dbeta", &case, &v1(beta.grad(&grads).unwrap()), &want_db);

    // inference with the batch's statistics gives the same output
    let plain = Device::flex();
    let t1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [c]), &plain);
    let y = batch_norm(
        Tensor::<4>::from_data(TensorData::new(xv.clone(), [n, c, h, w]), &plain),
        t1(&gv),
        t1(&bv),
        t1(&want_mean.iter().map(|v| *v as f32).collect::<Vec<_>>()),
        t1(&want_var.iter().map(|v| *v as f32).collect::<Vec<_>>()),
        eps,
    );
    assert_close("bn inference y", &case, &v4(y), &want_y);
}

/// Max pooling (inference path) against the definition: MTCNN's 2x2/2 and 3x3/2 in ceil
/// mode on odd sizes, Inception's 3x3/2 valid, a padded and a dilated window, and NaN
/// propagation.
#[test]
fn max_pool2d_matches_definition() {
    use burn::tensor::module::max_pool2d;
    use burn::tensor::ops::MaxPoolOptions;
    for (h, w) in [(11usize, 8usize), (9, 13), (4, 3), (5, 37), (3, 48), (22, 22), (23, 46), (7, 32)] {
        let (n, c) = (2usize, 3usize);
        let mut xv = values(n * c * h * w, 9);
        xv[5] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [n, c, h, w]), &Device::flex());
        for (k, s, p, d, ceil) in [(2, 2, 0, 1, true), (3, 2, 0, 1, true), (3, 2, 0, 1, false), (3, 1, 1, 1, false), (2, 1, 0, 2, false)] {
            let options = MaxPoolOptions::new([k, k]).with_stride([s, s]).with_padding([p, p]).with_dilation([d, d]).with_ceil_mode(ceil);
            let y = max_pool2d(x.clone(), options);
            let [_, _, oh, ow] = y.dims();
            let size = |i: usize| {
                let num = i + 2 * p - d * (k - 1) - 1;
                let o = if ceil { num.div_ceil(s) + 1 } else { num / s + 1 };
                if ceil && (o - 1) * s >= i + p {
                    o - 1
                } else {
                    o
                }
            };
            assert_eq!((oh, ow), (size(h), size(w)), "k{k} s{s} p{p} d{d} ceil {ceil}");
            let got = y.to_data().try_into_vec_as::<f32>().unwrap();
            for b in 0..n * c {
                for r in 0..oh {
                    for q in 0..ow {
                        let mut want = f32::NEG_INFINITY;
                        for i in 0..k {
                            for j in 0..k {
                                let (ih, iw) = ((r * s + i * d) as isize - p as isize, (q * s + j * d) as isize - p as isize);
                                if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                                    let v = xv[b * h * w + ih as usize * w + iw as usize];
                                    if v > want || v.is_nan() {
                                        want = v;
                                    }
                                }
                            }
                        }
                        let g = got[(b * oh + r) * ow + q];
                        assert!(
                            g == want || (g.is_nan() && want.is_nan()),
                            "{h}x{w} k{k} s{s} p{p} d{d} ceil {ceil} at {b},{r},{q}: {g} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// Materialising a slice along an outer axis (rows contiguous, strided apart), small and
/// above the parallel threshold.
#[test]
fn channel_slices_copy_exactly() {
    for (n, c, h, w) in [(2usize, 5usize, 3usize, 4usize), (4, 6, 300, 300)] {
        let xv = values(n * c * h * w, 11);
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [n, c, h, w]), &Device::flex());
        let y = x.slice([0..n, 1..4, 0..h, 0..w]);
        let got = y.to_data().try_into_vec_as::<f32>().unwrap();
        let want: Vec<f32> = (0..n).flat_map(|b| xv[(b * c + 1) * h * w..(b * c + 4) * h * w].to_vec()).collect();
        assert_eq!(got, want, "{n}x{c}x{h}x{w}");
    }
}

/// Per-layer speed of the convolutions of Inception-ResNet-v1 at batch 32, 160x160
/// (forward, and forward + both gradients), in GFLOP/s. A benchmark, not a test; at the
/// repository root: `cargo test --release --test kernels -- --ignored --nocapture conv_layer_speed`.
#[test]
#[ignore]
fn conv_layer_speed() {
    use std::time::Instant;
    // keep freed memory as the `facenet` binary does (its src/main.rs): no page faults in the timings
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let batch: usize = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(32);
    // (name, count, c_in, hw, c_out, k, stride, pad(begin,end) per axis)
    type L = (&'static str, usize, usize, [usize; 2], usize, [usize; 2], [usize; 2], [(usize, usize); 2]);
    let z = [(0, 0), (0, 0)];
    let s1 = [(1, 1), (1, 1)];
    let layers: Vec<L> = vec![
        ("stem1 3x3s2", 1, 3, [160, 160], 32, [3, 3], [2, 2], z),
        ("stem2 3x3", 1, 32, [79, 79], 32, [3, 3], [1, 1], z),
        ("stem3 3x3same", 1, 32, [77, 77], 64, [3, 3], [1, 1], s1),
        ("stem5 1x1", 1, 64, [38, 38], 80, [1, 1], [1, 1], z),
        ("stem6 3x3", 1, 80, [38, 38], 192, [3, 3], [1, 1], z),
        ("stem7 3x3s2", 1, 192, [36, 36], 256, [3, 3], [2, 2], z),
        ("b35 1x1 256-32", 15, 256, [17, 17], 32, [1, 1], [1, 1], z),
        ("b35 3x3 32-32", 15, 32, [17, 17], 32, [3, 3], [1, 1], s1),
        ("b35 up 96-256", 5, 96, [17, 17], 256, [1, 1], [1, 1], z),
        ("redA 3x3s2 256-384", 1, 256, [17, 17], 384, [3, 3], [2, 2], z),
        ("redA 1x1 256-192", 1, 256, [17, 17], 192, [1, 1], [1, 1], z),
        ("redA 3x3 192-192", 1, 192, [17, 17], 192, [3, 3], [1, 1], s1),
        ("redA 3x3s2 192-256", 1, 192, [17, 17], 256, [3, 3], [2, 2], z),
        ("b17 1x1 896-128", 20, 896, [8, 8], 128, [1, 1], [1, 1], z),
        ("b17 1x7 128", 10, 128, [8, 8], 128, [1, 7], [1, 1], [(0, 0), (3, 3)]),
        ("b17 7x1 128", 10, 128, [8, 8], 128, [7, 1], [1, 1], [(3, 3), (0, 0)]),
        ("b17 up 256-896", 10, 256, [8, 8], 896, [1, 1], [1, 1], z),
        ("redB 1x1 896-256", 3, 896, [8, 8], 256, [1, 1], [1, 1], z),
        ("redB 3x3s2 256-384", 1, 256, [8, 8], 384, [3, 3], [2, 2], z),
        ("redB 3x3s2 256-256", 2, 256, [8, 8], 256, [3, 3], [2, 2], z),
        ("redB 3x3 256-256", 1, 256, [8, 8], 256, [3, 3], [1, 1], s1),
        ("b8 1x1 1792-192", 12, 1792, [3, 3], 192, [1, 1], [1, 1], z),
        ("b8 1x3 192", 6, 192, [3, 3], 192, [1, 3], [1, 1], [(0, 0), (1, 1)]),
        ("b8 3x1 192", 6, 192, [3, 3], 192, [3, 1], [1, 1], [(1, 1), (0, 0)]),
        ("b8 up 384-1792", 6, 384, [3, 3], 1792, [1, 1], [1, 1], z),
    ];
    let device = Device::flex();
    let ad = Device::flex().autodiff();
    let (mut tf, mut tb, mut flops) = (0.0, 0.0, 0.0);
    println!("{:<22} {:>3} {:>9} {:>7} {:>9} {:>7}", "layer", "n", "fwd ms", "GF/s", "f+b ms", "GF/s");
    let only = std::env::var("LAYER").ok();
    for (name, count, c_in, [h, w], c_out, k, stride, pad) in layers {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let case = Case { batch, c_in, h, w, c_out, k, stride, pad, dilation: [1, 1], groups: 1 };
        let [ho, wo] = case.out();
        let f = 2.0 * (batch * c_out * ho * wo * c_in * k[0] * k[1]) as f64;
        let options = ConvOptions::new_with_padding(stride, pad, [1, 1], 1);
        let xv = values(batch * c_in * h * w, 1);
        let wv = values(c_out * c_in * k[0] * k[1], 2);
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [batch, c_in, h, w]), &device);
        let wt = Tensor::<4>::from_data(TensorData::new(wv.clone(), [c_out, c_in, k[0], k[1]]), &device);
        let reps: usize = std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        let mut best_f = f64::MAX;
        for _ in 0..reps {
            let t = Instant::now();
            let y = conv2d(x.clone(), wt.clone(), None, options.clone());
            let _ = y.into_data();
            best_f = best_f.min(t.elapsed().as_secs_f64());
        }
        let xa = Tensor::<4>::from_data(TensorData::new(xv, [batch, c_in, h, w]), &ad).require_grad();
        let wa = Tensor::<4>::from_data(TensorData::new(wv, [c_out, c_in, k[0], k[1]]), &ad).require_grad();
        // fwd + the gradient of x only, of w only, of both
        let timed = |gx: bool, gw: bool| {
            let xa = if gx { xa.clone() } else { xa.clone().detach() };
            let wa = if gw { wa.clone() } else { wa.clone().detach() };
            let mut best = f64::MAX;
            for _ in 0..reps {
                let t = Instant::now();
                let y = conv2d(xa.clone(), wa.clone(), None, options.clone());
                let grads = y.sum().backward();
                if gx {
                    let _ = xa.grad(&grads).unwrap().into_data();
                }
                if gw {
                    let _ = wa.grad(&grads).unwrap().into_data();
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            best
        };
        let (bx, bw, best_b) = match std::env::var("GRAD").as_deref() {
            Ok("x") => (timed(true, false), 0.0, 0.0),
            Ok("w") => (0.0, timed(false, true), 0.0),
            _ => (timed(true, false), timed(false, true), timed(true, true)),
        };
        println!(
            "{name:<22} {count:>3} {:>9.2} {:>7.1} {:>9.2} {:>7.1}   dx {:>6.2} ms dw {:>6.2} ms",
            best_f * 1e3,
            f / best_f / 1e9,
            best_b * 1e3,
            3.0 * f / best_b / 1e9,
            (bx - best_f) * 1e3,
            (bw - best_f) * 1e3
        );
        tf += best_f * count as f64;
        tb += best_b * count as f64;
        flops += f * count as f64;
    }
    println!(
        "total: fwd {:.0} ms ({:.1} GF/s), fwd+bwd {:.0} ms ({:.1} GF/s), {:.2} GFLOP/image fwd",
        tf * 1e3,
        flops / tf / 1e9,
        tb * 1e3,
        3.0 * flops / tb / 1e9,
        flops / batch as f64 / 1e9
    );
}

/// PReLU with one slope per channel (MTCNN's activation): in place on an unshared input,
/// into a new tensor when the input is still in use; NaN stays NaN, -0.0 stays -0.0.
#[test]
fn prelu_per_channel_matches_definition() {
    use burn::tensor::activation::prelu;
    // small planes (a task per image) and large ones (a task per plane)
    for (n, c, h, w) in [(3usize, 5usize, 7usize, 6usize), (2, 3, 70, 64)] {
        let mut xv = values(n * c * h * w, 4);
        xv[3] = f32::NAN;
        xv[4] = -0.0;
        let av: Vec<f32> = (0..c).map(|i| 0.1 * i as f32 - 0.2).collect();
        let device = Device::flex();
        let alpha = Tensor::<1>::from_data(TensorData::new(av.clone(), [c]), &device);
        let x = Tensor::<4>::from_data(TensorData::new(xv.clone(), [n, c, h, w]), &device);
        let shared = prelu(x.clone(), alpha.clone()).to_data().try_into_vec_as::<f32>().unwrap();
        let unshared = prelu(x, alpha).to_data().try_into_vec_as::<f32>().unwrap();
        for (i, &v) in xv.iter().enumerate() {
            let a = av[(i / (h * w)) % c];
            let want = if v >= 0.0 { v } else { a * v };
            for got in [shared[i], unshared[i]] {
                assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{n}x{c}x{h}x{w} at {i}: {got} vs {want}");
            }
        }
    }
}

/// Element-wise passes over large tensors run as parallel pieces (patched burn-flex,
/// `ops/par_chunks.rs`): every path (in place into either operand, into a new buffer, a last
/// piece that is not whole) gives the bits of the element-by-element definition, with
/// the operands in their order.
#[test]
fn elementwise_ops_on_large_tensors_match_definition() {
    let device = Device::flex();
    let n = (1 << 18) + 77;
    let mut av = values(n, 5);
    av[10] = f32::NAN;
    av[11] = -0.0;
    let bv: Vec<f32> = values(n, 6).iter().map(|v| v + 1.5).collect();
    let t = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [n]), &device);
    let get = |x: Tensor<1>| x.to_data().try_into_vec_as::<f32>().unwrap();
    let same = |name: &str, got: Vec<f32>, want: &dyn Fn(usize) -> f32| {
        assert_eq!(got.len(), n, "{name}");
        for (i, &g) in got.iter().enumerate() {
            let w = want(i);
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{name} at {i}: {g} vs {w}");
        }
    };
    let (a, b) = (t(&av), t(&bv));
    // both operands still in use: a new buffer
    same("sub, new buffer", get(a.clone() - b.clone()), &|i| av[i] - bv[i]);
    same("powf, new buffer", get(a.clone().powf(b.clone())), &|i| av[i].powf(bv[i]));
    // only the right operand unused elsewhere: written into it
    same("sub into rhs", get(a.clone() - t(&bv)), &|i| av[i] - bv[i]);
    same("div into rhs", get(a.clone() / t(&bv)), &|i| av[i] / bv[i]);
    same("powf into rhs", get(a.clone().powf(t(&bv))), &|i| av[i].powf(bv[i]));
    // the left operand unused elsewhere: written into it
    same("powf into lhs", get(t(&av).powf(b.clone())), &|i| av[i].powf(bv[i]));
    same("mul into lhs", get(t(&av) * b.clone()), &|i| av[i] * bv[i]);
    // scalar and unary passes, in place and into a new buffer
    same("mul_scalar", get(t(&av).mul_scalar(0.3)), &|i| av[i] * 0.3);
    same("mul_scalar, new buffer", get(a.clone().mul_scalar(0.3)), &|i| av[i] * 0.3);
    same("sqrt", get(b.clone().sqrt()), &|i| bv[i].sqrt());
    same("exp in place", get(t(&av).exp()), &|i| av[i].exp());
    let relu = |v: f32| if v.is_nan() || v > 0.0 { v } else { 0.0 };
    same("relu, new buffer", get(burn::tensor::activation::relu(a.clone())), &|i| relu(av[i]));
    same("relu in place", get(burn::tensor::activation::relu(t(&av))), &|i| relu(av[i]));
    // a view at an offset (a slice): a new buffer
    let tail = a.clone().slice([5..n]);
    let got = get(tail.exp());
    assert_eq!(got.len(), n - 5);
    for (i, g) in got.iter().enumerate() {
        let w = av[i + 5].exp();
        assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "slice exp at {i}");
    }
    // large zeros and fills are written in parallel pieces
    same("zeros", get(Tensor::<1>::zeros([n], &device)), &|_| 0.0);
    same("full", get(Tensor::<1>::full([n], -2.5, &device)), &|_| -2.5);
    // the gradient of a slice: zeros with the slice's gradient written in
    let ad = device.clone().autodiff();
    let x = Tensor::<1>::from_data(TensorData::new(bv.clone(), [n]), &ad).require_grad();
    let grads = x.clone().slice([7..n - 3]).mul_scalar(2.0).sum().backward();
    same("slice gradient", get(x.grad(&grads).unwrap()), &|i| if (7..n - 3).contains(&i) { 2.0 } else { 0.0 });
}
