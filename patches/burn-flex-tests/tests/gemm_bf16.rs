//! The bf16 matrix products of the patched burn-flex (`ops/gemm_bf16.rs`) against the
//! definition in f64 on bf16-rounded inputs: every operand layout the convolutions use
//! (depth-contiguous or row-contiguous left operand, row-contiguous or depth-contiguous right
//! operand, strided output, accumulation), edges that are not whole tiles or whole depth pairs,
//! the same bits for one thread and for many, and the convolution and matmul of the backend
//! computing in bf16 once it is set (the im2col convolution, flex's own 1x1 kernel, matmul).
//!
//! A file of its own: the precision is process-wide, and these tests set it to bf16. On a CPU
//! without AVX-512 BF16 they check that bf16 is refused and the products stay f32.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use burn_flex::ops::gemm_bf16::{bf16_bits, gemm};
use burn_flex::{bf16_supported, set_gemm_precision, GemmPrecision};

mod common;
use common::values;

fn bf16(x: f32) -> f64 {
    f32::from_bits((bf16_bits(x) as u32) << 16) as f64
}

/// Strides (row, column) of an `r x c` matrix stored row-major or column-major.
fn strides(r: usize, c: usize, row_major: bool) -> (isize, isize) {
    let _ = r;
    if row_major {
        (c as isize, 1)
    } else {
        (1, r as isize)
    }
}

#[allow(clippy::too_many_arguments)]
fn product(m: usize, n: usize, k: usize, lhs_rows: bool, rhs_rows: bool, dst_rows: bool, accumulate: bool, par: gemm::Parallelism) {
    let (a, b, c0) = (values(m * k, 1 + m as u64), values(k * n, 2 + n as u64), values(m * n, 3 + k as u64));
    let (a_rs, a_cs) = strides(m, k, lhs_rows);
    let (b_rs, b_cs) = strides(k, n, rhs_rows);
    let (c_rs, c_cs) = strides(m, n, dst_rows);
    let mut c = c0.clone();
    set_gemm_precision(GemmPrecision::Bf16);
    unsafe {
        gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
    let at = |v: &[f32], i: usize, j: usize, rs: isize, cs: isize| v[(i as isize * rs + j as isize * cs) as usize];
    let case = format!("m {m} n {n} k {k} lhs rows {lhs_rows} rhs rows {rhs_rows} dst rows {dst_rows} accumulate {accumulate}");
    let mut off_f32 = 0f64;
    for i in 0..m {
        for j in 0..n {
            let start = if accumulate { at(&c0, i, j, c_rs, c_cs) as f64 } else { 0.0 };
            let (mut want, mut exact) = (start, start);
            for p in 0..k {
                let (x, y) = (at(&a, i, p, a_rs, a_cs), at(&b, p, j, b_rs, b_cs));
                want += bf16(x) * bf16(y);
                exact += x as f64 * y as f64;
            }
            let got = at(&c, i, j, c_rs, c_cs) as f64;
            let scale = 1.0 + (k as f64).sqrt();
            if bf16_supported() {
                assert!((got - want).abs() <= 1e-5 * scale, "{case}: [{i}, {j}] = {got}, bf16 definition {want}");
            } else {
                assert!((got - exact).abs() <= 1e-5 * scale, "{case}: [{i}, {j}] = {got}, f32 definition {exact}");
            }
            off_f32 = off_f32.max((got - exact).abs());
        }
    }
    if bf16_supported() && k >= 16 {
        // inputs in [-1, 1) lose about 2^-9 of themselves: far more than f32 rounding
        assert!(off_f32 > 1e-4, "{case}: no bf16 rounding seen (largest difference to f32 {off_f32})");
    }
}

#[test]
fn every_layout_and_edge_matches_the_definition() {
    for (m, n, k) in [(1, 1, 1), (7, 13, 5), (6, 64, 2), (13, 65, 33), (33, 70, 37), (64, 130, 300), (200, 9, 514)] {
        for lhs_rows in [true, false] {
            for rhs_rows in [true, false] {
                for (dst_rows, accumulate) in [(true, false), (true, true), (false, true)] {
                    product(m, n, k, lhs_rows, rhs_rows, dst_rows, accumulate, gemm::Parallelism::None);
                }
            }
        }
    }
}

#[test]
fn one_thread_and_many_give_the_same_bits() {
    let (m, n, k) = (150, 700, 600);
    let (a, b) = (values(m * k, 5), values(k * n, 6));
    set_gemm_precision(GemmPrecision::Bf16);
    let run = |par| {
        let mut c = vec![0f32; m * n];
        unsafe {
            gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        };
        c
    };
    let one = run(gemm::Parallelism::None);
    assert_eq!(one, run(gemm::Parallelism::Rayon(0)));
    assert_eq!(one, run(gemm::Parallelism::Rayon(3)));
    assert_eq!(one, run(gemm::Parallelism::None));
    // the threaded path itself (large enough to be split) against the definition
    product(m, n, k, true, true, true, false, gemm::Parallelism::Rayon(0));
}

/// A product's largest differences to its bf16 and its f32 definition: near the bf16 one and
/// clearly off the f32 one where bf16 is on, near the f32 one where it is refused.
fn assert_rounded_as_set(what: &str, bf16_here: bool, worst_bf16: f64, worst_f32: f64) {
    if bf16_here {
        assert!(worst_bf16 < 1e-4 && worst_f32 > 1e-4, "{what}: off bf16 definition {worst_bf16}, off f32 {worst_f32}");
    } else {
        assert!(worst_f32 < 1e-4, "{what} without bf16: off f32 {worst_f32}");
    }
}

#[test]
fn convolution_and_matmul_compute_in_bf16_once_set() {
    let d = Device::flex();
    let bf16_here = set_gemm_precision(GemmPrecision::Bf16);
    assert_eq!(bf16_here, bf16_supported());
    // 3x3 convolution, 8 -> 16 channels, on a 2 x 8 x 9 x 9 input, no padding
    let (x, w) = (values(2 * 8 * 81, 7), values(16 * 8 * 9, 8));
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [2, 8, 9, 9]), &d);
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [16, 8, 3, 3]), &d);
    let y: Vec<f32> = conv2d(xt, wt, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)).try_into_vec_as().unwrap();
    let (mut worst_bf16, mut worst_f32) = (0f64, 0f64);
    for b in 0..2 {
        for o in 0..16 {
            for r in 0..7 {
                for c in 0..7 {
                    let (mut want, mut exact) = (0f64, 0f64);
                    for i in 0..8 {
                        for (u, v) in (0..3).flat_map(|u| (0..3).map(move |v| (u, v))) {
                            let xv = x[((b * 8 + i) * 9 + r + u) * 9 + c + v];
                            let wv = w[((o * 8 + i) * 3 + u) * 3 + v];
                            want += bf16(xv) * bf16(wv);
                            exact += xv as f64 * wv as f64;
                        }
                    }
                    let got = y[((b * 16 + o) * 7 + r) * 7 + c] as f64;
                    worst_bf16 = worst_bf16.max((got - want).abs());
                    worst_f32 = worst_f32.max((got - exact).abs());
                }
            }
        }
    }
    assert_rounded_as_set("conv", bf16_here, worst_bf16, worst_f32);
    // 1x1 convolution of a large map (flex's own pointwise kernel), 24 -> 16 channels
    let (x, w) = (values(2 * 24 * 400, 11), values(16 * 24, 12));
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [2, 24, 20, 20]), &d);
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [16, 24, 1, 1]), &d);
    let y: Vec<f32> = conv2d(xt, wt, None, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)).try_into_vec_as().unwrap();
    let (mut worst_bf16, mut worst_f32) = (0f64, 0f64);
    for b in 0..2 {
        for o in 0..16 {
            for p in 0..400 {
                let xs = |i: usize| x[(b * 24 + i) * 400 + p];
                let want: f64 = (0..24).map(|i| bf16(xs(i)) * bf16(w[o * 24 + i])).sum();
                let exact: f64 = (0..24).map(|i| xs(i) as f64 * w[o * 24 + i] as f64).sum();
                let got = y[(b * 16 + o) * 400 + p] as f64;
                worst_bf16 = worst_bf16.max((got - want).abs());
                worst_f32 = worst_f32.max((got - exact).abs());
            }
        }
    }
    assert_rounded_as_set("1x1 conv", bf16_here, worst_bf16, worst_f32);
    // matmul [5 x 40] x [40 x 3]
    let (a, b) = (values(200, 9), values(120, 10));
    let at = Tensor::<2>::from_data(TensorData::new(a.clone(), [5, 40]), &d);
    let bt = Tensor::<2>::from_data(TensorData::new(b.clone(), [40, 3]), &d);
    let p: Vec<f32> = at.matmul(bt).try_into_vec_as().unwrap();
    for i in 0..5 {
        for j in 0..3 {
            let want: f64 = (0..40)
                .map(|k| if bf16_here { bf16(a[i * 40 + k]) * bf16(b[k * 3 + j]) } else { a[i * 40 + k] as f64 * b[k * 3 + j] as f64 })
                .sum();
            assert!((p[i * 3 + j] as f64 - want).abs() < 1e-4, "matmul [{i}, {j}] = {}, want {want}", p[i * 3 + j]);
        }
    }
}
