//! Parallel loops over the fixed-size pieces of a buffer, shared by the conv2d_im2col,
//! batch_norm and max_pool2d kernels (sequential without the `rayon` feature).

use alloc::vec::Vec;

/// Runs `f(index, piece)` over the `len`-sized pieces of `data`.
pub(crate) fn for_each_chunk<T: Send, F>(data: &mut [T], len: usize, f: F)
where
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    for_each_chunk_with_scratch(data, len, 0, |i, piece, _: &mut Vec<u8>| f(i, piece));
}

/// Runs `f(index, piece, scratch)` over the `len`-sized pieces of `data`, where `scratch`
/// is a buffer of at least `scratch_len` elements allocated once per worker, not per piece
/// (its contents are whatever the previous piece left).
pub(crate) fn for_each_chunk_with_scratch<T: Send, S: Send, F>(
    data: &mut [T],
    len: usize,
    scratch_len: usize,
    f: F,
) where
    S: Default + Clone,
    F: Fn(usize, &mut [T], &mut Vec<S>) + Send + Sync,
{
    if len == 0 {
        return;
    }
    let init = || alloc::vec![S::default(); scratch_len];
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        data.par_chunks_mut(len)
            .enumerate()
            .for_each_init(init, |s, (i, piece)| f(i, piece, s));
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut s = init();
        data.chunks_mut(len)
            .enumerate()
            .for_each(|(i, piece)| f(i, piece, &mut s));
    }
}

/// Element-wise passes over at least this many elements run as parallel pieces: on a few
/// cores a memory-bound pass over 128 Ki elements (~100 us) gains more than the few
/// microseconds a parallel loop costs to start.
pub(crate) const ELEMWISE_PAR_MIN: usize = 1 << 17;

/// Elements per parallel piece of an element-wise pass.
const ELEMWISE_PIECE: usize = 1 << 14;

/// Runs `f(offset, piece)` over pieces of `data`, in parallel for large buffers and as one
/// piece (`offset` 0) on the calling thread otherwise.
pub(crate) fn for_each_piece<T: Send, F>(data: &mut [T], f: F)
where
    F: Fn(usize, &mut [T]) + Send + Sync,
{
    #[cfg(feature = "rayon")]
    if data.len() >= ELEMWISE_PAR_MIN {
        use rayon::prelude::*;
        data.par_chunks_mut(ELEMWISE_PIECE)
            .enumerate()
            .for_each(|(i, piece)| f(i * ELEMWISE_PIECE, piece));
        return;
    }
    f(0, data);
}

/// `x = op(x)` for every element.
pub(crate) fn map_inplace<E: Copy + Send, Op>(data: &mut [E], op: Op)
where
    Op: Fn(E) -> E + Send + Sync,
{
    for_each_piece(data, |_, piece| {
        for x in piece.iter_mut() {
            *x = op(*x);
        }
    });
}

/// `dst[i] = op(dst[i], src[i])`; `src` at least as long as `dst`.
pub(crate) fn zip_inplace<E: Copy + Send, R: Copy + Sync, Op>(dst: &mut [E], src: &[R], op: Op)
where
    Op: Fn(E, R) -> E + Send + Sync,
{
    let src = &src[..dst.len()];
    for_each_piece(dst, |off, piece| {
        let src = &src[off..off + piece.len()];
        for (d, &s) in piece.iter_mut().zip(src) {
            *d = op(*d, s);
        }
    });
}

/// A new buffer of `n` elements, filled piece by piece: `fill(offset, piece)` writes every
/// element of its piece.
pub(crate) fn collect_pieces<R: Send, F>(n: usize, fill: F) -> Vec<R>
where
    F: Fn(usize, &mut [core::mem::MaybeUninit<R>]) + Send + Sync,
{
    let mut out: Vec<R> = Vec::with_capacity(n);
    for_each_piece(&mut out.spare_capacity_mut()[..n], fill);
    // SAFETY: `fill` initialised every element of every piece, which together are the
    // first `n` elements.
    unsafe { out.set_len(n) };
    out
}

/// A new buffer of `n` copies of `value`, filled in parallel pieces when it is large (a
/// `vec![value; n]` is one thread's memset, e.g. the zeros of a slice's gradient).
pub(crate) fn filled<R: Copy + Send + Sync>(n: usize, value: R) -> Vec<R> {
    collect_pieces(n, |_, piece| piece.fill(core::mem::MaybeUninit::new(value)))
}

/// `op(x)` for every element of `src`, as a new buffer.
pub(crate) fn map_collect<E: Copy + Sync, R: Send, Op>(src: &[E], op: Op) -> Vec<R>
where
    Op: Fn(E) -> R + Send + Sync,
{
    collect_pieces(src.len(), |off, piece| {
        let src = &src[off..off + piece.len()];
        for (d, &s) in piece.iter_mut().zip(src) {
            d.write(op(s));
        }
    })
}

/// `op(a[i], b[i])` for every element, as a new buffer; `a` and `b` the same length.
pub(crate) fn zip_collect<E: Copy + Sync, R: Send, Op>(a: &[E], b: &[E], op: Op) -> Vec<R>
where
    Op: Fn(E, E) -> R + Send + Sync,
{
    assert_eq!(a.len(), b.len());
    collect_pieces(a.len(), |off, piece| {
        let (a, b) = (&a[off..off + piece.len()], &b[off..off + piece.len()]);
        for ((d, &x), &y) in piece.iter_mut().zip(a).zip(b) {
            d.write(op(x, y));
        }
    })
}
