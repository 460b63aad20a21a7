//! 1x7 and 7x1 stride-1 convolutions (f32, NCHW, one group, no padding across the kernel) by
//! one-dimensional Winograd minimal filtering F(4, 7) along the kernel's long axis, for
//! processes that turned Winograd on ([`super::conv2d_winograd::set_conv_winograd`]): each run
//! of 4 output positions (a tile) of one output channel is `A^T [ sum_c (G g_oc) . (B^T d_c) ]`,
//! with `d_c` the 10 input values under the tile in channel `c`. The sum over channels is, for
//! each of the 10 transform points `xi`, a matrix product
//! `M_xi [tiles x c_out] = V_xi [tiles x c_in] * U_xi [c_in x c_out]`: 10 products for 4
//! outputs instead of 7 per output (2.8x fewer multiply-adds than the im2col product), and no
//! im2col block (7x the input) to write. These are the 1x7 and 7x1 convolutions of
//! Inception-ResNet-v1's block17 (17x17 maps at 299 px input, 8x8 at 160).
//!
//! The transforms come from the Toom-Cook construction with the points
//! `0, +-1, +-2, +-1/2, +-3/2, infinity` (computed once, in f64): `B^T` is the transposed
//! inverse of the evaluation matrix of degree-9 polynomials at the points, `G` evaluates the
//! kernel, `A^T` evaluates the output positions (the transposition principle turns the
//! polynomial product into a correlation); each row of `B^T` is scaled to largest entry 1 and
//! the matching row of `G` by the inverse. In f32 the result is within ~1e-5 of the largest
//! output (the 3x3 kernel's F(4x4, 3x3): ~1e-6..1e-5); `+-3/2` rather than `+-3` halves the
//! error. Same bits on every run and for any number of threads.
//!
//! The buffers, tasks and the channels-last copy of the input are the 3x3 kernel's
//! (`conv2d_winograd.rs`). The input gradient runs here too (the same kernel on the output
//! gradient, the kernel reversed); the weight gradient stays with im2col.

use std::sync::OnceLock;

use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use super::conv2d_im2col::scratch;
use super::conv2d_winograd::{
    for_each_task, on_for_f32, padded_input, point_products, round_up, split_tiles, vfma, xi_stride, OutPtr, Pad, Scratch, Vf, LANES,
    SCRATCH,
};
use crate::{FlexTensor, Layout};
use alloc::vec;
use alloc::vec::Vec;

/// Output positions per tile.
const M: usize = 4;
/// Kernel taps along the long axis.
const R: usize = 7;
/// Transform points: `M + R - 1`.
const N: usize = M + R - 1;
/// The finite transform points (the last one is infinity).
const POINTS: [f64; N - 1] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5];

/// The long axis of the kernel (0: 7x1 along rows, 1: 1x7 along columns) of a convolution this
/// file can run: Winograd on, f32 products, 4-D tensors, one group, stride and dilation 1, the
/// kernel over all input channels, no padding across the long axis and at most 6 along it.
fn long_axis(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> Option<usize> {
    if !on_for_f32()
        || x_shape.len() != 4
        || w_shape.len() != 4
        || options.groups != 1
        || options.stride != [1, 1]
        || options.dilation != [1, 1]
        || w_shape[1] != x_shape[1]
    {
        return None;
    }
    let axis = match (w_shape[2], w_shape[3]) {
        (R, 1) => 0,
        (1, R) => 1,
        _ => return None,
    };
    let (begin, end) = options.padding[axis];
    (options.padding[1 - axis] == (0, 0) && begin < R && end < R).then_some(axis)
}

/// Whether this forward convolution runs here: [`long_axis`], and at least one whole tile of
/// outputs along it.
pub(crate) fn applies(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> bool {
    long_axis(x_shape, w_shape, options).is_some_and(|a| {
        let (begin, end) = options.padding[a];
        (x_shape[2 + a] + begin + end).saturating_sub(R - 1) >= M
    })
}

/// Whether the input gradient of this convolution runs here: [`long_axis`], and an input of at
/// least one whole tile along it.
pub(crate) fn applies_x_backward(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> bool {
    long_axis(x_shape, w_shape, options).is_some_and(|a| x_shape[2 + a] >= M)
}

/// The forward convolution of f32 tensors for which [`applies`] holds: `[batch, c_out, ho, wo]`.
pub(crate) fn conv2d_forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, options: &ConvOptions<2>) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let xs = x.layout().shape().clone();
    let ws = weight.layout().shape().clone();
    let axis = long_axis(&xs, &ws, options).expect("conv2d_forward called where applies() holds");
    let (begin, end) = options.padding[axis];
    let mut out = [xs[2], xs[3]];
    out[axis] = xs[2 + axis] + begin + end - (R - 1);
    let g = Line { batch: xs[0], c_in: xs[1], c_out: ws[0], h: xs[2], w: xs[3], ho: out[0], wo: out[1], axis, begin };
    let bias = bias.map(|b| b.to_contiguous());
    let b_data: Option<&[f32]> = bias.as_ref().map(|b| b.storage());
    // every output position is written by the task of its tile
    let mut y = scratch(g.batch * g.c_out * g.ho * g.wo);
    conv_line(x.storage(), weight.storage(), b_data, &g, &mut y);
    FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(Shape::from(vec![g.batch, g.c_out, g.ho, g.wo])), burn_backend::DType::F32)
}

/// The input gradient `[batch, c_in, h, w]` of a convolution for which [`applies_x_backward`]
/// holds: along the long axis `dx[i] = sum_{o,k} g[o][i + begin - k] * w[o][c][k]`, the same
/// kind of convolution of the output gradient (`c_out` channels in, `c_in` out) with the taps
/// reversed and the channel axes swapped, padded `6 - begin` before and `6 - end` after.
pub(crate) fn conv2d_x_backward(x_shape: &[usize], weight: FlexTensor, output_grad: FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let weight = weight.to_contiguous();
    let grad = output_grad.to_contiguous();
    let gs = grad.layout().shape().clone();
    let ws = weight.layout().shape().clone();
    let axis = long_axis(x_shape, &ws, options).expect("conv2d_x_backward called where applies_x_backward() holds");
    let (c_out, c_in) = (ws[0], ws[1]);
    let w: &[f32] = weight.storage();
    // reversed[c][o][R - 1 - k] = w[o][c][k]
    let mut reversed = scratch(c_in * c_out * R);
    for o in 0..c_out {
        for c in 0..c_in {
            let src = &w[(o * c_in + c) * R..][..R];
            let dst = &mut reversed[(c * c_out + o) * R..][..R];
            for (k, v) in src.iter().enumerate() {
                dst[R - 1 - k] = *v;
            }
        }
    }
    let g = Line {
        batch: gs[0],
        c_in: c_out,
        c_out: c_in,
        h: gs[2],
        w: gs[3],
        ho: x_shape[2],
        wo: x_shape[3],
        axis,
        begin: R - 1 - options.padding[axis].0,
    };
    let mut dx = scratch(g.batch * c_in * g.ho * g.wo);
    conv_line(grad.storage(), &reversed, None, &g, &mut dx);
    FlexTensor::new(Bytes::from_elems(dx), Layout::contiguous(Shape::from(vec![g.batch, c_in, g.ho, g.wo])), burn_backend::DType::F32)
}

/// Shapes of one 1x7 or 7x1 stride-1 convolution without padding across its long axis (so the
/// input and output agree across it).
#[derive(Clone, Copy, Debug)]
struct Line {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    /// 0: the kernel runs down the rows (7x1); 1: along the columns (1x7).
    axis: usize,
    /// Leading padding along the long axis.
    begin: usize,
}

/// Where a tile lies: image, first output row and column, outputs in the map (<= `M`).
struct TileAt {
    b: usize,
    r: usize,
    c: usize,
    valid: usize,
}

impl Line {
    /// Outputs along the long axis.
    fn len(&self) -> usize {
        [self.ho, self.wo][self.axis]
    }
    /// Positions across it.
    fn across(&self) -> usize {
        [self.ho, self.wo][1 - self.axis]
    }
    fn tiles_along(&self) -> usize {
        self.len().div_ceil(M)
    }
    fn tiles(&self) -> usize {
        self.batch * self.across() * self.tiles_along()
    }
    /// Tiles are numbered across the batch, then across the long axis, then along it.
    fn tile(&self, tile: usize) -> TileAt {
        let ta = self.tiles_along();
        let per_image = self.across() * ta;
        let (b, rest) = (tile / per_image, tile % per_image);
        let (pos, along) = (rest / ta, M * (rest % ta));
        let valid = (self.len() - along).min(M);
        if self.axis == 1 {
            TileAt { b, r: pos, c: along, valid }
        } else {
            TileAt { b, r: along, c: pos, valid }
        }
    }
    /// The padded channels-last input: every tile's 10 inputs inside.
    fn pad(&self) -> Pad {
        let long = M * self.tiles_along() + R - 1;
        let (hp, wp, ph, pw) = if self.axis == 1 { (self.h, long, 0, self.begin) } else { (long, self.w, self.begin, 0) };
        Pad { c_in: self.c_in, h: self.h, w: self.w, ph, pw, hp, wp }
    }
}

/// The transforms: `B^T` (`N x N`), `A^T` (`M x N`) and `G` (`N x R`, kept in f64 for the
/// weights).
struct Transforms {
    bt: [[f32; N]; N],
    at: [[f32; N]; M],
    g: [[f64; R]; N],
}

fn transforms() -> &'static Transforms {
    static T: OnceLock<Transforms> = OnceLock::new();
    T.get_or_init(build_transforms)
}

/// Toom-Cook F(M, R) at [`POINTS`] and infinity (module documentation).
fn build_transforms() -> Transforms {
    // evaluation matrix of polynomials of degree N - 1 (row per point; infinity: the leading
    // coefficient)
    let mut v = [[0f64; N]; N];
    for (p, a) in POINTS.iter().enumerate() {
        for (k, e) in v[p].iter_mut().enumerate() {
            *e = a.powi(k as i32);
        }
    }
    v[N - 1][N - 1] = 1.0;
    let inv = invert(v);
    let mut bt = [[0f64; N]; N];
    for (p, row) in bt.iter_mut().enumerate() {
        for (k, e) in row.iter_mut().enumerate() {
            *e = inv[k][p];
        }
    }
    let mut g = [[0f64; R]; N];
    for (p, a) in POINTS.iter().enumerate() {
        for (k, e) in g[p].iter_mut().enumerate() {
            *e = a.powi(k as i32);
        }
    }
    g[N - 1][R - 1] = 1.0;
    for p in 0..N {
        let s = bt[p].iter().fold(0f64, |m, e| m.max(e.abs()));
        bt[p].iter_mut().for_each(|e| *e /= s);
        g[p].iter_mut().for_each(|e| *e *= s);
    }
    let mut at = [[0f32; N]; M];
    for (i, row) in at.iter_mut().enumerate() {
        for (p, a) in POINTS.iter().enumerate() {
            row[p] = a.powi(i as i32) as f32;
        }
        row[N - 1] = if i == M - 1 { 1.0 } else { 0.0 };
    }
    Transforms { bt: bt.map(|r| r.map(|e| e as f32)), at, g }
}

/// The inverse of a regular matrix (Gauss-Jordan, partial pivoting).
fn invert(mut a: [[f64; N]; N]) -> [[f64; N]; N] {
    let mut inv = [[0f64; N]; N];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..N {
        let pivot = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for k in 0..N {
            a[col][k] /= d;
            inv[col][k] /= d;
        }
        for i in 0..N {
            if i != col {
                let f = a[i][col];
                for k in 0..N {
                    a[i][k] -= f * a[col][k];
                    inv[i][k] -= f * inv[col][k];
                }
            }
        }
    }
    inv
}

/// What every task of one convolution reads, and the output it writes to.
#[derive(Clone, Copy)]
struct Job<'a> {
    xp: &'a [f32],
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    g: &'a Line,
    t: &'a Transforms,
    cin_p: usize,
    cout_p: usize,
    out: OutPtr,
}

/// The convolution: `out[b, o, p]` (along the long axis) `= bias[o] + sum_{c,k} w[o, c, k] *
/// x[b, c, p + k - begin]` (zero outside the input); `out` is `[batch, c_out, ho, wo]`.
fn conv_line(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Line, out: &mut [f32]) {
    let t = transforms();
    let cin_p = round_up(g.c_in);
    let cout_p = round_up(g.c_out);
    let u = transform_weights(w, g, t, cout_p);
    let xp = padded_input(x, &g.pad(), g.batch, cin_p);
    let tiles = g.tiles();
    let (per_task, tasks) = split_tiles(tiles);
    let job = Job { xp: &xp, u: &u, bias, g, t, cin_p, cout_p, out: OutPtr(out.as_mut_ptr()) };
    for_each_task(
        tasks,
        || (),
        move |_, k| {
            let t0 = k * per_task;
            let t1 = (t0 + per_task).min(tiles);
            SCRATCH.with(|cell| {
                let s = &mut *cell.borrow_mut();
                s.grow(N * xi_stride(cin_p), N * xi_stride(cout_p));
                // SAFETY: the output positions of tiles t0..t1 belong to this task only
                unsafe { run_task(&job, t0, t1, s) };
            });
        },
    );
}

/// `U_xi[c][o] = (G g_oc)_xi`, `[N][c_in][c_out_p]` (computed in f64; padding columns zero).
fn transform_weights(w: &[f32], g: &Line, t: &Transforms, cout_p: usize) -> Vec<f32> {
    let per_xi = g.c_in * cout_p;
    let mut u = scratch(N * per_xi);
    let up = OutPtr(u.as_mut_ptr());
    for_each_task(
        g.c_in,
        || (),
        move |_, c| {
            for (xi, gx) in t.g.iter().enumerate() {
                // SAFETY: row `c` of every `U_xi` belongs to this task only
                let row = unsafe { core::slice::from_raw_parts_mut(up.get().add(xi * per_xi + c * cout_p), cout_p) };
                for (o, e) in row.iter_mut().enumerate() {
                    *e = if o < g.c_out {
                        let taps = &w[(o * g.c_in + c) * R..][..R];
                        gx.iter().zip(taps).map(|(a, b)| a * *b as f64).sum::<f64>() as f32
                    } else {
                        0.0
                    };
                }
            }
        },
    );
    u
}

/// One task (tiles `t0..t1`), with the widest vectors this CPU has.
unsafe fn run_task(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    {
        if super::conv2d_winograd::wide() {
            return unsafe { run_task_avx512(job, t0, t1, s) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return unsafe { run_task_avx2(job, t0, t1, s) };
        }
    }
    unsafe { run_task_body(job, t0, t1, s) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_task_avx512(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    unsafe { run_task_body(job, t0, t1, s) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_task_avx2(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    unsafe { run_task_body(job, t0, t1, s) }
}

/// One task: the input transform of its tiles, the `N` products, the output transform into
/// the output planes.
#[inline(always)]
unsafe fn run_task_body(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    let Job { xp, u, bias, g, t: tr, cin_p, cout_p, out } = *job;
    let out = out.get();
    let nt = t1 - t0;
    let v = s.v.as_mut_ptr();
    let m = s.m.as_mut_ptr();
    let Pad { hp, wp, .. } = g.pad();
    // consecutive inputs of a tile: channels-last columns, or rows
    let step_in = if g.axis == 1 { cin_p } else { wp * cin_p };
    let xpp = xp.as_ptr();
    // input transform: V[xi][t][c] = (B^T d)_xi
    for t in 0..nt {
        let TileAt { b, r, c, .. } = g.tile(t0 + t);
        let base = ((b * hp + r) * wp + c) * cin_p;
        for cb in (0..cin_p).step_by(LANES) {
            // SAFETY: the tile's N inputs lie inside image `b` of the padded input
            let d: [Vf; N] = core::array::from_fn(|j| unsafe { *(xpp.add(base + j * step_in + cb) as *const Vf) });
            for (xi, row) in tr.bt.iter().enumerate() {
                let mut acc = [0f32; LANES];
                for (k, dk) in d.iter().enumerate() {
                    acc = vfma(acc, row[k], *dk);
                }
                unsafe { *(v.add(xi * xi_stride(cin_p) + t * cin_p + cb) as *mut Vf) = acc };
            }
        }
    }
    // N products M_xi = V_xi * U_xi
    unsafe { point_products(N, nt, g.c_in, g.c_out, cin_p, cout_p, v, u, m) };
    // output transform: y = A^T m, into the output planes
    let plane = g.ho * g.wo;
    let step_out = if g.axis == 1 { 1 } else { g.wo };
    for t in 0..nt {
        let TileAt { b, r, c, valid } = g.tile(t0 + t);
        for ob in (0..cout_p).step_by(LANES) {
            // SAFETY: row `t` of every M_xi, channels ob..ob+16 <= cout_p
            let mv: [Vf; N] = core::array::from_fn(|xi| unsafe { *(m.add(xi * xi_stride(cout_p) + t * cout_p + ob) as *const Vf) });
            let bias_v: Vf = match bias {
                Some(bv) => core::array::from_fn(|l| if ob + l < g.c_out { bv[ob + l] } else { 0.0 }),
                None => [0.0; LANES],
            };
            let lanes = (g.c_out - ob).min(LANES);
            let dst = unsafe { out.add((b * g.c_out + ob) * plane + r * g.wo + c) };
            for (i, row) in tr.at.iter().enumerate().take(valid) {
                let mut y = bias_v;
                for (k, mk) in mv.iter().enumerate() {
                    y = vfma(y, row[k], *mk);
                }
                for (l, val) in y.iter().enumerate().take(lanes) {
                    // SAFETY: output position `i` of the tile, channel ob + l < c_out
                    unsafe { *dst.add(l * plane + i * step_out) = *val };
                }
            }
        }
    }
}
