//! 3x3 stride-1 convolutions (f32, NCHW, one group) by Winograd's minimal filtering
//! F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), for
//! processes that ask for it ([`set_conv_winograd`]; off by default): each 4x4 block of output
//! positions (a tile) of one output channel is `A^T [ sum_c (G g_oc G^T) . (B^T d_c B) ] A`,
//! with `d_c` the 6x6 input patch of the tile in channel `c`. The sum over channels is, for
//! each of the 36 transform points `xi`, a matrix product
//! `M_xi [tiles x c_out] = V_xi [tiles x c_in] * U_xi [c_in x c_out]`: 36 products with 4x
//! fewer multiply-adds than the convolution as one im2col product, and no im2col block (9x the
//! input) to write.
//!
//! The input is first copied to a zero-padded channels-last buffer so that both transforms
//! run on vectors of 16 channels; the weights are transformed once per call (a pass over
//! them). Then tasks of consecutive tiles (across images), single-threaded and cache-sized,
//! each run the input transform of their tiles, the 36 products, and the output transform
//! into the output planes (bias included).
//!
//! The result equals the convolution up to rounding, but not bit for bit: the transforms'
//! constants (1/4, 1/6, 1/12, 1/24) are not exact in binary and the transforms add and
//! subtract multiples of neighbouring inputs; differences are of order 1e-6..1e-5 relative to
//! the largest output. Same bits run to run and for any thread count (each output is computed
//! by one task, in a fixed order).
//!
//! The gradients of the same convolutions run here too: the input gradient is this kernel on
//! the output gradient ([`conv2d_x_backward`]), the weight gradient has its own tasks (at the
//! end of the file).

use core::sync::atomic::{AtomicBool, Ordering};

use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};

use super::conv2d_im2col::{scratch, threads};
use crate::{FlexTensor, Layout};

static WINOGRAD: AtomicBool = AtomicBool::new(false);

/// Makes every later f32 3x3 stride-1 convolution of this process (one group, at least 16 input
/// and output channels, maps of at least 3x3 outputs, f32 matrix products), its forward and its
/// input and weight gradients, run as Winograd F(4x4, 3x3): about 2.5-4x faster on a CPU,
/// equal up to rounding (order 1e-6 relative; gradients within 5e-5), not bit for bit; and the
/// 1x7 and 7x1 ones (forward and input gradient) as F(4, 7) along the kernel
/// (`conv2d_winograd_line.rs`). Off by default.
pub fn set_conv_winograd(on: bool) {
    WINOGRAD.store(on, Ordering::Relaxed);
}

static NARROW: AtomicBool = AtomicBool::new(false);

/// Test hook: the Winograd kernels run their AVX2+FMA (or portable) code even on a CPU with
/// AVX-512, so that a machine with AVX-512 tests that code too (same bits: the GEMMs are the
/// gemm crate's either way, and the transforms do the same arithmetic on narrower vectors).
#[doc(hidden)]
pub fn set_conv_winograd_narrow(on: bool) {
    NARROW.store(on, Ordering::Relaxed);
}

/// Whether the AVX-512 code runs: the CPU has AVX-512 F and [`set_conv_winograd_narrow`] is off.
#[cfg(target_arch = "x86_64")]
pub(crate) fn wide() -> bool {
    !NARROW.load(Ordering::Relaxed) && std::arch::is_x86_feature_detected!("avx512f")
}

/// Whether [`set_conv_winograd`] turned the Winograd convolution on.
pub fn conv_winograd() -> bool {
    WINOGRAD.load(Ordering::Relaxed)
}

/// Whether Winograd convolutions run: [`set_conv_winograd`] turned them on and matrix products
/// are f32 (bf16 products keep im2col).
pub(crate) fn on_for_f32() -> bool {
    conv_winograd() && super::gemm_bf16::gemm_precision() == super::gemm_bf16::GemmPrecision::F32
}

/// Whether this forward convolution runs here: Winograd on, f32 products (not bf16), a 3x3
/// kernel, stride and dilation 1, one group, at least 3x3 output positions.
pub(crate) fn applies(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> bool {
    kernel_applies(x_shape, w_shape, options) && out_size(x_shape, options, 0) >= 3 && out_size(x_shape, options, 1) >= 3
}

/// Fewest input and output channels: with fewer (the 3-channel first layers of MTCNN's nets,
/// P-Net's 10 -> 16) the transforms of 16-channel vectors and the short products cost more
/// than the multiply-adds saved (R-Net's first layer: 5.7 ms im2col, 17.6 ms Winograd).
const MIN_CHANNELS: usize = 16;

/// What the forward and both gradients need: Winograd on, f32 products (not bf16), 4-D
/// tensors, a 3x3 kernel over all input channels, stride and dilation 1, one group, at least
/// [`MIN_CHANNELS`] input and output channels.
fn kernel_applies(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> bool {
    if !on_for_f32() {
        return false;
    }
    x_shape.len() == 4
        && w_shape.len() == 4
        && options.groups == 1
        && w_shape[2] == 3
        && w_shape[3] == 3
        && options.stride == [1, 1]
        && options.dilation == [1, 1]
        && w_shape[1] == x_shape[1]
        && w_shape[0].min(w_shape[1]) >= MIN_CHANNELS
}

/// Output positions along `axis` (0: rows, 1: columns) of a 3x3 stride-1 convolution.
fn out_size(x_shape: &[usize], options: &ConvOptions<2>, axis: usize) -> usize {
    let (begin, end) = options.padding[axis];
    (x_shape[2 + axis] + begin + end).saturating_sub(2)
}

/// The forward convolution of f32 tensors for which [`applies`] holds: `[batch, c_out, ho, wo]`.
pub(crate) fn conv2d_forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, options: &ConvOptions<2>) -> FlexTensor {
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let xs = x.layout().shape().clone();
    let ws = weight.layout().shape().clone();
    let [ph, pw] = options.padding_begin();
    let (ho, wo) = (out_size(&xs, options, 0), out_size(&xs, options, 1));
    let g = Geo { batch: xs[0], c_in: xs[1], h: xs[2], w: xs[3], c_out: ws[0], ph, pw, ho, wo };
    let bias = bias.map(|b| b.to_contiguous());
    let b_data: Option<&[f32]> = bias.as_ref().map(|b| b.storage());
    // every output position is written by the task of its tile
    let mut y = scratch(g.batch * g.c_out * g.ho * g.wo);
    conv3x3(x.storage(), weight.storage(), b_data, &g, &mut y);
    FlexTensor::new(Bytes::from_elems(y), Layout::contiguous(Shape::from(vec![g.batch, g.c_out, g.ho, g.wo])), burn_backend::DType::F32)
}

/// Whether the input gradient of this convolution runs here: Winograd on, f32 products, a
/// 3x3 kernel, stride and dilation 1, one group, at most 2 padding on each side (the gradient
/// is then a 3x3 stride-1 convolution of the output gradient, padded `2 - p`), an input of at
/// least 3x3 positions.
pub(crate) fn applies_x_backward(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> bool {
    kernel_applies(x_shape, w_shape, options)
        && options.padding.iter().all(|&(begin, end)| begin <= 2 && end <= 2)
        && x_shape[2] >= 3
        && x_shape[3] >= 3
}

/// The input gradient `[batch, c_in, h, w]` of a convolution for which [`applies_x_backward`]
/// holds: `dx[b, c, i, j] = sum_{o,k,l} g[b, o, i + ph - k, j + pw - l] * w[o, c, k, l]`, the
/// 3x3 stride-1 convolution of the output gradient (`c_out` channels in, `c_in` out) with the
/// kernel turned half a turn and its channel axes swapped, padded `2 - begin` before and
/// `2 - end` after on each axis.
pub(crate) fn conv2d_x_backward(x_shape: &[usize], weight: FlexTensor, output_grad: FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let weight = weight.to_contiguous();
    let grad = output_grad.to_contiguous();
    let gs = grad.layout().shape().clone();
    let (c_out, c_in) = (weight.layout().shape()[0], weight.layout().shape()[1]);
    let w: &[f32] = weight.storage();
    // turned[c][o][8 - k] = w[o][c][k]: the 3x3 taps in reverse order
    let mut turned = scratch(c_in * c_out * 9);
    for o in 0..c_out {
        for c in 0..c_in {
            let src = &w[(o * c_in + c) * 9..][..9];
            let dst = &mut turned[(c * c_out + o) * 9..][..9];
            for (k, v) in src.iter().enumerate() {
                dst[8 - k] = *v;
            }
        }
    }
    let (h, wd) = (x_shape[2], x_shape[3]);
    let g = Geo {
        batch: gs[0],
        c_in: c_out,
        h: gs[2],
        w: gs[3],
        c_out: c_in,
        ph: 2 - options.padding[0].0,
        pw: 2 - options.padding[1].0,
        ho: h,
        wo: wd,
    };
    let mut dx = scratch(g.batch * c_in * h * wd);
    conv3x3(grad.storage(), &turned, None, &g, &mut dx);
    FlexTensor::new(Bytes::from_elems(dx), Layout::contiguous(Shape::from(vec![g.batch, c_in, h, wd])), burn_backend::DType::F32)
}

use alloc::vec;
use alloc::vec::Vec;

/// Channels per vector of the transforms.
pub(crate) const LANES: usize = 16;
/// Transform points of one tile: 6 x 6.
const XI: usize = 36;
/// Most tiles per task.
pub(crate) const TILES: usize = 192;
/// Fewest tiles per task when more tasks would balance the workers better.
const MIN_TILES: usize = 32;

/// Shapes and paddings of one 3x3 stride-1 convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    /// Leading padding (rows, columns).
    ph: usize,
    pw: usize,
    ho: usize,
    wo: usize,
}

impl Geo {
    fn tiles_h(&self) -> usize {
        self.ho.div_ceil(4)
    }
    fn tiles_w(&self) -> usize {
        self.wo.div_ceil(4)
    }
    fn tiles(&self) -> usize {
        self.batch * self.tiles_h() * self.tiles_w()
    }
    /// Where tile `tile` (numbered across the batch, row by row) lies: its image, the top-left
    /// output position, and how many of its 4x4 output rows and columns are in the map.
    fn tile(&self, tile: usize) -> TileAt {
        let (th, tw) = (self.tiles_h(), self.tiles_w());
        let (b, rest) = (tile / (th * tw), tile % (th * tw));
        let (p0, q0) = (4 * (rest / tw), 4 * (rest % tw));
        TileAt { b, p0, q0, rows: (self.ho - p0).min(4), cols: (self.wo - q0).min(4) }
    }
    /// The padded channels-last input: every tile's 6x6 patch inside.
    fn pad(&self) -> Pad {
        Pad { c_in: self.c_in, h: self.h, w: self.w, ph: self.ph, pw: self.pw, hp: 4 * self.tiles_h() + 2, wp: 4 * self.tiles_w() + 2 }
    }
}

/// An input copied to zero-padded channels-last images `[hp][wp][cin_p]`: `c_in` planes of
/// `h x w` in, placed `ph` rows and `pw` columns from the top left.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pad {
    pub(crate) c_in: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    pub(crate) hp: usize,
    pub(crate) wp: usize,
}

/// Elements from one transform point's block of a task buffer to the next (`TILES` rows of
/// `width`): one cache line more than the rows, so that the 36 vectors a tile reads or writes
/// (one per point) do not all fall into the same L1 set (a multiple of 4 KiB apart, as
/// `TILES * width` floats is for every width of 32 channels or more).
pub(crate) const fn xi_stride(width: usize) -> usize {
    TILES * width + LANES
}

pub(crate) fn round_up(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

pub(crate) type Vf = [f32; LANES];

#[inline(always)]
fn vadd(a: Vf, b: Vf) -> Vf {
    core::array::from_fn(|l| a[l] + b[l])
}
#[inline(always)]
fn vsub(a: Vf, b: Vf) -> Vf {
    core::array::from_fn(|l| a[l] - b[l])
}
#[inline(always)]
fn vscale(s: f32, a: Vf) -> Vf {
    core::array::from_fn(|l| s * a[l])
}
/// `a + s * b`
#[inline(always)]
pub(crate) fn vfma(a: Vf, s: f32, b: Vf) -> Vf {
    core::array::from_fn(|l| a[l] + s * b[l])
}

/// `B^T d` for one column of 6 values.
#[inline(always)]
fn bt(d: [Vf; 6]) -> [Vf; 6] {
    let d4_d2 = vsub(d[4], d[2]);
    let d3_d1 = vsub(d[3], d[1]);
    let s34 = vadd(d[4], d[3]);
    let s12 = vadd(d[1], d[2]);
    let m34 = vsub(d[4], d[3]);
    let m12 = vsub(d[1], d[2]);
    [
        vfma(vfma(d[4], -5.0, d[2]), 4.0, d[0]),
        vfma(s34, -4.0, s12),
        vfma(m34, 4.0, m12),
        vfma(d4_d2, 2.0, d3_d1),
        vfma(d4_d2, -2.0, d3_d1),
        vfma(vfma(d[5], -5.0, d[3]), 4.0, d[1]),
    ]
}

/// `A^T m` for one column of 6 values.
#[inline(always)]
fn at(m: [Vf; 6]) -> [Vf; 4] {
    let p12 = vadd(m[1], m[2]);
    let n12 = vsub(m[1], m[2]);
    let p34 = vadd(m[3], m[4]);
    let n34 = vsub(m[3], m[4]);
    [vadd(vadd(m[0], p12), p34), vfma(n12, 2.0, n34), vfma(p12, 4.0, p34), vadd(vfma(n12, 8.0, n34), m[5])]
}

/// `U_xi[c][o] = (G g_oc G^T)_xi`, `[36][c_in][c_out_p]`, padding columns zero: the weights
/// first as `[c_in][9][c_out_p]`, then transformed 16 output channels at a time.
fn transform_weights(w: &[f32], g: &Geo, cout_p: usize) -> Vec<f32> {
    // padding columns (output channels c_out..cout_p) read by the transform: zero
    let mut wt = if cout_p != g.c_out { vec![0.0; g.c_in * 9 * cout_p] } else { scratch(g.c_in * 9 * cout_p) };
    let wtp = OutPtr(wt.as_mut_ptr());
    for_each_task(
        g.c_in,
        || (),
        move |_, c| {
            // SAFETY: rows `c * 9 .. c * 9 + 9` of `wt` belong to this task only
            let dst = unsafe { core::slice::from_raw_parts_mut(wtp.get().add(c * 9 * cout_p), 9 * cout_p) };
            for o in 0..g.c_out {
                let src = &w[(o * g.c_in + c) * 9..(o * g.c_in + c) * 9 + 9];
                for (ij, v) in src.iter().enumerate() {
                    dst[ij * cout_p + o] = *v;
                }
            }
        },
    );
    let mut u = scratch(XI * g.c_in * cout_p);
    let per_xi = g.c_in * cout_p;
    let up = OutPtr(u.as_mut_ptr());
    let wt = &wt[..];
    for_each_task(
        g.c_in,
        || (),
        move |_, c| {
            // SAFETY: row `c` of every `U_xi` belongs to this task only
            unsafe { transform_weights_channel(&wt[c * 9 * cout_p..(c + 1) * 9 * cout_p], cout_p, up.get().add(c * cout_p), per_xi) }
        },
    );
    u
}

/// The 36 transform points of input channel `c`'s kernels (`k`: `[9][c_out_p]`), written
/// at `u + xi * per_xi`.
unsafe fn transform_weights_channel(k: &[f32], cout_p: usize, u: *mut f32, per_xi: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if wide() {
            return unsafe { transform_weights_avx512(k, cout_p, u, per_xi) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return unsafe { transform_weights_avx2(k, cout_p, u, per_xi) };
        }
    }
    unsafe { transform_weights_body(k, cout_p, u, per_xi) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_weights_avx512(k: &[f32], cout_p: usize, u: *mut f32, per_xi: usize) {
    unsafe { transform_weights_body(k, cout_p, u, per_xi) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_weights_avx2(k: &[f32], cout_p: usize, u: *mut f32, per_xi: usize) {
    unsafe { transform_weights_body(k, cout_p, u, per_xi) }
}

/// `G k` for one column of 3 values.
#[inline(always)]
fn gk(k: [Vf; 3]) -> [Vf; 6] {
    let s02 = vadd(k[0], k[2]);
    let a = vscale(-1.0 / 6.0, vadd(s02, k[1]));
    let b = vscale(-1.0 / 6.0, vsub(s02, k[1]));
    let q = vfma(vscale(1.0 / 24.0, k[0]), 1.0 / 6.0, k[2]);
    [vscale(0.25, k[0]), a, b, vfma(q, 1.0 / 12.0, k[1]), vfma(q, -1.0 / 12.0, k[1]), k[2]]
}

#[inline(always)]
unsafe fn transform_weights_body(k: &[f32], cout_p: usize, u: *mut f32, per_xi: usize) {
    for ob in (0..cout_p).step_by(LANES) {
        let load = |ij: usize| -> Vf { k[ij * cout_p + ob..ij * cout_p + ob + LANES].try_into().unwrap() };
        // columns j of the 3x3 kernel: G k_j (6 values each)
        let cols = [gk([load(0), load(3), load(6)]), gk([load(1), load(4), load(7)]), gk([load(2), load(5), load(8)])];
        for i in 0..6 {
            let r = gk([cols[0][i], cols[1][i], cols[2][i]]);
            for (j, val) in r.iter().enumerate() {
                unsafe { *(u.add((i * 6 + j) * per_xi + ob) as *mut Vf) = *val };
            }
        }
    }
}

/// The input of image `b` as zero-padded channels-last rows `[hp][wp][cin_p]`.
fn pad_channels_last(x: &[f32], g: &Pad, b: usize, cin_p: usize, dst: &mut [f32]) {
    dst.fill(0.0);
    #[cfg(target_arch = "x86_64")]
    if wide() {
        // SAFETY: the CPU has AVX-512 F
        unsafe { pad_channels_last_avx512(x, g, b, cin_p, dst) };
        return;
    }
    pad_channels(x, g, b, 0, cin_p, dst);
}

/// Channels `c0..` of image `b` into the zeroed `dst` of [`pad_channels_last`], one element at
/// a time.
fn pad_channels(x: &[f32], g: &Pad, b: usize, c0: usize, cin_p: usize, dst: &mut [f32]) {
    let (hp, wp) = (g.hp, g.wp);
    for c in c0..g.c_in {
        let plane = &x[(b * g.c_in + c) * g.h * g.w..(b * g.c_in + c + 1) * g.h * g.w];
        for r in 0..hp {
            let ih = r as isize - g.ph as isize;
            if ih < 0 || ih >= g.h as isize {
                continue;
            }
            let src = &plane[ih as usize * g.w..(ih as usize + 1) * g.w];
            let row = &mut dst[r * wp * cin_p..(r + 1) * wp * cin_p];
            let s0 = g.pw;
            let n = g.w.min(wp.saturating_sub(s0));
            for (s, v) in src[..n].iter().enumerate() {
                row[(s0 + s) * cin_p + c] = *v;
            }
        }
    }
}

/// [`pad_channels`] for whole blocks of 16 channels through 16 x 16 register transpositions
/// (16 columns of 16 channel rows in, 16 channel vectors out); the channels past the last
/// whole block one element at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pad_channels_last_avx512(x: &[f32], g: &Pad, b: usize, cin_p: usize, dst: &mut [f32]) {
    use core::arch::x86_64::*;
    let (hp, wp) = (g.hp, g.wp);
    let n = g.w.min(wp.saturating_sub(g.pw));
    let whole = g.c_in / LANES * LANES;
    let plane = g.h * g.w;
    let xb = &x[b * g.c_in * plane..(b + 1) * g.c_in * plane];
    for r in 0..hp {
        let ih = r as isize - g.ph as isize;
        if ih < 0 || ih >= g.h as isize {
            continue;
        }
        let row = &mut dst[r * wp * cin_p..(r + 1) * wp * cin_p];
        for cb in (0..whole).step_by(LANES) {
            for s in (0..n).step_by(LANES) {
                let len = LANES.min(n - s);
                let mask = ((1u32 << len) - 1) as u16;
                let mut t: [__m512i; 16] = core::array::from_fn(|k| {
                    let src = &xb[(cb + k) * plane + ih as usize * g.w + s..];
                    // SAFETY: `len` elements of the row from `s` are inside the plane
                    _mm512_castps_si512(unsafe { _mm512_maskz_loadu_ps(mask, src.as_ptr()) })
                });
                unsafe { super::gemm_bf16::x86::transpose16(&mut t) };
                for (j, v) in t.iter().enumerate().take(len) {
                    let at = (g.pw + s + j) * cin_p + cb;
                    // SAFETY: column `pw + s + j < wp` of the row, channels cb..cb+16 <= cin_p
                    unsafe { _mm512_storeu_ps(row[at..at + LANES].as_mut_ptr(), _mm512_castsi512_ps(*v)) };
                }
            }
        }
    }
    pad_channels(x, g, b, whole, cin_p, dst);
}

/// What every task of one convolution reads, and the output it writes to.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// The padded channels-last input.
    xp: &'a [f32],
    /// The transformed weights.
    u: &'a [f32],
    bias: Option<&'a [f32]>,
    g: &'a Geo,
    cin_p: usize,
    cout_p: usize,
    out: OutPtr,
}

/// Buffers of one worker.
pub(crate) struct Scratch {
    pub(crate) v: Vec<f32>,
    pub(crate) m: Vec<f32>,
}

impl Scratch {
    /// At least `v` and `m` elements (new ones zero: the output transform reads the padding
    /// lanes of `m` that the products leave alone; any finite or stale value there only
    /// reaches lanes that are never stored).
    pub(crate) fn grow(&mut self, v: usize, m: usize) {
        if self.v.len() < v {
            self.v.resize(v, 0.0);
        }
        if self.m.len() < m {
            self.m.resize(m, 0.0);
        }
    }
}

/// One tile's place ([`Geo::tile`]).
struct TileAt {
    b: usize,
    p0: usize,
    q0: usize,
    rows: usize,
    cols: usize,
}

/// A buffer shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// 3x3 stride-1 convolution: `out[b, o, p, q] = bias[o] + sum_{c,i,j} w[o, c, i, j] *
/// x[b, c, p + i - ph, q + j - pw]` (zero outside the input); `out` is `[batch, c_out, ho, wo]`.
pub(crate) fn conv3x3(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geo, out: &mut [f32]) {
    let cin_p = round_up(g.c_in);
    let cout_p = round_up(g.c_out);
    let u = transform_weights(w, g, cout_p);
    let xp = padded_input(x, &g.pad(), g.batch, cin_p);
    let tiles = g.tiles();
    let (per_task, tasks) = split_tiles(tiles);
    let job = Job { xp: &xp, u: &u, bias, g, cin_p, cout_p, out: OutPtr(out.as_mut_ptr()) };
    let task = move |_: &mut (), k: usize| {
        let t0 = k * per_task;
        let t1 = (t0 + per_task).min(tiles);
        SCRATCH.with(|cell| {
            let s = &mut *cell.borrow_mut();
            s.grow(XI * xi_stride(cin_p), XI * xi_stride(cout_p));
            // SAFETY: the output positions of tiles t0..t1 belong to this task only
            unsafe { run_task(&job, t0, t1, s) };
        });
    };
    for_each_task(tasks, || (), task);
}

/// The input as zero-padded channels-last images `[batch][hp][wp][cin_p]`, an image per task.
pub(crate) fn padded_input(x: &[f32], g: &Pad, batch: usize, cin_p: usize) -> Vec<f32> {
    let img = g.hp * g.wp * cin_p;
    let mut xp = scratch(batch * img);
    let xpp = OutPtr(xp.as_mut_ptr());
    for_each_task(
        batch,
        || (),
        move |_, b| {
            // SAFETY: image `b` of `xp` belongs to this task only
            let dst = unsafe { core::slice::from_raw_parts_mut(xpp.get().add(b * img), img) };
            pad_channels_last(x, g, b, cin_p, dst);
        },
    );
    xp
}

/// Tasks for `tiles` tiles on this pool: at most `TILES` tiles each, at least `MIN_TILES`
/// where more tasks balance the workers better, in whole rounds of the workers; returns
/// (tiles per task, tasks).
pub(crate) fn split_tiles(tiles: usize) -> (usize, usize) {
    let workers = threads();
    let mut tasks = tiles.div_ceil(TILES).max((tiles / MIN_TILES).min(4 * workers)).max(1);
    if tasks > workers {
        // whole rounds: 27 tasks on 2 workers leave one idle for a task's time
        tasks = tasks.div_ceil(workers) * workers;
    }
    let per_task = tiles.div_ceil(tasks);
    (per_task, tiles.div_ceil(per_task))
}

std::thread_local! {
    /// The task buffers of this thread, grown to the largest convolution seen and kept (a
    /// fresh pair per task cost page faults, and run-to-run differences in where they landed).
    pub(crate) static SCRATCH: core::cell::RefCell<Scratch> = const { core::cell::RefCell::new(Scratch { v: Vec::new(), m: Vec::new() }) };
}

/// `f(state, k)` for `k` in `0..n`, in parallel with rayon (one `init()` state per worker).
pub(crate) fn for_each_task<S, I, F>(n: usize, init: I, f: F)
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize) + Sync + Send,
{
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each_init(init, f);
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut state = init();
        (0..n).for_each(|k| f(&mut state, k));
    }
}

/// One task (tiles `t0..t1`), with the widest vectors this CPU has.
unsafe fn run_task(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    {
        if wide() {
            return unsafe { run_task_avx512(job, t0, t1, s) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return unsafe { run_task_avx2(job, t0, t1, s) };
        }
    }
    unsafe { run_task_body::<false>(job, t0, t1, s) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_task_avx512(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    unsafe { run_task_body::<true>(job, t0, t1, s) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_task_avx2(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    unsafe { run_task_body::<false>(job, t0, t1, s) }
}

/// `V[xi][t][c] = (B^T d_{t,c} B)_xi` for tiles `t0..t0 + nt` of the padded channels-last
/// input `xp`, into `v` (blocks `xi_stride(cin_p)` apart, rows `cin_p` long).
#[inline(always)]
unsafe fn input_transform(xp: &[f32], g: &Geo, cin_p: usize, t0: usize, nt: usize, v: *mut f32) {
    let Pad { hp, wp, .. } = g.pad();
    let xpp = xp.as_ptr();
    for t in 0..nt {
        let TileAt { b, p0, q0, .. } = g.tile(t0 + t);
        let base = b * hp * wp * cin_p + (p0 * wp + q0) * cin_p;
        for cb in (0..cin_p).step_by(LANES) {
            let load = |i: usize, j: usize| -> Vf { unsafe { *(xpp.add(base + (i * wp + j) * cin_p + cb) as *const Vf) } };
            // columns: B^T d_j for each column j
            let mut cols = [[[0.0f32; LANES]; 6]; 6];
            for j in 0..6 {
                cols[j] = bt([load(0, j), load(1, j), load(2, j), load(3, j), load(4, j), load(5, j)]);
            }
            // rows: (B^T d) B, row k
            for k in 0..6 {
                let r = bt([cols[0][k], cols[1][k], cols[2][k], cols[3][k], cols[4][k], cols[5][k]]);
                for (l, val) in r.iter().enumerate() {
                    let xi = k * 6 + l;
                    unsafe { *(v.add(xi * xi_stride(cin_p) + t * cin_p + cb) as *mut Vf) = *val };
                }
            }
        }
    }
}

/// One task (tiles `t0..t1`); `WIDE`: compiled for AVX-512 (the output tiles are transposed in
/// registers).
#[inline(always)]
unsafe fn run_task_body<const WIDE: bool>(job: &Job, t0: usize, t1: usize, s: &mut Scratch) {
    let Job { xp, u, bias, g, cin_p, cout_p, out } = *job;
    let out = out.get();
    let nt = t1 - t0;
    let v = s.v.as_mut_ptr();
    let m = s.m.as_mut_ptr();
    // input transform: V[xi][t][c]
    unsafe { input_transform(xp, g, cin_p, t0, nt, v) };
    // 36 products M_xi = V_xi * U_xi
    unsafe { point_products(XI, nt, g.c_in, g.c_out, cin_p, cout_p, v, u, m) };
    // output transform: Y = A^T M A, into the output planes
    let plane = g.ho * g.wo;
    for t in 0..nt {
        let TileAt { b, p0, q0, rows, cols: cols_n } = g.tile(t0 + t);
        for ob in (0..cout_p).step_by(LANES) {
            let load = |xi: usize| -> Vf { unsafe { *(m.add(xi * xi_stride(cout_p) + t * cout_p + ob) as *const Vf) } };
            // A^T applied down each of the 6 columns
            let mut cols = [[[0.0f32; LANES]; 4]; 6];
            for j in 0..6 {
                cols[j] = at([load(j), load(6 + j), load(12 + j), load(18 + j), load(24 + j), load(30 + j)]);
            }
            let bias_v: Vf = match bias {
                Some(bv) => core::array::from_fn(|l| if ob + l < g.c_out { bv[ob + l] } else { 0.0 }),
                None => [0.0; LANES],
            };
            let mut y = [[0.0f32; LANES]; 16];
            for i in 0..4 {
                let r = at([cols[0][i], cols[1][i], cols[2][i], cols[3][i], cols[4][i], cols[5][i]]);
                for j in 0..4 {
                    y[i * 4 + j] = vadd(r[j], bias_v);
                }
            }
            let lanes = (g.c_out - ob).min(LANES);
            let dst = unsafe { out.add((b * g.c_out + ob) * plane + p0 * g.wo + q0) };
            let shape = TileStore { lanes, rows, cols: cols_n, plane, wo: g.wo };
            #[cfg(target_arch = "x86_64")]
            if WIDE {
                unsafe { store_tile_avx512(&y, &shape, dst) };
                continue;
            }
            unsafe { store_tile(&y, &shape, dst) };
        }
    }
}

/// `M_xi [nt x c_out] = V_xi [nt x c_in] * U_xi [c_in x c_out]` for the `points` transform points
/// of a task: `V_xi` at `v + xi * xi_stride(cin_p)` (rows `cin_p` apart), `U_xi` at
/// `u + xi * c_in * cout_p` (rows `cout_p` apart), `M_xi` written at `m + xi * xi_stride(cout_p)`
/// (rows `cout_p` apart); single-threaded (the tasks are the parallelism).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn point_products(
    points: usize,
    nt: usize,
    c_in: usize,
    c_out: usize,
    cin_p: usize,
    cout_p: usize,
    v: *const f32,
    u: &[f32],
    m: *mut f32,
) {
    for xi in 0..points {
        unsafe {
            gemm::gemm(
                nt,
                c_out,
                c_in,
                m.add(xi * xi_stride(cout_p)),
                1,
                cout_p as isize,
                false,
                v.add(xi * xi_stride(cin_p)),
                1,
                cin_p as isize,
                u.as_ptr().add(xi * c_in * cout_p),
                1,
                cout_p as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// Where one output tile of 16 channels goes: `lanes` channels (planes `plane` apart) of
/// `rows x cols` positions (rows `wo` apart).
struct TileStore {
    lanes: usize,
    rows: usize,
    cols: usize,
    plane: usize,
    wo: usize,
}

/// Writes `y[position][lane]` (4x4 positions, row-major) to the output planes.
#[inline(always)]
unsafe fn store_tile(y: &[Vf; 16], s: &TileStore, dst: *mut f32) {
    for l in 0..s.lanes {
        let dst = unsafe { dst.add(l * s.plane) };
        if s.rows == 4 && s.cols == 4 {
            for i in 0..4 {
                let row = [y[i * 4][l], y[i * 4 + 1][l], y[i * 4 + 2][l], y[i * 4 + 3][l]];
                unsafe { (dst.add(i * s.wo) as *mut [f32; 4]).write_unaligned(row) };
            }
        } else {
            for i in 0..s.rows {
                for j in 0..s.cols {
                    unsafe { *dst.add(i * s.wo + j) = y[i * 4 + j][l] };
                }
            }
        }
    }
}

/// [`store_tile`] through a 16 x 16 register transposition: each lane's 16 positions in one
/// register, stored as four rows of four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_tile_avx512(y: &[Vf; 16], s: &TileStore, dst: *mut f32) {
    use core::arch::x86_64::*;
    let mut r: [__m512i; 16] = core::array::from_fn(|p| _mm512_castps_si512(unsafe { _mm512_loadu_ps(y[p].as_ptr()) }));
    unsafe { super::gemm_bf16::x86::transpose16(&mut r) };
    for (l, lane) in r.iter().enumerate().take(s.lanes) {
        let v = _mm512_castsi512_ps(*lane);
        let dst = unsafe { dst.add(l * s.plane) };
        if s.rows == 4 && s.cols == 4 {
            unsafe {
                _mm_storeu_ps(dst, _mm512_castps512_ps128(v));
                _mm_storeu_ps(dst.add(s.wo), _mm512_extractf32x4_ps::<1>(v));
                _mm_storeu_ps(dst.add(2 * s.wo), _mm512_extractf32x4_ps::<2>(v));
                _mm_storeu_ps(dst.add(3 * s.wo), _mm512_extractf32x4_ps::<3>(v));
            }
        } else {
            let mut tile = [0f32; 16];
            unsafe { _mm512_storeu_ps(tile.as_mut_ptr(), v) };
            for i in 0..s.rows {
                for j in 0..s.cols {
                    unsafe { *dst.add(i * s.wo + j) = tile[i * 4 + j] };
                }
            }
        }
    }
}

// ---- weight gradient -------------------------------------------------------------------
//
// The forward of one tile is `Y = A^T [sum_c U_c . V_c] A` with `U_c = G g_c G^T`, so the
// gradient of a loss with respect to the kernel `g_c` is `G^T [sum_tiles (A dY A^T) . V_c] G`:
// the output gradient's tiles transformed by `A` (4x4 -> 6x6), the input's by `B^T . B` as in
// the forward, and for each of the 36 transform points one product
// `dU_xi [c_out x c_in] = Z_xi^T [c_out x tiles] * V_xi [tiles x c_in]` summed over all tiles
// (4x fewer multiply-adds than the im2col product `dY * im2col(x)^T`), then `G^T . G` (6x6 ->
// 3x3) per kernel.

/// The weight gradient `[c_out, c_in, 3, 3]` of a convolution for which [`applies`] holds:
/// `dw[o, c, i, j] = sum_{b,p,q} g[b, o, p, q] * x[b, c, p + i - ph, q + j - pw]`.
pub(crate) fn conv2d_weight_backward(x: FlexTensor, w_shape: &[usize], output_grad: FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    let x = x.to_contiguous();
    let grad = output_grad.to_contiguous();
    let xs = x.layout().shape().clone();
    let gs = grad.layout().shape().clone();
    let [ph, pw] = options.padding_begin();
    let g = Geo { batch: xs[0], c_in: xs[1], h: xs[2], w: xs[3], c_out: w_shape[0], ph, pw, ho: gs[2], wo: gs[3] };
    let dw = weight_grad3x3(x.storage(), grad.storage(), &g);
    FlexTensor::new(Bytes::from_elems(dw), Layout::contiguous(Shape::from(vec![g.c_out, g.c_in, 3, 3])), burn_backend::DType::F32)
}

/// `dw[o, c, i, j] = sum_{b,p,q} dy[b, o, p, q] * x[b, c, p + i - ph, q + j - pw]` with `dy`
/// `[batch, c_out, ho, wo]`. Chunks of `TILES` consecutive tiles; each of up to two groups of
/// consecutive chunks per worker sums its chunks' products in its own `dU`, and the groups'
/// sums are added in order: the same bits on every run with the same number of workers.
pub(crate) fn weight_grad3x3(x: &[f32], dy: &[f32], g: &Geo) -> Vec<f32> {
    let cin_p = round_up(g.c_in);
    let cout_p = round_up(g.c_out);
    let xp = padded_input(x, &g.pad(), g.batch, cin_p);
    let tiles = g.tiles();
    let chunks = tiles.div_ceil(TILES);
    let groups = chunks.min(2 * threads()).max(1);
    let per_group = XI * g.c_out * g.c_in;
    // every group has a chunk, whose product writes its whole `dU` first
    let mut partials = scratch(groups * per_group);
    let pp = OutPtr(partials.as_mut_ptr());
    let job = GradJob { xp: &xp, dy, g, cin_p, cout_p };
    for_each_task(
        groups,
        || (),
        move |_, gi| {
            let (c0, c1) = (gi * chunks / groups, (gi + 1) * chunks / groups);
            SCRATCH.with(|cell| {
                let s = &mut *cell.borrow_mut();
                s.grow(XI * xi_stride(cin_p), XI * xi_stride(cout_p));
                for c in c0..c1 {
                    let (t0, t1) = (c * TILES, ((c + 1) * TILES).min(tiles));
                    // SAFETY: group `gi`'s `dU` belongs to this task only
                    unsafe { grad_chunk(&job, t0, t1, c > c0, s, pp.get().add(gi * per_group)) };
                }
            });
        },
    );
    let mut dw = scratch(g.c_out * g.c_in * 9);
    let dwp = OutPtr(dw.as_mut_ptr());
    let partials = &partials[..];
    for_each_task(
        g.c_out,
        || (),
        move |_, o| {
            // SAFETY: the kernels of output channel `o` belong to this task only
            let dst = unsafe { core::slice::from_raw_parts_mut(dwp.get().add(o * g.c_in * 9), g.c_in * 9) };
            for c in 0..g.c_in {
                let du: [f32; XI] = core::array::from_fn(|xi| {
                    let at = (xi * g.c_out + o) * g.c_in + c;
                    (1..groups).fold(partials[at], |sum, gi| sum + partials[gi * per_group + at])
                });
                // G^T dU G: along each row, then down each column
                let rows: [[f32; 3]; 6] = core::array::from_fn(|k| gt(du[k * 6..k * 6 + 6].try_into().unwrap()));
                for j in 0..3 {
                    let col = gt(core::array::from_fn(|k| rows[k][j]));
                    for i in 0..3 {
                        dst[c * 9 + i * 3 + j] = col[i];
                    }
                }
            }
        },
    );
    dw
}

/// `G^T m` for one column of 6 values.
#[inline(always)]
fn gt(m: [f32; 6]) -> [f32; 3] {
    let p12 = m[1] + m[2];
    let p34 = m[3] + m[4];
    [0.25 * m[0] - p12 / 6.0 + p34 / 24.0, (m[2] - m[1]) / 6.0 + (m[3] - m[4]) / 12.0, (p34 - p12) / 6.0 + m[5]]
}

/// `A y` for one column of 4 values.
#[inline(always)]
fn a6(y: [Vf; 4]) -> [Vf; 6] {
    let s02 = vadd(y[0], y[2]);
    let s13 = vadd(y[1], y[3]);
    let t02 = vfma(y[0], 4.0, y[2]);
    let t13 = vfma(vscale(2.0, y[1]), 8.0, y[3]);
    [y[0], vadd(s02, s13), vsub(s02, s13), vadd(t02, t13), vsub(t02, t13), y[3]]
}

/// What every chunk of one weight gradient reads.
#[derive(Clone, Copy)]
struct GradJob<'a> {
    /// The padded channels-last input.
    xp: &'a [f32],
    /// The output gradient, `[batch, c_out, ho, wo]`.
    dy: &'a [f32],
    g: &'a Geo,
    cin_p: usize,
    cout_p: usize,
}

/// One chunk (tiles `t0..t1`) into `du` (`[36][c_out][c_in]`; added to it when
/// `accumulate`), with the widest vectors this CPU has.
unsafe fn grad_chunk(job: &GradJob, t0: usize, t1: usize, accumulate: bool, s: &mut Scratch, du: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if wide() {
            return unsafe { grad_chunk_avx512(job, t0, t1, accumulate, s, du) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return unsafe { grad_chunk_avx2(job, t0, t1, accumulate, s, du) };
        }
    }
    unsafe { grad_chunk_body::<false>(job, t0, t1, accumulate, s, du) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn grad_chunk_avx512(job: &GradJob, t0: usize, t1: usize, accumulate: bool, s: &mut Scratch, du: *mut f32) {
    unsafe { grad_chunk_body::<true>(job, t0, t1, accumulate, s, du) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn grad_chunk_avx2(job: &GradJob, t0: usize, t1: usize, accumulate: bool, s: &mut Scratch, du: *mut f32) {
    unsafe { grad_chunk_body::<false>(job, t0, t1, accumulate, s, du) }
}

#[inline(always)]
unsafe fn grad_chunk_body<const WIDE: bool>(job: &GradJob, t0: usize, t1: usize, accumulate: bool, s: &mut Scratch, du: *mut f32) {
    let GradJob { xp, dy, g, cin_p, cout_p } = *job;
    let nt = t1 - t0;
    let v = s.v.as_mut_ptr();
    let z = s.m.as_mut_ptr();
    unsafe { input_transform(xp, g, cin_p, t0, nt, v) };
    // output-gradient transform: Z[xi][t][o] = (A dY A^T)_xi, positions past the map zero
    let plane = g.ho * g.wo;
    for t in 0..nt {
        let TileAt { b, p0, q0, rows, cols: cols_n } = g.tile(t0 + t);
        for ob in (0..cout_p).step_by(LANES) {
            let lanes = (g.c_out - ob).min(LANES);
            let src = unsafe { dy.as_ptr().add((b * g.c_out + ob) * plane + p0 * g.wo + q0) };
            let shape = TileStore { lanes, rows, cols: cols_n, plane, wo: g.wo };
            #[cfg(target_arch = "x86_64")]
            let y = if WIDE { unsafe { load_tile_avx512(&shape, src) } } else { unsafe { load_tile(&shape, src) } };
            #[cfg(not(target_arch = "x86_64"))]
            let y = unsafe { load_tile(&shape, src) };
            // A down each of the 4 columns, then along each of the 6 rows
            let cols: [[Vf; 6]; 4] = core::array::from_fn(|j| a6([y[j], y[4 + j], y[8 + j], y[12 + j]]));
            for k in 0..6 {
                let r = a6([cols[0][k], cols[1][k], cols[2][k], cols[3][k]]);
                for (l, val) in r.iter().enumerate() {
                    unsafe { *(z.add((k * 6 + l) * xi_stride(cout_p) + t * cout_p + ob) as *mut Vf) = *val };
                }
            }
        }
    }
    // 36 products dU_xi (+)= Z_xi^T V_xi
    for xi in 0..XI {
        unsafe {
            gemm::gemm(
                g.c_out,
                g.c_in,
                nt,
                du.add(xi * g.c_out * g.c_in),
                1,
                g.c_in as isize,
                accumulate,
                z.add(xi * xi_stride(cout_p)),
                cout_p as isize,
                1,
                v.add(xi * xi_stride(cin_p)),
                1,
                cin_p as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    }
}

/// `y[position][lane]` of one tile of 16 output-gradient channels ([`TileStore`]'s shape; the
/// positions and lanes past it zero).
#[inline(always)]
unsafe fn load_tile(s: &TileStore, src: *const f32) -> [Vf; 16] {
    let mut y = [[0.0f32; LANES]; 16];
    for l in 0..s.lanes {
        let src = unsafe { src.add(l * s.plane) };
        for i in 0..s.rows {
            for j in 0..s.cols {
                y[i * 4 + j][l] = unsafe { *src.add(i * s.wo + j) };
            }
        }
    }
    y
}

/// [`load_tile`]: each lane's 16 positions in one register (four rows of four), then a 16 x 16
/// register transposition.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_tile_avx512(s: &TileStore, src: *const f32) -> [Vf; 16] {
    use core::arch::x86_64::*;
    let mut r: [__m512i; 16] = [_mm512_setzero_si512(); 16];
    for (l, lane) in r.iter_mut().enumerate().take(s.lanes) {
        let src = unsafe { src.add(l * s.plane) };
        let v = if s.rows == 4 && s.cols == 4 {
            unsafe {
                let v = _mm512_castps128_ps512(_mm_loadu_ps(src));
                let v = _mm512_insertf32x4::<1>(v, _mm_loadu_ps(src.add(s.wo)));
                let v = _mm512_insertf32x4::<2>(v, _mm_loadu_ps(src.add(2 * s.wo)));
                _mm512_insertf32x4::<3>(v, _mm_loadu_ps(src.add(3 * s.wo)))
            }
        } else {
            let mut tile = [0f32; 16];
            for i in 0..s.rows {
                for j in 0..s.cols {
                    tile[i * 4 + j] = unsafe { *src.add(i * s.wo + j) };
                }
            }
            unsafe { _mm512_loadu_ps(tile.as_ptr()) }
        };
        *lane = _mm512_castps_si512(v);
    }
    unsafe { super::gemm_bf16::x86::transpose16(&mut r) };
    let mut y = [[0.0f32; LANES]; 16];
    for (p, v) in r.iter().enumerate() {
        unsafe { _mm512_storeu_ps(y[p].as_mut_ptr(), _mm512_castsi512_ps(*v)) };
    }
    y
}
