//! 2-D max pooling without indices (inference), separable per output row.
//!
//! flex's generic pooling visits every output element through a 3-D kernel that
//! recomputes its valid window with integer divisions and also produces the
//! argmax indices, even when the caller (`max_pool2d`) drops them. Here each
//! output row first takes the element-wise maximum of its (valid) input rows,
//! which vectorises, then the maximum over the horizontal taps, whose valid range
//! per output column is computed once per call. NaN propagates as in PyTorch.

use alloc::vec::Vec;

use burn_backend::Element;
use burn_std::{Bytes, Shape};
use num_traits::Float;

use super::par_chunks::for_each_chunk_with_scratch;
use crate::{FlexTensor, Layout};

#[inline(always)]
fn max_nan<T: Float>(a: T, b: T) -> T {
    if b > a || b.is_nan() { b } else { a }
}

/// Output size of one axis, with PyTorch's ceil-mode rule (a last window that
/// would start in the trailing padding or past the input is dropped).
fn out_size(input: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> usize {
    let span = d * (k - 1) + 1;
    let padded = input + 2 * p;
    if padded < span {
        return usize::from(ceil);
    }
    let num = padded - span;
    if ceil {
        let out = num.div_ceil(s) + 1;
        if (out - 1) * s >= input + p { out - 1 } else { out }
    } else {
        num / s + 1
    }
}

/// The valid taps of output position `o` on one axis: input coordinates
/// `first, first + d, ...`, `count` of them (they are consecutive taps of the window).
#[derive(Clone, Copy)]
struct Taps {
    first: usize,
    count: usize,
}

fn taps(o: usize, input: usize, k: usize, s: usize, p: usize, d: usize) -> Taps {
    let coord = |t: usize| (o * s + t * d) as isize - p as isize;
    let valid = |t: &usize| coord(*t) >= 0 && (coord(*t) as usize) < input;
    match (0..k).find(valid) {
        Some(lo) => {
            let count = (lo..k).take_while(valid).count();
            Taps { first: coord(lo) as usize, count }
        }
        None => Taps { first: 0, count: 0 },
    }
}

/// Sizes and taps of one pooling call.
struct Geometry {
    w: usize,
    ow: usize,
    dh: usize,
    dw: usize,
    row_taps: Vec<Taps>,
    col_taps: Vec<Taps>,
    /// For stride 2, no padding or dilation, kernel 2 or 3: `(kernel, interior)`, where the
    /// first `interior` output columns have all their taps inside the row.
    pairs: Option<(usize, usize)>,
    /// The kernel size when `plane_flat` applies.
    flat: Option<usize>,
}

/// Planes of at most this many elements may take the whole-plane path (its scratch is
/// twice the plane).
const FLAT_MAX: usize = 1 << 14;

fn stride_two_interior(w: usize, ow: usize, k: usize, s: usize, p: usize, d: usize) -> Option<(usize, usize)> {
    if s != 2 || p != 0 || d != 1 || !(k == 2 || k == 3) || w < k {
        return None;
    }
    // output o covers columns 2o .. 2o + k - 1
    Some((k, ((w - k) / 2 + 1).min(ow)))
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn plane_avx2<T: Float>(g: &Geometry, src: &[T], dst: &mut [T], scratch: &mut [T]) {
    plane_impl(g, src, dst, scratch)
}

/// The element-wise maximum of the input rows `rows` (at least one) into `rowmax`.
#[inline(always)]
fn vertical<T: Float>(g: &Geometry, src: &[T], rows: &Taps, rowmax: &mut [T]) {
    let w = g.w;
    let row = |t: usize| &src[(rows.first + t * g.dh) * w..(rows.first + t * g.dh + 1) * w];
    // one pass over the first (up to) three rows, written whole: an in-place
    // `*m = max(*m, v)` compiles to a masked store, which is slow on some CPUs
    match rows.count {
        1 => rowmax.copy_from_slice(row(0)),
        2 => {
            for ((m, a), b) in rowmax.iter_mut().zip(row(0)).zip(row(1)) {
                *m = max_nan(*a, *b);
            }
        }
        _ => {
            for (((m, a), b), c) in rowmax.iter_mut().zip(row(0)).zip(row(1)).zip(row(2)) {
                *m = max_nan(max_nan(*a, *b), *c);
            }
        }
    }
    for t in 3..rows.count {
        for (m, v) in rowmax.iter_mut().zip(row(t)) {
            *m = max_nan(*m, *v);
        }
    }
}

/// Splits `v` (even length) into its even and odd elements.
#[inline(always)]
fn deinterleave<T: Float>(v: &[T], even: &mut [T], odd: &mut [T]) {
    // eight pairs at a time (fixed sizes: the compiler turns this into shuffles)
    let blocks = v.len() / 16;
    for ((e, o), c) in even.chunks_exact_mut(8).zip(odd.chunks_exact_mut(8)).zip(v.chunks_exact(16)) {
        for i in 0..8 {
            e[i] = c[2 * i];
            o[i] = c[2 * i + 1];
        }
    }
    for ((e, o), pair) in even[blocks * 8..].iter_mut().zip(odd[blocks * 8..].iter_mut()).zip(v[blocks * 16..].chunks_exact(2)) {
        *e = pair[0];
        *o = pair[1];
    }
}

/// A small plane pooled with stride 2 where the output has exactly half the input's
/// (even) width, e.g. 22x22 -> 11x11 or 46x46 -> 23x23 with a 3x3 window in ceil mode:
/// all vertical maxima first (`oh x w`), then, since output `(r, o)` starts at input
/// column `2o` of vertical row `r`, one pass over the whole plane's even and odd columns
/// (output index `r * ow + o` is pair index `r * w/2 + o`), and the last column of each row,
/// whose window is cut by the edge, redone. No per-row loop tails on small maps.
#[inline(always)]
fn plane_flat<T: Float>(g: &Geometry, k: usize, src: &[T], dst: &mut [T], scratch: &mut [T]) {
    let (w, ow) = (g.w, g.ow);
    let oh = g.row_taps.len();
    let half = w / 2;
    let (v, rest) = scratch.split_at_mut(oh * w);
    let (even, odd) = rest.split_at_mut(oh * half + 1);
    for (r, rows) in g.row_taps.iter().enumerate() {
        vertical(g, src, rows, &mut v[r * w..(r + 1) * w]);
    }
    deinterleave(v, even, odd);
    even[oh * half] = T::neg_infinity();
    if k == 2 {
        for ((m, e), o) in dst.iter_mut().zip(&*even).zip(&*odd) {
            *m = max_nan(*e, *o);
        }
        return;
    }
    for (((m, e), o), e1) in dst.iter_mut().zip(&*even).zip(&*odd).zip(&even[1..]) {
        *m = max_nan(max_nan(*e, *o), *e1);
    }
    // the last window of each row holds the row's last two columns only
    for r in 0..oh {
        let i = r * half + ow - 1;
        dst[r * ow + ow - 1] = max_nan(even[i], odd[i]);
    }
}

/// One plane. Each output row takes the element-wise maximum of its valid input rows, then
/// the maximum over each output column's taps. Maxima are taken in tap order (first tap
/// first), as the generic kernel does, so signed zeros and NaNs come out the same.
#[inline(always)]
fn plane_impl<T: Float>(g: &Geometry, src: &[T], dst: &mut [T], scratch: &mut [T]) {
    if let Some(k) = g.flat {
        return plane_flat(g, k, src, dst, scratch);
    }
    let (w, ow) = (g.w, g.ow);
    let (rowmax, phases) = scratch.split_at_mut(w);
    for (r, rows) in g.row_taps.iter().enumerate() {
        let out_row = &mut dst[r * ow..(r + 1) * ow];
        if rows.count == 0 {
            out_row.fill(T::neg_infinity());
            continue;
        }
        vertical(g, src, rows, rowmax);
        let mut done = 0;
        if let Some((k, interior)) = g.pairs {
            // stride 2: the even and odd columns as contiguous rows, so the taps of
            // consecutive outputs are consecutive elements (this vectorises)
            let (even, odd) = phases.split_at_mut(w.div_ceil(2));
            deinterleave(&rowmax[..w & !1], even, odd);
            if w % 2 == 1 {
                even[w / 2] = rowmax[w - 1];
            }
            let head = &mut out_row[..interior];
            if k == 2 {
                for ((m, e), o) in head.iter_mut().zip(&*even).zip(&*odd) {
                    *m = max_nan(*e, *o);
                }
            } else {
                for (((m, e), o), e1) in head.iter_mut().zip(&*even).zip(&*odd).zip(&even[1..]) {
                    *m = max_nan(max_nan(*e, *o), *e1);
                }
            }
            done = interior;
        }
        for (o, cols) in out_row.iter_mut().zip(&g.col_taps).skip(done) {
            let mut m = T::neg_infinity();
            for t in 0..cols.count {
                m = max_nan(m, rowmax[cols.first + t * g.dw]);
            }
            *o = m;
        }
    }
}

pub(crate) fn max_pool2d_typed<T>(
    x: FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> FlexTensor
where
    T: Float + Element + bytemuck::Pod + Send + Sync + Default,
{
    let x = x.to_contiguous();
    let shape = x.layout().shape();
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let oh = out_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode);
    let ow = out_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode);
    let row_taps: Vec<Taps> = (0..oh)
        .map(|o| taps(o, h, kernel[0], stride[0], padding[0], dilation[0]))
        .collect();
    let col_taps: Vec<Taps> = (0..ow)
        .map(|o| taps(o, w, kernel[1], stride[1], padding[1], dilation[1]))
        .collect();
    let pairs = stride_two_interior(w, ow, kernel[1], stride[1], padding[1], dilation[1]);
    // whole-plane path: stride-2 pairs, output exactly half as wide, every output row has
    // input rows, and the last window of a row (k = 3) is the only one cut by the edge
    let flat = pairs
        .filter(|&(k, interior)| {
            w % 2 == 0
                && 2 * ow == w
                && h * w <= FLAT_MAX
                && row_taps.iter().all(|t| t.count > 0)
                && (k == 2 || interior + 1 == ow)
        })
        .map(|(k, _)| k);
    let geo = Geometry {
        w,
        ow,
        dh: dilation[0],
        dw: dilation[1],
        row_taps,
        col_taps,
        pairs,
        flat,
    };
    let data: &[T] = x.storage();
    let len = n * c * oh * ow;
    let mut out: Vec<T> = Vec::with_capacity(len);
    // SAFETY: `T` is a plain float type and `plane` writes every output element.
    unsafe { out.set_len(len) };

    // scratch: one row of per-column maxima and its even/odd columns, once per worker
    let plane = |p: usize, dst: &mut [T], scratch: &mut Vec<T>| {
        let src = &data[p * h * w..(p + 1) * h * w];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked above)
            unsafe { plane_avx2(&geo, src, dst, scratch) };
            return;
        }
        plane_impl(&geo, src, dst, scratch);
    };
    let scratch_len = if geo.flat.is_some() { 2 * oh * w + 2 } else { 2 * w };
    for_each_chunk_with_scratch(&mut out, oh * ow, scratch_len, plane);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::new([n, c, oh, ow])),
        T::dtype(),
    )
}
