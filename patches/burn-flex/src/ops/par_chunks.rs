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
