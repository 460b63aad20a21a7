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
    let (dh, dw) = (dilation[0], dilation[1]);
    let data: &[T] = x.storage();
    let len = n * c * oh * ow;
    let mut out: Vec<T> = Vec::with_capacity(len);
    // SAFETY: `T` is a plain float type and `plane` writes every output element.
    unsafe { out.set_len(len) };

    // `rowmax`: one row of per-column maxima, allocated once per worker thread
    let plane = |p: usize, dst: &mut [T], rowmax: &mut Vec<T>| {
        let src = &data[p * h * w..(p + 1) * h * w];
        for (r, rows) in row_taps.iter().enumerate() {
            let out_row = &mut dst[r * ow..(r + 1) * ow];
            if rows.count == 0 {
                out_row.fill(T::neg_infinity());
                continue;
            }
            rowmax.copy_from_slice(&src[rows.first * w..(rows.first + 1) * w]);
            for t in 1..rows.count {
                let ih = rows.first + t * dh;
                for (m, v) in rowmax.iter_mut().zip(&src[ih * w..(ih + 1) * w]) {
                    *m = max_nan(*m, *v);
                }
            }
            for (o, cols) in out_row.iter_mut().zip(&col_taps) {
                let mut m = T::neg_infinity();
                for t in 0..cols.count {
                    m = max_nan(m, rowmax[cols.first + t * dw]);
                }
                *o = m;
            }
        }
    };
    for_each_chunk_with_scratch(&mut out, oh * ow, w, plane);
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(Shape::new([n, c, oh, ow])),
        T::dtype(),
    )
}
