//! 2-D convolution (NCHW) and its backward passes as im2col / col2im around GEMMs.
//!
//! Forward: `y_b = W_g * im2col(x_b)`, the im2col block built straight from the NCHW
//! input (no NHWC copy), as parallel tasks of one image (or one band of output rows of a
//! large image), each with a single-threaded GEMM writing its rows of the output, bias
//! included (see `forward_tasks`).
//!
//! The generic backward of `burn-backend` computes the weight gradient as a
//! convolution whose "kernel" is the output gradient (batch and channel axes
//! swapped). On a CPU that convolution has an output of only `kh x kw` pixels, so
//! it degenerates into `c_in` matrix-vector products that re-read the whole output
//! gradient once per input channel, after two full transposed copies. Here both
//! gradients are GEMMs over a range of images:
//!
//! * weight: `dW_g[o, (c,i,j)] += G_g[o, (b,p,q)] * cols[(c,i,j), (b,p,q)]^T`
//! * input:  `cols = W_g^T * G_g`, then `col2im` adds `cols` back into `dX`.
//!
//! `G_g` is the output gradient of group `g` packed as `[c_out/groups, b*ho*wo]`
//! and `cols` the im2col matrix of the range's images. With several workers the ranges
//! are parallel tasks with single-threaded GEMMs (`TASK_ELEMS` of im2col each; partial
//! weight gradients per worker, summed at the end); otherwise one range of `CHUNK_ELEMS`
//! after the other with each GEMM split over the workers. Padding may be asymmetric: only
//! the leading padding enters the index arithmetic and the output size comes from the
//! output gradient's shape.

use alloc::vec;
use alloc::vec::Vec;

use burn_backend::{DType, Element, ops::ConvOptions};
use burn_std::{Bytes, Shape};
use num_traits::Float;

use super::par_chunks::for_each_chunk;
use crate::{FlexTensor, Layout};

/// Upper bound on the elements of one im2col chunk (all groups of the chunk's
/// images): 4 Mi elements, 16 MiB in f32.
const CHUNK_ELEMS: usize = 1 << 22;

/// Target elements of the im2col block of one backward task: 1 Mi (4 MiB in f32).
#[cfg(feature = "rayon")]
const TASK_ELEMS: usize = 1 << 20;

/// Backward tasks per worker when the images are small enough to share tasks (see
/// [`Geometry::task_images`]).
#[cfg(feature = "rayon")]
const TASKS_PER_WORKER: usize = 4;

/// Fewest output positions (images x positions per map) of a backward task: on smaller
/// maps (3x3) a task keeps this many, even if that leaves fewer than `TASKS_PER_WORKER`
/// tasks per worker.
#[cfg(feature = "rayon")]
const MIN_TASK_COLS: usize = 256;

/// Below this many multiply-adds a GEMM runs on the calling thread.
const PARALLEL_GEMM_FLOPS: usize = 128 * 128 * 128;

/// Positions per map from which a pointwise convolution's input gradient is one GEMM per
/// image straight into `dx` (see [`Geometry::direct_x_grad`]); below it (3x3 maps) the
/// per-image GEMMs would be a few columns wide.
const DIRECT_X_SPATIAL: usize = 64;

/// Positions per map from which a pointwise convolution's weight gradient is one GEMM per
/// image on the tensors as they lie (see [`Geometry::direct_w_grad`]).
const DIRECT_W_SPATIAL: usize = 256;

/// Shapes, strides and paddings of one 2-D convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    groups: usize,
    /// Input channels per group.
    cg: usize,
    /// Output channels per group.
    og: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], grad: &[usize], options: &ConvOptions<2>) -> Self {
        let groups = options.groups.max(1);
        let [ph, pw] = options.padding_begin();
        Self {
            batch: x[0],
            c_in: x[1],
            h: x[2],
            w: x[3],
            c_out: weight[0],
            groups,
            cg: weight[1],
            og: weight[0] / groups,
            kh: weight[2],
            kw: weight[3],
            sh: options.stride[0],
            sw: options.stride[1],
            ph,
            pw,
            dh: options.dilation[0],
            dw: options.dilation[1],
            ho: grad[2],
            wo: grad[3],
        }
    }

    /// Whether every tap of every output position falls inside the image (stride 1, no
    /// dilation, no leading padding and none used at the end).
    fn all_taps_inside(&self) -> bool {
        self.sh == 1
            && self.sw == 1
            && self.dh == 1
            && self.dw == 1
            && self.ph == 0
            && self.pw == 0
            && self.ho + self.kh <= self.h + 1
            && self.wo + self.kw <= self.w + 1
    }

    /// Whether the input gradient of each image is one GEMM straight into its planes
    /// (`W^T * G_b`): a pointwise convolution (1x1, stride 1, no padding, one group), whose
    /// im2col matrix is the input itself, on maps of at least `DIRECT_X_SPATIAL` positions.
    /// gemm reads `W^T` as it lies (column-major) and packs `G_b` itself, so the pack of the
    /// output gradient, the column block, its scatter back and the zeroing of `dx` all go.
    fn direct_x_grad(&self) -> bool {
        self.pointwise() && self.spatial_out() >= DIRECT_X_SPATIAL
    }

    /// Whether the weight gradient is one GEMM per image on the tensors as they lie
    /// (`dW += G_b * X_b^T`, `X_b^T` column-major so gemm reads it unpacked): a pointwise
    /// convolution on maps of at least `DIRECT_W_SPATIAL` positions (K = one image's
    /// positions must be deep enough to pay for a pass over `dW` per image).
    fn direct_w_grad(&self) -> bool {
        self.pointwise() && self.spatial_out() >= DIRECT_W_SPATIAL
    }

    fn pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.groups == 1
            && self.all_taps_inside()
            && self.ho == self.h
            && self.wo == self.w
    }

    /// Row `r` of the im2col matrix as `(channel, kernel row, kernel column)`.
    fn tap(&self, r: usize) -> (usize, usize, usize) {
        let k_spatial = self.kh * self.kw;
        (r / k_spatial, (r % k_spatial) / self.kw, r % self.kw)
    }

    /// All rows of the im2col matrix of one group as `(c, i, j)`, in order.
    fn taps(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let (kh, kw) = (self.kh, self.kw);
        (0..self.cg).flat_map(move |c| (0..kh).flat_map(move |i| (0..kw).map(move |j| (c, i, j))))
    }

    /// Rows of the im2col matrix of one group: `cg * kh * kw`.
    fn rows(&self) -> usize {
        self.cg * self.kh * self.kw
    }

    fn spatial_out(&self) -> usize {
        self.ho * self.wo
    }

    /// Images per task when a backward pass runs as parallel tasks, one image range per
    /// task with its own im2col block (at most `TASK_ELEMS` unless one image is larger) and
    /// single-threaded GEMMs, at least one task per worker; `None` for one worker or image.
    ///
    /// Small images would fit many to a task; they are spread over `TASKS_PER_WORKER` tasks
    /// per worker instead (two tasks of 16 images left one worker idle whenever the other
    /// was held up), as long as a task keeps at least `MIN_TASK_COLS` output positions: a
    /// GEMM only a few columns wide, and one more partial weight gradient to zero and sum per
    /// task, would cost more than the balance gains (3x3 maps).
    #[cfg(feature = "rayon")]
    fn task_images(&self) -> Option<usize> {
        let workers = threads();
        if workers < 2 || self.batch < 2 {
            return None;
        }
        let per_image = (self.rows() * self.spatial_out()).max(1);
        let balanced = self
            .batch
            .div_ceil(workers * TASKS_PER_WORKER)
            .max(MIN_TASK_COLS.div_ceil(self.spatial_out().max(1)));
        Some((TASK_ELEMS / per_image).min(balanced).clamp(1, self.batch.div_ceil(workers)))
    }

    /// Images per chunk so that the im2col matrix stays under `CHUNK_ELEMS`.
    fn chunk_images(&self) -> usize {
        let per_image = (self.rows() * self.spatial_out()).max(1);
        (CHUNK_ELEMS / per_image).clamp(1, self.batch.max(1))
    }

    /// Range of output positions `q` (along one axis) whose input coordinate
    /// `q * stride + k * dilation - pad` lies inside `0..size`.
    fn valid_range(
        out: usize,
        size: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
    ) -> (usize, usize) {
        let offset = (k * dilation) as isize - pad as isize;
        // first q with q * stride + offset >= 0
        let lo = if offset >= 0 {
            0
        } else {
            ((-offset) as usize).div_ceil(stride)
        };
        // last q with q * stride + offset <= size - 1
        let limit = size as isize - 1 - offset;
        let hi = if limit < 0 {
            0
        } else {
            (limit as usize / stride + 1).min(out)
        };
        (lo.min(hi), hi)
    }
}

fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    {
        if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_GEMM_FLOPS {
            return gemm::Parallelism::Rayon(0);
        }
    }
    let _ = (m, n, k);
    gemm::Parallelism::None
}

/// `dst[m x n] (= or +=) lhs[m x k] * rhs[k x n]`, every operand given by its
/// row stride `rs` and column stride `cs`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided<T: Float + 'static>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    dst_cs: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const T,
    rhs_rs: usize,
    rhs_cs: usize,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    unsafe {
        super::gemm_bf16::gemm(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// A buffer of `len` elements whose every element the caller overwrites before
/// reading it (im2col / pack / GEMM outputs with `accumulate == false`).
pub(crate) fn scratch<T: Float>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: `T` is a plain float type (every bit pattern is a value) and callers
    // write every element before reading it.
    unsafe { v.set_len(len) };
    v
}

/// Packs the output gradient of images `b0..b0+nb`, group `g`, as
/// `[og, nb * ho * wo]` (row stride `nb * ho * wo`).
fn pack_grad<T: Float + Send + Sync>(
    grad: &[T],
    geo: &Geometry,
    g: usize,
    b0: usize,
    nb: usize,
    out: &mut [T],
) {
    let s = geo.spatial_out();
    let ld = nb * s;
    for_each_chunk(&mut out[..geo.og * ld], ld, |o, row| {
        let channel = g * geo.og + o;
        for bi in 0..nb {
            let src = ((b0 + bi) * geo.c_out + channel) * s;
            row[bi * s..(bi + 1) * s].copy_from_slice(&grad[src..src + s]);
        }
    });
}

/// Row `r = (c, i, j)` (given as the triple: the divisions that split `r` would cost
/// more than the copy on small maps) of the im2col matrix of image `b`, group `g`, for output rows
/// `p0..p1`: `dst[(p - p0) * wo + q] = x[b, g*cg + c, p*sh + i*dh - ph, q*sw + j*dw - pw]`,
/// zero where the tap falls outside the image.
#[allow(clippy::too_many_arguments)]
#[inline]
fn im2col_row<T: Float>(
    x: &[T],
    geo: &Geometry,
    g: usize,
    b: usize,
    p0: usize,
    p1: usize,
    (c, i, j): (usize, usize, usize),
    dst: &mut [T],
) {
    let src_plane = (b * geo.c_in + g * geo.cg + c) * geo.h * geo.w;
    if geo.all_taps_inside() {
        if geo.wo == geo.w {
            // output rows as long as the input's (so a kernel one column wide, j == 0): the
            // band is one contiguous run of the plane (pointwise convolutions of small maps)
            let len = (p1 - p0) * geo.wo;
            let start = src_plane + (p0 + i) * geo.w + j;
            copy_row(&mut dst[..len], &x[start..start + len]);
            return;
        }
        // every tap inside the image: rows of the plane, no bounds to work out
        let src = &x[src_plane + i * geo.w + j..];
        for p in p0..p1 {
            let out_row = &mut dst[(p - p0) * geo.wo..(p - p0 + 1) * geo.wo];
            copy_row(out_row, &src[p * geo.w..p * geo.w + geo.wo]);
        }
        return;
    }
    let (p_lo, p_hi) = Geometry::valid_range(geo.ho, geo.h, i, geo.sh, geo.dh, geo.ph);
    let (q_lo, q_hi) = Geometry::valid_range(geo.wo, geo.w, j, geo.sw, geo.dw, geo.pw);
    for p in p0..p1 {
        let out_row = &mut dst[(p - p0) * geo.wo..(p - p0 + 1) * geo.wo];
        if p < p_lo || p >= p_hi || q_lo >= q_hi {
            out_row.fill(T::zero());
            continue;
        }
        let ih = p * geo.sh + i * geo.dh - geo.ph;
        let base = src_plane + ih * geo.w;
        out_row[..q_lo].fill(T::zero());
        out_row[q_hi..].fill(T::zero());
        let iw0 = q_lo * geo.sw + j * geo.dw - geo.pw;
        if geo.sw == 1 {
            let len = q_hi - q_lo;
            copy_row(&mut out_row[q_lo..q_hi], &x[base + iw0..base + iw0 + len]);
        } else {
            for (n, q) in (q_lo..q_hi).enumerate() {
                out_row[q] = x[base + iw0 + n * geo.sw];
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for rows of any length. Short rows (small maps: 9 or 22
/// positions) are copied in fixed-size pieces, the last one overlapping the one before: a
/// call to `memcpy` per row (which is what a copy loop compiles to) costs more than the
/// copy itself.
#[inline(always)]
fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    let len = src.len();
    assert_eq!(dst.len(), len);
    if len >= 64 {
        dst.copy_from_slice(src);
    } else if len >= 8 {
        let mut k = 0;
        while k + 8 <= len {
            let piece: [T; 8] = src[k..k + 8].try_into().unwrap();
            dst[k..k + 8].copy_from_slice(&piece);
            k += 8;
        }
        if k < len {
            let piece: [T; 8] = src[len - 8..].try_into().unwrap();
            dst[len - 8..].copy_from_slice(&piece);
        }
    } else if len >= 4 {
        let head: [T; 4] = src[..4].try_into().unwrap();
        let tail: [T; 4] = src[len - 4..].try_into().unwrap();
        dst[..4].copy_from_slice(&head);
        dst[len - 4..].copy_from_slice(&tail);
    } else {
        for k in 0..len {
            dst[k] = src[k];
        }
    }
}

/// im2col of images `b0..b0+nb`, group `g`: row `(c, i, j)`, column
/// `(bi, p, q)`, row stride `nb * ho * wo`; out-of-image taps are zero.
fn im2col<T: Float + Send + Sync>(
    x: &[T],
    geo: &Geometry,
    g: usize,
    b0: usize,
    nb: usize,
    cols: &mut [T],
) {
    let s = geo.spatial_out();
    let ld = nb * s;
    for_each_chunk(&mut cols[..geo.rows() * ld], ld, |r, row| {
        for bi in 0..nb {
            im2col_row(x, geo, g, b0 + bi, 0, geo.ho, geo.tap(r), &mut row[bi * s..(bi + 1) * s]);
        }
    });
}

/// Adds the im2col-shaped `cols` of `nb` images, group `g`, back into their input
/// gradient planes `region` (`[nb, c_in, h, w]`).
fn col2im<T: Float + Send + Sync>(
    cols: &[T],
    geo: &Geometry,
    g: usize,
    nb: usize,
    region: &mut [T],
) {
    let s = geo.spatial_out();
    let ld = nb * s;
    let plane = geo.h * geo.w;
    for_each_chunk(region, plane, |idx, out| {
        let bi = idx / geo.c_in;
        let channel = idx % geo.c_in;
        if channel / geo.cg != g {
            return;
        }
        let c = channel % geo.cg;
        for i in 0..geo.kh {
            let (p_lo, p_hi) = Geometry::valid_range(geo.ho, geo.h, i, geo.sh, geo.dh, geo.ph);
            for j in 0..geo.kw {
                let (q_lo, q_hi) =
                    Geometry::valid_range(geo.wo, geo.w, j, geo.sw, geo.dw, geo.pw);
                if q_lo >= q_hi {
                    continue;
                }
                let r = (c * geo.kh + i) * geo.kw + j;
                let src = &cols[r * ld + bi * s..r * ld + (bi + 1) * s];
                for p in p_lo..p_hi {
                    let ih = p * geo.sh + i * geo.dh - geo.ph;
                    let iw0 = q_lo * geo.sw + j * geo.dw - geo.pw;
                    let dst_row = &mut out[ih * geo.w..(ih + 1) * geo.w];
                    let src_row = &src[p * geo.wo + q_lo..p * geo.wo + q_hi];
                    if geo.sw == 1 {
                        for (d, v) in dst_row[iw0..iw0 + src_row.len()].iter_mut().zip(src_row) {
                            *d = *d + *v;
                        }
                    } else {
                        for (n, v) in src_row.iter().enumerate() {
                            let d = &mut dst_row[iw0 + n * geo.sw];
                            *d = *d + *v;
                        }
                    }
                }
            }
        }
    });
}

/// Whether the im2col path is the better one for this forward convolution: flex's
/// own 1x1 kernel (no im2col at all, one GEMM per image, images in parallel) and
/// depthwise kernels stay in charge of theirs.
/// Pointwise convolutions of small maps (batches of them) come here too: flex's kernel
/// runs one GEMM per image, which for a 3x3 or 8x8 map is a few positions tall; here
/// several images share one GEMM (see `images_per_task`).
pub(crate) fn prefers_forward(x_shape: &[usize], w_shape: &[usize], options: &ConvOptions<2>) -> bool {
    let pointwise = w_shape[2] == 1
        && w_shape[3] == 1
        && options.stride == [1, 1]
        && options.padding.iter().all(|&(b, e)| b == 0 && e == 0);
    let small_maps = x_shape[0] > 1 && x_shape[2] * x_shape[3] < SMALL_SPATIAL;
    options.groups == 1 && (!pointwise || small_maps)
}

/// 2-D convolution, `[batch, c_out, ho, wo]`; padding may be asymmetric.
pub(crate) fn conv2d_forward_typed<T>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor
where
    T: Float + Element + bytemuck::Pod + Send + Sync + 'static,
{
    let x = x.to_contiguous();
    let weight = weight.to_contiguous();
    let x_shape = x.layout().shape().clone();
    let w_shape = weight.layout().shape().clone();
    let out_size = |axis: usize| {
        let (begin, end) = options.padding[axis];
        let span = options.dilation[axis] * (w_shape[2 + axis] - 1) + 1;
        (x_shape[2 + axis] + begin + end).saturating_sub(span) / options.stride[axis] + 1
    };
    let grad_shape = [x_shape[0], w_shape[0], out_size(0), out_size(1)];
    let geo = Geometry::new(&x_shape, &w_shape, &grad_shape, options);
    let x_data: &[T] = x.storage();
    let w_data: &[T] = weight.storage();

    let bias = bias.map(|b| b.to_contiguous());
    let b_data: Option<&[T]> = bias.as_ref().map(|b| b.storage());
    let mut out = scratch::<T>(geo.batch * geo.c_out * geo.spatial_out());
    forward_tasks(x_data, w_data, b_data, &geo, &mut out);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::from(grad_shape.to_vec())),
        T::dtype(),
    )
}

/// Above this many im2col elements per image, the forward convolution works in
/// bands of output rows (large images, e.g. MTCNN's pyramid levels).
const BAND_THRESHOLD: usize = 1 << 20;

/// Target im2col elements of one band: 64 Ki (256 KiB in f32), cache resident.
const BAND_ELEMS: usize = 1 << 16;

/// Output maps of fewer positions than this are convolved several images per task.
const SMALL_SPATIAL: usize = 256;

/// Target GEMM width (output positions of all its images) of a multi-image task.
const MULTI_COLS: usize = 512;

/// Images per forward task: one unless the output maps are small (e.g. 9x9 or 3x3, where
/// a per-image GEMM is mostly the edge of its 16-position microkernel and its operand
/// packing), then enough for about `MULTI_COLS` positions with at most `BAND_ELEMS * 2` of
/// im2col, keeping at least two tasks per worker.
fn images_per_task(geo: &Geometry) -> usize {
    let s = geo.spatial_out().max(1);
    if geo.batch < 2 || s >= SMALL_SPATIAL {
        return 1;
    }
    let by_cols = MULTI_COLS / s;
    let by_cache = (2 * BAND_ELEMS) / (geo.rows() * s).max(1);
    let by_balance = geo.batch.div_ceil(2 * threads());
    by_cols.min(by_cache).min(by_balance).max(1)
}

/// Raw output pointer shared by tasks that write disjoint regions.
#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);
unsafe impl<T> Send for OutPtr<T> {}
unsafe impl<T> Sync for OutPtr<T> {}

/// Forward convolution as independent (image, group, band of output rows) tasks run in
/// parallel, each building the im2col block of its band (the whole image unless the image
/// is large; then a cache-sized band) and running one single-threaded GEMM that writes
/// straight into its rows of the output, bias included. With fewer tasks than twice the
/// workers the GEMMs themselves run in parallel instead.
///
/// (Per-image GEMMs one after the other, each split over the workers, left the cores
/// idle at the synchronisation points of the many small GEMMs of a batch of small feature
/// maps: 8x8 or 3x3 in Inception-ResNet-v1, 24x24 crops in MTCNN.)
fn forward_tasks<T>(x: &[T], w: &[T], bias: Option<&[T]>, geo: &Geometry, out: &mut [T])
where
    T: Float + Send + Sync + 'static,
{
    let nb = images_per_task(geo);
    if nb > 1 {
        return multi_image_tasks(x, w, bias, geo, nb, out);
    }
    let rows = geo.rows();
    let s = geo.spatial_out();
    let band_elems = if rows * s > BAND_THRESHOLD { BAND_ELEMS } else { usize::MAX };
    let band = (band_elems / (rows * geo.wo).max(1)).clamp(1, geo.ho.max(1));
    let bands = geo.ho.div_ceil(band);
    let tasks = geo.batch * geo.groups * bands;
    // enough tasks to keep every worker busy: one single-threaded GEMM per task
    let parallelism = if tasks >= 2 * threads() {
        gemm::Parallelism::None
    } else {
        parallelism(geo.og, band * geo.wo, rows)
    };
    let out_ptr = OutPtr(out.as_mut_ptr());
    // `cols` is one im2col block, allocated once per worker thread
    let task = move |cols: &mut Vec<T>, t: usize| {
        let out_ptr = out_ptr;
        let (bg, k) = (t / bands, t % bands);
        let (b, g) = (bg / geo.groups, bg % geo.groups);
        let (p0, p1) = (k * band, ((k + 1) * band).min(geo.ho));
        let n = (p1 - p0) * geo.wo;
        for (r, tap) in geo.taps().enumerate() {
            im2col_row(x, geo, g, b, p0, p1, tap, &mut cols[r * n..(r + 1) * n]);
        }
        let dst = unsafe { out_ptr.0.add((b * geo.c_out + g * geo.og) * s + p0 * geo.wo) };
        if let Some(bias) = bias {
            for o in 0..geo.og {
                // SAFETY: rows p0..p1 of plane (b, g*og + o) belong to this task only
                let row = unsafe { core::slice::from_raw_parts_mut(dst.add(o * s), n) };
                row.fill(bias[g * geo.og + o]);
            }
        }
        // out[b, g*og + o, p0.., :] (= bias +) W_g[og x rows] * cols[rows x n]
        unsafe {
            super::gemm_bf16::gemm(
                geo.og,
                n,
                rows,
                dst,
                1,
                s as isize,
                bias.is_some(),
                w.as_ptr().add(g * geo.og * rows),
                1,
                rows as isize,
                cols.as_ptr(),
                1,
                n as isize,
                T::one(),
                T::one(),
                false,
                false,
                false,
                parallelism,
            );
        }
    };
    let block = || scratch::<T>(rows * band * geo.wo);
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each_init(block, task);
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut cols = block();
        (0..tasks).for_each(|t| task(&mut cols, t));
    }
}

/// Forward convolution of small maps as parallel tasks of `nb` images (and one group):
/// their im2col blocks side by side (`[rows, nb * ho * wo]`), one single-threaded GEMM into
/// a scratch block that starts as the bias, then each image's rows copied to the output.
/// Every output element is the same dot product as in the one-image path; up to one GEMM
/// depth block (512 rows) in the same order, so the same bits. Deeper GEMMs may split their
/// depth differently for a different width, which changes the last bits.
fn multi_image_tasks<T>(x: &[T], w: &[T], bias: Option<&[T]>, geo: &Geometry, nb: usize, out: &mut [T])
where
    T: Float + Send + Sync + 'static,
{
    let rows = geo.rows();
    let s = geo.spatial_out();
    let chunks = geo.batch.div_ceil(nb);
    let tasks = geo.groups * chunks;
    let out_ptr = OutPtr(out.as_mut_ptr());
    let task = move |(cols, acc): &mut (Vec<T>, Vec<T>), t: usize| {
        let out_ptr = out_ptr;
        let (g, c) = (t / chunks, t % chunks);
        let b0 = c * nb;
        let nbi = nb.min(geo.batch - b0);
        let ld = nbi * s;
        for (r, tap) in geo.taps().enumerate() {
            let row = &mut cols[r * ld..(r + 1) * ld];
            for bi in 0..nbi {
                im2col_row(x, geo, g, b0 + bi, 0, geo.ho, tap, &mut row[bi * s..(bi + 1) * s]);
            }
        }
        if let Some(bias) = bias {
            for o in 0..geo.og {
                acc[o * ld..(o + 1) * ld].fill(bias[g * geo.og + o]);
            }
        }
        // acc[og x ld] (= bias +) W_g[og x rows] * cols[rows x ld]
        unsafe {
            super::gemm_bf16::gemm(
                geo.og,
                ld,
                rows,
                acc.as_mut_ptr(),
                1,
                ld as isize,
                bias.is_some(),
                w.as_ptr().add(g * geo.og * rows),
                1,
                rows as isize,
                cols.as_ptr(),
                1,
                ld as isize,
                T::one(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for bi in 0..nbi {
            // SAFETY: planes (b0 + bi, g*og .. (g+1)*og) belong to this task only
            let dst = unsafe {
                core::slice::from_raw_parts_mut(
                    out_ptr.0.add(((b0 + bi) * geo.c_out + g * geo.og) * s),
                    geo.og * s,
                )
            };
            for o in 0..geo.og {
                dst[o * s..(o + 1) * s].copy_from_slice(&acc[o * ld + bi * s..o * ld + (bi + 1) * s]);
            }
        }
    };
    let block = || (scratch::<T>(rows * nb * s), scratch::<T>(geo.og * nb * s));
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each_init(block, task);
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut bufs = block();
        (0..tasks).for_each(|t| task(&mut bufs, t));
    }
}

/// Gradient of a 2-D convolution with respect to its weight, `[c_out, c_in/groups, kh, kw]`.
pub(crate) fn conv2d_weight_backward_typed<T>(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor
where
    T: Float + Element + bytemuck::Pod + Send + Sync + 'static,
{
    let x = x.to_contiguous();
    let grad = output_grad.to_contiguous();
    let w_shape = weight.layout().shape().clone();
    let geo = Geometry::new(x.layout().shape(), &w_shape, grad.layout().shape(), options);
    let x_data: &[T] = x.storage();
    let g_data: &[T] = grad.storage();

    #[cfg(feature = "rayon")]
    if let Some(nb) = geo.task_images() {
        let dw = weight_backward_tasks(x_data, g_data, &geo, nb);
        return FlexTensor::new(Bytes::from_elems(dw), Layout::contiguous(w_shape), T::dtype());
    }
    // one image range after the other, each GEMM split over the workers
    let mut dw = vec![T::zero(); geo.c_out * geo.rows()];
    let chunk = geo.chunk_images();
    let mut scratch = RangeScratch::new(&geo, chunk, geo.direct_w_grad());
    for b0 in (0..geo.batch).step_by(chunk) {
        let n = chunk.min(geo.batch - b0);
        weight_grad_range(x_data, g_data, &geo, b0, n, &mut scratch, &mut dw, b0 > 0, true);
    }
    FlexTensor::new(Bytes::from_elems(dw), Layout::contiguous(w_shape), T::dtype())
}

/// Gradient of a 2-D convolution with respect to its input, `[batch, c_in, h, w]`.
pub(crate) fn conv2d_x_backward_typed<T>(
    x: FlexTensor,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor
where
    T: Float + Element + bytemuck::Pod + Send + Sync + 'static,
{
    let x_shape = x.layout().shape().clone();
    let weight = weight.to_contiguous();
    let grad = output_grad.to_contiguous();
    let geo = Geometry::new(&x_shape, weight.layout().shape(), grad.layout().shape(), options);
    let w_data: &[T] = weight.storage();
    let g_data: &[T] = grad.storage();

    let len = geo.batch * geo.c_in * geo.h * geo.w;
    #[cfg(feature = "rayon")]
    if let Some(nb) = geo.task_images() {
        // each task zeroes its own images' planes first (not the caller, on one core)
        let mut dx = scratch(len);
        x_backward_tasks(w_data, g_data, &geo, nb, &mut dx);
        return FlexTensor::new(Bytes::from_elems(dx), Layout::contiguous(x_shape), T::dtype());
    }
    let mut dx = vec![T::zero(); len];
    // one image range after the other, each GEMM split over the workers
    let chunk = geo.chunk_images();
    let img = geo.c_in * geo.h * geo.w;
    let mut scratch = RangeScratch::new(&geo, chunk, geo.direct_x_grad());
    for (t, region) in dx.chunks_mut(chunk * img).enumerate() {
        x_grad_range(w_data, g_data, &geo, t * chunk, &mut scratch, region, true);
    }
    FlexTensor::new(Bytes::from_elems(dx), Layout::contiguous(x_shape), T::dtype())
}

/// Scratch for the backward passes of a range of up to `nb` images: its im2col block
/// (`rows x nb*s`) and its packed output gradient (`og x nb*s`).
struct RangeScratch<T> {
    cols: Vec<T>,
    packed: Vec<T>,
}

impl<T: Float> RangeScratch<T> {
    /// Scratch for `nb` images; none when the pass at hand is `direct` (no im2col block).
    fn new(geo: &Geometry, nb: usize, direct: bool) -> Self {
        if direct {
            return Self { cols: Vec::new(), packed: Vec::new() };
        }
        let s = geo.spatial_out();
        Self { cols: scratch(geo.rows() * nb * s), packed: scratch(geo.og * nb * s) }
    }
}

/// `dW (+)= ` the weight gradient of images `b0..b0+n`, all groups (`dW` overwritten unless
/// `accumulate`); the GEMMs split over the workers when `split`.
#[allow(clippy::too_many_arguments)]
fn weight_grad_range<T: Float + Send + Sync + 'static>(
    x: &[T],
    grad: &[T],
    geo: &Geometry,
    b0: usize,
    n: usize,
    scratch: &mut RangeScratch<T>,
    dw: &mut [T],
    accumulate: bool,
    split: bool,
) {
    let rows = geo.rows();
    let k = n * geo.spatial_out();
    if geo.direct_w_grad() {
        let s = geo.spatial_out();
        let par = if split { parallelism(geo.c_out, geo.c_in, s) } else { gemm::Parallelism::None };
        for bi in 0..n {
            let b = b0 + bi;
            // dW[c_out x c_in] (+)= G_b[c_out x s] * X_b^T[s x c_in]
            unsafe {
                gemm_strided(
                    geo.c_out,
                    geo.c_in,
                    s,
                    dw.as_mut_ptr(),
                    geo.c_in,
                    1,
                    accumulate || bi > 0,
                    grad.as_ptr().add(b * geo.c_out * s),
                    s,
                    1,
                    x.as_ptr().add(b * geo.c_in * s),
                    1,
                    s,
                    par,
                );
            }
        }
        return;
    }
    let par = if split { parallelism(geo.og, rows, k) } else { gemm::Parallelism::None };
    for g in 0..geo.groups {
        im2col(x, geo, g, b0, n, &mut scratch.cols);
        pack_grad(grad, geo, g, b0, n, &mut scratch.packed);
        // dW_g[og x rows] (+)= packed[og x k] * cols^T[k x rows]
        unsafe {
            gemm_strided(
                geo.og,
                rows,
                k,
                dw.as_mut_ptr().add(g * geo.og * rows),
                rows,
                1,
                accumulate,
                scratch.packed.as_ptr(),
                k,
                1,
                scratch.cols.as_ptr(),
                1,
                k,
                par,
            );
        }
    }
}

/// Adds the input gradient of the images `b0..` whose planes `region` holds (a whole number
/// of images, zero on entry; with [`Geometry::direct_x_grad`] they are written instead and
/// may hold anything), all groups; the GEMMs split over the workers when `split`.
fn x_grad_range<T: Float + Send + Sync + 'static>(
    w: &[T],
    grad: &[T],
    geo: &Geometry,
    b0: usize,
    scratch: &mut RangeScratch<T>,
    region: &mut [T],
    split: bool,
) {
    let rows = geo.rows();
    let n = region.len() / (geo.c_in * geo.h * geo.w);
    if geo.direct_x_grad() {
        let s = geo.spatial_out();
        let par = if split { parallelism(geo.c_in, s, geo.c_out) } else { gemm::Parallelism::None };
        for (bi, plane) in region.chunks_mut(geo.c_in * s).enumerate() {
            // dx_b[c_in x s] = W^T[c_in x c_out] * G_b[c_out x s] (the planes' values on
            // entry are not read)
            unsafe {
                gemm_strided(
                    geo.c_in,
                    s,
                    geo.c_out,
                    plane.as_mut_ptr(),
                    s,
                    1,
                    false,
                    w.as_ptr(),
                    1,
                    geo.c_in,
                    grad.as_ptr().add((b0 + bi) * geo.c_out * s),
                    s,
                    1,
                    par,
                );
            }
        }
        return;
    }
    let ld = n * geo.spatial_out();
    let par = if split { parallelism(rows, ld, geo.og) } else { gemm::Parallelism::None };
    for g in 0..geo.groups {
        pack_grad(grad, geo, g, b0, n, &mut scratch.packed);
        // cols[rows x ld] = W_g^T[rows x og] * packed[og x ld]
        unsafe {
            gemm_strided(
                rows,
                ld,
                geo.og,
                scratch.cols.as_mut_ptr(),
                ld,
                1,
                false,
                w.as_ptr().add(g * geo.og * rows),
                1,
                rows,
                scratch.packed.as_ptr(),
                ld,
                1,
                par,
            );
        }
        col2im(&scratch.cols, geo, g, n, region);
    }
}

/// Weight gradient as parallel tasks over image ranges (see [`Geometry::task_images`]): the
/// ranges form at most `TASKS_PER_WORKER` groups per worker, each group accumulates its own
/// partial `dW` with single-threaded GEMMs, then the partials are summed in group order.
/// With a small `c_out x rows` output and a long `K = images x pixels` (the large early
/// layers) one shared GEMM splits its output into too few blocks to keep every worker busy;
/// splitting `K` instead does.
///
/// The groups are fixed by the shapes and the number of workers, so the sums are too: the
/// same inputs give the same bits on every run (a rayon `fold` made one partial per piece
/// its work stealing happened to split off, which made training runs differ in the last
/// bits from one run to the next).
#[cfg(feature = "rayon")]
fn weight_backward_tasks<T>(x: &[T], grad: &[T], geo: &Geometry, nb: usize) -> Vec<T>
where
    T: Float + Send + Sync + 'static,
{
    use rayon::prelude::*;
    let len = geo.c_out * geo.rows();
    let tasks = geo.batch.div_ceil(nb);
    let groups = tasks.min(threads() * TASKS_PER_WORKER).max(1);
    let partials: Vec<Vec<T>> = (0..groups)
        .into_par_iter()
        .map(|gi| {
            let mut scratch = RangeScratch::new(geo, nb, geo.direct_w_grad());
            let mut dw = vec![T::zero(); len];
            for t in gi * tasks / groups..(gi + 1) * tasks / groups {
                let b0 = t * nb;
                let n = nb.min(geo.batch - b0);
                weight_grad_range(x, grad, geo, b0, n, &mut scratch, &mut dw, true, false);
            }
            dw
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![T::zero(); len]);
    for part in parts {
        super::par_chunks::zip_inplace(&mut dw, &part, |a, b| a + b);
    }
    dw
}

/// Input gradient as parallel tasks over image ranges (see [`Geometry::task_images`]): each
/// task zeroes its own images' planes of `dx` (any values on entry), packs their output
/// gradient, runs one single-threaded GEMM and adds the columns back into the planes.
#[cfg(feature = "rayon")]
fn x_backward_tasks<T>(w: &[T], grad: &[T], geo: &Geometry, nb: usize, dx: &mut [T])
where
    T: Float + Send + Sync + 'static,
{
    use rayon::prelude::*;
    let img = geo.c_in * geo.h * geo.w;
    dx.par_chunks_mut(nb * img)
        .enumerate()
        .for_each_init(
            || RangeScratch::new(geo, nb, geo.direct_x_grad()),
            |scratch, (t, region)| {
                if !geo.direct_x_grad() {
                    region.fill(T::zero());
                }
                x_grad_range(w, grad, geo, t * nb, scratch, region, false)
            },
        );
}

/// Gradient of a convolution's bias: the output gradient summed over batch and space.
pub(crate) fn conv_bias_backward_typed<T>(output_grad: FlexTensor, bias_shape: Shape) -> FlexTensor
where
    T: Float + Element + bytemuck::Pod + Send + Sync + 'static,
{
    let grad = output_grad.to_contiguous();
    let shape = grad.layout().shape();
    let batch = shape[0];
    let channels = shape[1];
    let spatial: usize = shape.iter().skip(2).product();
    let g_data: &[T] = grad.storage();
    let mut db = vec![T::zero(); channels];
    for_each_chunk(&mut db, 1, |c, out| {
        let mut acc = T::zero();
        for b in 0..batch {
            let start = (b * channels + c) * spatial;
            acc = g_data[start..start + spatial]
                .iter()
                .fold(acc, |a, v| a + *v);
        }
        out[0] = acc;
    });
    FlexTensor::new(Bytes::from_elems(db), Layout::contiguous(bias_shape), T::dtype())
}

/// Whether `dtype` has a native path here (half types go through f32).
pub(crate) fn is_native(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// Worker threads of the current pool (1 without `rayon`).
pub(crate) fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

