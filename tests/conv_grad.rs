//! The 2-D convolution gradients of the CPU backend (our patched burn-flex, see
//! patches/README.md) against a direct evaluation of the definition in f64, for the
//! shapes the networks use (1x1, 3x3, 1x7/7x1, stride 2, TF-SAME asymmetric padding) and
//! for dilation, groups and batches larger than one im2col chunk.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

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
        let o = |i: usize, size: usize| {
            (size + self.pad[i].0 + self.pad[i].1 - self.dilation[i] * (self.k[i] - 1) - 1) / self.stride[i] + 1
        };
        [o(0, self.h), o(1, self.w)]
    }
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// d(sum(conv(x, w, b) * r))/dx, /dw, /db by the definition, in f64.
fn reference(case: &Case, x: &[f32], w: &[f32], r: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let [ho, wo] = case.out();
    let cg = case.c_in / case.groups;
    let og = case.c_out / case.groups;
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; case.c_out];
    for b in 0..case.batch {
        for o in 0..case.c_out {
            let g = o / og;
            for p in 0..ho {
                for q in 0..wo {
                    let go = r[((b * case.c_out + o) * ho + p) * wo + q] as f64;
                    db[o] += go;
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
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

fn assert_close(name: &str, case: &Case, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name} length, {case:?}");
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            ((*g as f64) - w).abs() <= 1e-4 * scale,
            "{name}[{i}] = {g}, expected {w} (scale {scale}), {case:?}"
        );
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
    let b = Tensor::<1>::from_data(TensorData::new(bv, [case.c_out]), &device).require_grad();
    let r = Tensor::<4>::from_data(TensorData::new(rv.clone(), [case.batch, case.c_out, ho, wo]), &device);
    let options = ConvOptions::new_with_padding(case.stride, case.pad, case.dilation, case.groups);
    let y = conv2d(x.clone(), w.clone(), Some(b.clone()), options);
    assert_eq!(y.dims(), [case.batch, case.c_out, ho, wo], "{case:?}");
    let grads = (y * r).sum().backward();
    let got = |t: &Tensor<4>| t.grad(&grads).unwrap().to_data().try_into_vec_as::<f32>().unwrap();
    let (dx, dw, db) = reference(&case, &xv, &wv, &rv);
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
    let c = Case { batch: 20, c_in: 24, h: 48, w: 48, c_out: 8, k: [3, 3], stride: [1, 1], pad: [(1, 1), (1, 1)], dilation: [1, 1], groups: 1 };
    check(c);
}
