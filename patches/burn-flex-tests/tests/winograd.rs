//! The Winograd F(4x4, 3x3) forward convolution of the patched burn-flex
//! (`ops/conv2d_winograd.rs`) against the f64 definition: sizes that are not whole tiles,
//! channel counts that are not whole vectors, symmetric, asymmetric ('SAME') and no padding,
//! with and without bias, each differing from the im2col kernel's result (so it ran); the
//! convolutions it must leave to the other kernels (stride 2, 1x1, groups, bf16 products, maps
//! under 3x3 outputs, under 16 channels in or out); the same bits on every run and for any
//! thread count. The input and weight gradients of the same convolutions likewise (the weight
//! gradient's sums over tiles the same bits on every run; paddings over 2 leave the input
//! gradient to im2col). The 1x7 and 7x1 kernel F(4, 7) (`ops/conv2d_winograd_line.rs`)
//! likewise, forward and input gradient.
//!
//! A file of its own: the switch is process-wide, and these tests turn it on.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use burn_flex::{conv_winograd, set_conv_winograd, set_conv_winograd_narrow, set_gemm_precision, GemmPrecision};

mod common;
use common::values;

struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    pad: [(usize, usize); 2],
    bias: bool,
}

/// The convolution with a `kh x kw` kernel through burn, and its f64 definition.
fn run(case: &Case, stride: usize, groups: usize, [kh, kw]: [usize; 2]) -> (Vec<f32>, Vec<f64>) {
    let d = Device::flex();
    let cg = case.c_in / groups;
    let x = values(case.batch * case.c_in * case.h * case.w, 1);
    let w = values(case.c_out * cg * kh * kw, 2);
    let bias = values(case.c_out, 3);
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [case.batch, case.c_in, case.h, case.w]), &d);
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [case.c_out, cg, kh, kw]), &d);
    let bt = case.bias.then(|| Tensor::<1>::from_data(TensorData::new(bias.clone(), [case.c_out]), &d));
    let options = ConvOptions::new_with_padding([stride, stride], case.pad, [1, 1], groups);
    let y: Vec<f32> = conv2d(xt, wt, bt, options).try_into_vec_as().unwrap();
    let ho = (case.h + case.pad[0].0 + case.pad[0].1 - kh) / stride + 1;
    let wo = (case.w + case.pad[1].0 + case.pad[1].1 - kw) / stride + 1;
    let og = case.c_out / groups;
    let mut want = vec![0f64; case.batch * case.c_out * ho * wo];
    for b in 0..case.batch {
        for o in 0..case.c_out {
            let g = o / og;
            for p in 0..ho {
                for q in 0..wo {
                    let mut s = if case.bias { bias[o] as f64 } else { 0.0 };
                    for c in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (p * stride + i) as isize - case.pad[0].0 as isize;
                                let iw = (q * stride + j) as isize - case.pad[1].0 as isize;
                                if ih < 0 || iw < 0 || ih >= case.h as isize || iw >= case.w as isize {
                                    continue;
                                }
                                let xv = x[((b * case.c_in + g * cg + c) * case.h + ih as usize) * case.w + iw as usize];
                                s += w[((o * cg + c) * kh + i) * kw + j] as f64 * xv as f64;
                            }
                        }
                    }
                    want[((b * case.c_out + o) * ho + p) * wo + q] = s;
                }
            }
        }
    }
    assert_eq!(y.len(), want.len());
    (y, want)
}

/// Largest difference to the definition, relative to its largest magnitude.
fn relative_error(y: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let worst = y.iter().zip(want).fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    worst / scale
}

fn cases() -> Vec<Case> {
    let c = |batch, c_in, c_out, h, w, pad: [(usize, usize); 2], bias| Case { batch, c_in, c_out, h, w, pad, bias };
    vec![
        // whole tiles, whole vectors, 'same' padding
        c(2, 16, 32, 8, 8, [(1, 1), (1, 1)], true),
        // no padding, sizes that are not whole tiles (9 -> 7), channels not whole vectors
        c(3, 17, 23, 9, 9, [(0, 0), (0, 0)], false),
        // TF 'SAME' on an even size with stride 1 pads one each side; asymmetric padding too
        c(2, 20, 33, 10, 7, [(0, 2), (1, 1)], true),
        // the network's stem shapes in small: 32 channels, 13x13 'valid' and 'same'
        c(4, 32, 64, 13, 13, [(0, 0), (0, 0)], true),
        c(1, 32, 32, 13, 13, [(1, 1), (1, 1)], false),
        // smallest map it takes: 3x3 outputs (one tile, mostly outside)
        c(5, 24, 40, 3, 3, [(1, 1), (1, 1)], true),
        // many tiles: several tasks per worker
        c(6, 48, 48, 17, 17, [(1, 1), (1, 1)], true),
    ]
}

/// The switch is process-wide and the tests of this file run in parallel: each holds this.
static SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn winograd_matches_the_definition() {
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_gemm_precision(GemmPrecision::F32);
    for case in cases() {
        let what = format!("{}x{}x{}x{} -> {}, pad {:?}", case.batch, case.c_in, case.h, case.w, case.c_out, case.pad);
        set_conv_winograd(false);
        let (direct, want) = run(&case, 1, 1, [3, 3]);
        set_conv_winograd(true);
        assert!(conv_winograd());
        let (y, _) = run(&case, 1, 1, [3, 3]);
        // it ran: not the im2col kernel's bits (which are within 1e-6 of the definition)
        assert_ne!(y, direct, "{what}: the Winograd kernel did not run");
        assert!(relative_error(&direct, &want) < 1e-6, "{what}: im2col");
        let err = relative_error(&y, &want);
        // F(4x4, 3x3) in f32: order 1e-6 relative
        assert!(err < 5e-5, "{what}: relative error {err:e}");
        // same bits on a second run and on one thread
        let (again, _) = run(&case, 1, 1, [3, 3]);
        assert_eq!(y, again, "{what}: two runs differ");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (one, _) = pool.install(|| run(&case, 1, 1, [3, 3]));
        assert_eq!(y, one, "{what}: one thread and many differ");
    }
}

/// The input and weight gradients of `sum(conv2d(x, w) * r)` through burn's autodiff, and
/// their f64 definitions `dx[b, c, y, x] = sum_{o,i,j} r[b, o, y + p0 - i, x + p1 - j] *
/// w[o, c, i, j]` and `dw[o, c, i, j] = sum_{b,p,q} r[b, o, p, q] * x[b, c, p + i - p0, q + j - p1]`.
struct Grads {
    dx: Vec<f32>,
    dw: Vec<f32>,
    want_dx: Vec<f64>,
    want_dw: Vec<f64>,
}

fn run_backward(case: &Case) -> Grads {
    run_backward_k(case, [3, 3])
}

/// [`run_backward`] with a `kh x kw` kernel.
fn run_backward_k(case: &Case, [kh, kw]: [usize; 2]) -> Grads {
    let d = Device::flex().autodiff();
    let ho = case.h + case.pad[0].0 + case.pad[0].1 + 1 - kh;
    let wo = case.w + case.pad[1].0 + case.pad[1].1 + 1 - kw;
    let x = values(case.batch * case.c_in * case.h * case.w, 1);
    let w = values(case.c_out * case.c_in * kh * kw, 2);
    let r = values(case.batch * case.c_out * ho * wo, 4);
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), [case.batch, case.c_in, case.h, case.w]), &d).require_grad();
    let wt = Tensor::<4>::from_data(TensorData::new(w.clone(), [case.c_out, case.c_in, kh, kw]), &d).require_grad();
    let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), [case.batch, case.c_out, ho, wo]), &d);
    let options = ConvOptions::new_with_padding([1, 1], case.pad, [1, 1], 1);
    let grads = (conv2d(xt.clone(), wt.clone(), None, options) * rt).sum().backward();
    let dx: Vec<f32> = xt.grad(&grads).unwrap().to_data().try_into_vec_as().unwrap();
    let dw: Vec<f32> = wt.grad(&grads).unwrap().to_data().try_into_vec_as().unwrap();
    let mut want_dx = vec![0f64; case.batch * case.c_in * case.h * case.w];
    let mut want_dw = vec![0f64; case.c_out * case.c_in * kh * kw];
    for b in 0..case.batch {
        for o in 0..case.c_out {
            for p in 0..ho {
                for q in 0..wo {
                    let g = r[((b * case.c_out + o) * ho + p) * wo + q] as f64;
                    for c in 0..case.c_in {
                        for i in 0..kh {
                            for j in 0..kw {
                                let ih = (p + i) as isize - case.pad[0].0 as isize;
                                let iw = (q + j) as isize - case.pad[1].0 as isize;
                                if ih < 0 || iw < 0 || ih >= case.h as isize || iw >= case.w as isize {
                                    continue;
                                }
                                let xi = ((b * case.c_in + c) * case.h + ih as usize) * case.w + iw as usize;
                                let wi = ((o * case.c_in + c) * kh + i) * kw + j;
                                want_dx[xi] += g * w[wi] as f64;
                                want_dw[wi] += g * x[xi] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(dx.len(), want_dx.len());
    assert_eq!(dw.len(), want_dw.len());
    Grads { dx, dw, want_dx, want_dw }
}

#[test]
fn winograd_gradients_match_the_definition() {
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_gemm_precision(GemmPrecision::F32);
    for case in cases() {
        let what = format!("{}x{}x{}x{} -> {}, pad {:?}", case.batch, case.c_in, case.h, case.w, case.c_out, case.pad);
        set_conv_winograd(false);
        let direct = run_backward(&case);
        set_conv_winograd(true);
        let got = run_backward(&case);
        for (name, y, im2col, want) in [("dx", &got.dx, &direct.dx, &direct.want_dx), ("dw", &got.dw, &direct.dw, &direct.want_dw)] {
            assert_ne!(y, im2col, "{name} of {what}: the Winograd kernel did not run");
            assert!(relative_error(im2col, want) < 1e-6, "{name} of {what}: im2col");
            let err = relative_error(y, want);
            assert!(err < 5e-5, "{name} of {what}: relative error {err:e}");
        }
        let again = run_backward(&case);
        assert_eq!((&got.dx, &got.dw), (&again.dx, &again.dw), "{what}: two runs differ");
        // the input gradient is computed per tile: the same bits on one thread too
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let one = pool.install(|| run_backward(&case));
        assert_eq!(got.dx, one.dx, "{what}: one thread and many differ");
    }
    // padding 3: the input gradient would need negative padding, so im2col computes it (exact)
    set_conv_winograd(true);
    let wide = Case { batch: 2, c_in: 16, c_out: 16, h: 6, w: 6, pad: [(3, 3), (1, 1)], bias: false };
    let got = run_backward(&wide);
    let err = relative_error(&got.dx, &got.want_dx);
    assert!(err < 1e-6, "padding 3: relative error {err:e}");
}

/// The weight gradient sums over every tile of the batch: many chunks of tiles in several
/// groups (the network's 2a layer in small: 32 channels, 'valid', 23x23 maps, 12 images).
#[test]
fn winograd_weight_gradient_over_many_chunks() {
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_gemm_precision(GemmPrecision::F32);
    set_conv_winograd(true);
    let case = Case { batch: 12, c_in: 32, c_out: 32, h: 23, w: 23, pad: [(0, 0), (0, 0)], bias: false };
    let got = run_backward(&case);
    let err = relative_error(&got.dw, &got.want_dw);
    assert!(err < 5e-5, "relative error {err:e}");
    let again = run_backward(&case);
    assert_eq!(got.dw, again.dw, "two runs differ");
}

/// The AVX2+FMA code (what CPUs without AVX-512 run) gives the AVX-512 code's bits: forward,
/// input and weight gradients (on a CPU without AVX-512 both runs take that code; then the
/// check against the definition is what counts).
#[test]
fn avx2_code_gives_the_avx512_bits() {
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_gemm_precision(GemmPrecision::F32);
    set_conv_winograd(true);
    let mut all = cases();
    all.push(Case { batch: 12, c_in: 32, c_out: 32, h: 23, w: 23, pad: [(0, 0), (0, 0)], bias: false });
    for case in all {
        let what = format!("{}x{}x{}x{} -> {}, pad {:?}", case.batch, case.c_in, case.h, case.w, case.c_out, case.pad);
        set_conv_winograd_narrow(false);
        let (y, want) = run(&case, 1, 1, [3, 3]);
        let g = run_backward(&case);
        set_conv_winograd_narrow(true);
        let (narrow, _) = run(&case, 1, 1, [3, 3]);
        let gn = run_backward(&case);
        set_conv_winograd_narrow(false);
        let err = relative_error(&narrow, &want);
        assert!(err < 5e-5, "{what}: AVX2 forward relative error {err:e}");
        assert!(relative_error(&gn.dx, &gn.want_dx) < 5e-5, "{what}: AVX2 dx");
        assert!(relative_error(&gn.dw, &gn.want_dw) < 5e-5, "{what}: AVX2 dw");
        assert_eq!(y, narrow, "{what}: forward");
        assert_eq!(g.dx, gn.dx, "{what}: dx");
        assert_eq!(g.dw, gn.dw, "{what}: dw");
    }
}

#[test]
fn bf16_products_keep_the_im2col_kernel() {
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let case = Case { batch: 2, c_in: 32, c_out: 32, h: 9, w: 9, pad: [(1, 1), (1, 1)], bias: false };
    set_conv_winograd(false);
    set_gemm_precision(GemmPrecision::F32);
    let (direct, _) = run(&case, 1, 1, [3, 3]);
    set_conv_winograd(true);
    // where bf16 products are refused (no AVX-512 BF16) this checks the f32 path again
    let bf16_here = set_gemm_precision(GemmPrecision::Bf16);
    let (y, _) = run(&case, 1, 1, [3, 3]);
    set_conv_winograd(false);
    let (im2col, _) = run(&case, 1, 1, [3, 3]);
    set_gemm_precision(GemmPrecision::F32);
    assert_eq!(y, im2col, "with bf16 products (set: {bf16_here}) the 3x3 convolution is the im2col kernel's");
    if !bf16_here {
        assert_eq!(y, direct);
    }
}

#[test]
fn other_convolutions_are_left_to_the_other_kernels() {
    // stride 2, 1x1, two groups, a map under 3x3 outputs, fewer than 16 channels in or out:
    // all exact as before (the im2col and flex kernels are within 1e-6 of the definition;
    // Winograd's error would show)
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_conv_winograd(true);
    set_gemm_precision(GemmPrecision::F32);
    let big = Case { batch: 2, c_in: 64, c_out: 64, h: 11, w: 11, pad: [(1, 1), (1, 1)], bias: false };
    for (what, case, stride, groups, k) in [
        ("stride 2", &big, 2, 1, 3),
        ("1x1", &big, 1, 1, 1),
        ("groups 2", &big, 1, 2, 3),
        ("2x2 outputs", &Case { batch: 2, c_in: 64, c_out: 64, h: 4, w: 4, pad: [(0, 0), (0, 0)], bias: true }, 1, 1, 3),
        // under 16 input or output channels (MTCNN's first layers: 3 in; P-Net's second: 10 in)
        ("3 channels in", &Case { batch: 2, c_in: 3, c_out: 28, h: 24, w: 24, pad: [(0, 0), (0, 0)], bias: true }, 1, 1, 3),
        ("10 channels out", &Case { batch: 2, c_in: 32, c_out: 10, h: 12, w: 12, pad: [(1, 1), (1, 1)], bias: true }, 1, 1, 3),
    ] {
        let (y, want) = run(case, stride, groups, [k, k]);
        let err = relative_error(&y, &want);
        assert!(err < 1e-6, "{what}: relative error {err:e}");
    }
}

/// Cases for the 1x7 and 7x1 kernel (`conv2d_winograd_line.rs`), with their kernel shape.
fn line_cases() -> Vec<(Case, [usize; 2])> {
    let c = |batch, c_in, c_out, h, w, pad: [(usize, usize); 2], bias| Case { batch, c_in, c_out, h, w, pad, bias };
    vec![
        // Inception-ResNet-v1's block17 in small: 'same' on 8x8 maps, both directions
        (c(2, 16, 32, 8, 8, [(0, 0), (3, 3)], true), [1, 7]),
        (c(2, 16, 32, 8, 8, [(3, 3), (0, 0)], true), [7, 1]),
        // 'valid' (11 -> 5: a tile with one output in the map), channels not whole vectors
        (c(3, 5, 7, 6, 11, [(0, 0), (0, 0)], false), [1, 7]),
        (c(3, 5, 7, 11, 6, [(0, 0), (0, 0)], true), [7, 1]),
        // asymmetric padding, sizes that are not whole tiles
        (c(2, 20, 33, 9, 10, [(0, 0), (2, 4)], true), [1, 7]),
        (c(2, 20, 33, 10, 9, [(4, 2), (0, 0)], false), [7, 1]),
        // many tiles: several tasks per worker (the network's 17x17 maps at 299 px)
        (c(6, 48, 40, 17, 17, [(3, 3), (0, 0)], true), [7, 1]),
    ]
}

#[test]
fn line_winograd_matches_the_definition() {
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_gemm_precision(GemmPrecision::F32);
    for (case, k) in line_cases() {
        let what = format!("{}x{} on {}x{}x{}x{} -> {}, pad {:?}", k[0], k[1], case.batch, case.c_in, case.h, case.w, case.c_out, case.pad);
        set_conv_winograd(false);
        let (direct, want) = run(&case, 1, 1, k);
        let direct_grads = run_backward_k(&case, k);
        set_conv_winograd(true);
        let (y, _) = run(&case, 1, 1, k);
        assert_ne!(y, direct, "{what}: the Winograd kernel did not run");
        assert!(relative_error(&direct, &want) < 1e-6, "{what}: im2col");
        // F(4, 7) in f32: order 1e-6..1e-5 relative
        let err = relative_error(&y, &want);
        assert!(err < 5e-5, "{what}: relative error {err:e}");
        let (again, _) = run(&case, 1, 1, k);
        assert_eq!(y, again, "{what}: two runs differ");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let (one, _) = pool.install(|| run(&case, 1, 1, k));
        assert_eq!(y, one, "{what}: one thread and many differ");
        // the input gradient runs here too; the weight gradient stays with im2col (same bits)
        let grads = run_backward_k(&case, k);
        assert_ne!(grads.dx, direct_grads.dx, "{what}: dx: the Winograd kernel did not run");
        let err = relative_error(&grads.dx, &grads.want_dx);
        assert!(err < 5e-5, "{what}: dx relative error {err:e}");
        assert_eq!(grads.dw, direct_grads.dw, "{what}: dw is im2col's");
        let one = pool.install(|| run_backward_k(&case, k));
        assert_eq!(grads.dx, one.dx, "{what}: dx: one thread and many differ");
        // the AVX2+FMA code gives the same bits
        set_conv_winograd_narrow(true);
        let (narrow, _) = run(&case, 1, 1, k);
        let narrow_grads = run_backward_k(&case, k);
        set_conv_winograd_narrow(false);
        assert_eq!(y, narrow, "{what}: AVX2 forward");
        assert_eq!(grads.dx, narrow_grads.dx, "{what}: AVX2 dx");
    }
}

#[test]
fn line_winograd_leaves_other_kernels_alone() {
    // padding across the long axis, 1x5, stride 2, fewer than 4 outputs along the axis: exact
    // (the last one's input gradient, 9 positions long, does run as Winograd)
    let _switch = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    set_conv_winograd(true);
    set_gemm_precision(GemmPrecision::F32);
    let c = |h, w, pad: [(usize, usize); 2]| Case { batch: 2, c_in: 32, c_out: 32, h, w, pad, bias: true };
    for (what, case, stride, k) in [
        ("padding across", c(8, 8, [(1, 1), (3, 3)]), 1, [1, 7]),
        ("1x5", c(8, 8, [(0, 0), (2, 2)]), 1, [1, 5]),
        ("stride 2", c(9, 9, [(3, 3), (3, 3)]), 2, [7, 1]),
        ("3 outputs", c(5, 9, [(0, 0), (0, 0)]), 1, [1, 7]),
    ] {
        let (y, want) = run(&case, stride, 1, k);
        let err = relative_error(&y, &want);
        assert!(err < 1e-6, "{what}: relative error {err:e}");
        if stride == 1 && what != "3 outputs" {
            let grads = run_backward_k(&case, k);
            let err = relative_error(&grads.dx, &grads.want_dx);
            assert!(err < 1e-6, "{what}: dx relative error {err:e}");
        }
    }
}
