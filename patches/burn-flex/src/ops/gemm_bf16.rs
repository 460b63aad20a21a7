//! f32 matrix products computed with bf16 inputs and f32 accumulation (AVX-512 BF16,
//! `vdpbf16ps`), the CPU's counterpart of PyTorch's bf16 autocast: both operands are rounded
//! to bf16 (round to nearest even) as they are packed, every product and sum is f32.
//!
//! Chosen process-wide with [`set_gemm_precision`]; [`gemm`] has `gemm::gemm`'s signature and
//! falls back to it for other element types, for other precisions, on CPUs without
//! `avx512_bf16`, and for `alpha`/`beta` the callers here never pass.
//!
//! Layout (BLIS style): blocks of `KC` depth and `NC` columns of the right operand are packed
//! into panels of `NR` columns of bf16 pairs `(b[k][j], b[k+1][j])`; blocks of `MC` rows of the
//! left operand into panels of `MR` rows of pairs `(a[i][k], a[i][k+1])`; the micro-kernel
//! keeps an `MR x NR` f32 tile in 24 registers and does one `vdpbf16ps` per row and 16
//! columns per pair of depths. Every element of the result is summed over the depth in the
//! same order (depth blocks in order, pairs in order) whatever the split among threads, so
//! results are the same bits run to run and for any thread count.

use core::sync::atomic::{AtomicU8, Ordering};

/// What the f32 matrix products of this backend compute with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPrecision {
    /// f32 inputs, f32 accumulation (the default).
    F32,
    /// Inputs rounded to bf16, f32 accumulation, on CPUs with AVX-512 BF16; f32 elsewhere.
    Bf16,
}

static PRECISION: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of every later f32 matrix product of this process (convolutions,
/// matmul). Returns whether the CPU computes in it (bf16 needs `avx512_bf16`; without it the
/// products stay f32).
pub fn set_gemm_precision(p: GemmPrecision) -> bool {
    PRECISION.store(p as u8, Ordering::Relaxed);
    p == GemmPrecision::F32 || bf16_supported()
}

/// The precision set with [`set_gemm_precision`].
pub fn gemm_precision() -> GemmPrecision {
    if PRECISION.load(Ordering::Relaxed) == GemmPrecision::Bf16 as u8 { GemmPrecision::Bf16 } else { GemmPrecision::F32 }
}

/// Whether this CPU has the instructions of the bf16 products (AVX-512 F, BW and BF16).
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `gemm::gemm`: `dst[m x n] = alpha * dst (if read_dst) + beta * lhs[m x k] * rhs[k x n]`,
/// each operand given by its column stride `cs` and row stride `rs`; with bf16 inputs when
/// [`gemm_precision`] is bf16, `T` is f32, the CPU has it, `beta` is 1 and `alpha` is 1
/// (or unread). The conjugation flags are for complex types and must be false.
///
/// # Safety
/// As `gemm::gemm`: the pointers cover every element the strides address.
#[allow(clippy::too_many_arguments)]
#[inline]
pub unsafe fn gemm<T: 'static + Copy>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const T,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const T,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: T,
    beta: T,
    conj_dst: bool,
    conj_lhs: bool,
    conj_rhs: bool,
    parallelism: gemm::Parallelism,
) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f32>() && gemm_precision() == GemmPrecision::Bf16 && bf16_supported() {
            // SAFETY: T is f32
            let (alpha, beta) = unsafe { (*(&alpha as *const T as *const f32), *(&beta as *const T as *const f32)) };
            if beta == 1.0 && (!read_dst || alpha == 1.0) && m > 0 && n > 0 {
                let op = x86::Operands {
                    m,
                    n,
                    k,
                    dst: dst as *mut f32,
                    dst_cs,
                    dst_rs,
                    accumulate: read_dst,
                    lhs: lhs as *const f32,
                    lhs_cs,
                    lhs_rs,
                    rhs: rhs as *const f32,
                    rhs_cs,
                    rhs_rs,
                };
                // SAFETY: the CPU has the features (checked above); the caller's pointers
                unsafe { x86::gemm_bf16(&op, threads_of(parallelism)) };
                return;
            }
        }
    }
    unsafe {
        gemm::gemm(
            m, n, k, dst, dst_cs, dst_rs, read_dst, lhs, lhs_cs, lhs_rs, rhs, rhs_cs, rhs_rs, alpha, beta, conj_dst, conj_lhs, conj_rhs,
            parallelism,
        )
    }
}

fn threads_of(p: gemm::Parallelism) -> usize {
    match p {
        gemm::Parallelism::None => 1,
        #[cfg(feature = "rayon")]
        gemm::Parallelism::Rayon(0) => rayon::current_num_threads(),
        #[cfg(feature = "rayon")]
        gemm::Parallelism::Rayon(n) => n,
        #[allow(unreachable_patterns)]
        _ => 1,
    }
}

/// f32 -> bf16, round to nearest even (NaN stays NaN), as `vcvtne2ps2bf16` does.
pub fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x40;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use core::arch::x86_64::*;

    use super::bf16_bits;

    /// Rows of the micro-kernel's tile.
    const MR: usize = 6;
    /// 16-lane vectors per row of the tile.
    const NV: usize = 4;
    /// Columns of the tile.
    const NR: usize = 16 * NV;
    /// Depth of a block (even).
    const KC: usize = 256;
    /// Rows of a packed block of the left operand (a multiple of `MR`).
    const MC: usize = 20 * MR;
    /// Columns of a packed block of the right operand (a multiple of `NR`).
    const NC: usize = 32 * NR;
    /// Below this many multiply-adds a product runs on one thread.
    const PARALLEL_MIN: usize = 1 << 22;

    /// One product: `dst (+)= lhs * rhs`, strides in elements (see [`super::gemm`]).
    pub(super) struct Operands {
        pub m: usize,
        pub n: usize,
        pub k: usize,
        pub dst: *mut f32,
        pub dst_cs: isize,
        pub dst_rs: isize,
        pub accumulate: bool,
        pub lhs: *const f32,
        pub lhs_cs: isize,
        pub lhs_rs: isize,
        pub rhs: *const f32,
        pub rhs_cs: isize,
        pub rhs_rs: isize,
    }

    // SAFETY: shared among threads that write disjoint parts of `dst` only.
    unsafe impl Send for Operands {}
    unsafe impl Sync for Operands {}

    impl Operands {
        /// The part of the product made of rows `r0..r1` and columns `c0..c1`.
        fn part(&self, r0: usize, r1: usize, c0: usize, c1: usize) -> Operands {
            // SAFETY (of the offsets): inside the ranges the caller's strides address
            unsafe {
                Operands {
                    m: r1 - r0,
                    n: c1 - c0,
                    k: self.k,
                    dst: self.dst.offset(r0 as isize * self.dst_rs + c0 as isize * self.dst_cs),
                    dst_cs: self.dst_cs,
                    dst_rs: self.dst_rs,
                    accumulate: self.accumulate,
                    lhs: self.lhs.offset(r0 as isize * self.lhs_rs),
                    lhs_cs: self.lhs_cs,
                    lhs_rs: self.lhs_rs,
                    rhs: self.rhs.offset(c0 as isize * self.rhs_cs),
                    rhs_cs: self.rhs_cs,
                    rhs_rs: self.rhs_rs,
                }
            }
        }
    }

    /// The whole product, split into `threads` parts of rows or of columns (whole tiles).
    ///
    /// # Safety
    /// The CPU has AVX-512 F, BW and BF16; the operands' pointers and strides are valid.
    pub(super) unsafe fn gemm_bf16(op: &Operands, threads: usize) {
        let parts = if op.m * op.n * op.k.max(1) < PARALLEL_MIN { 1 } else { threads.max(1) };
        if parts == 1 {
            unsafe { gemm_serial(op) };
            return;
        }
        // split the wider dimension, in whole tiles
        let (len, unit) = if op.n >= op.m { (op.n, NR) } else { (op.m, MR) };
        let units = len.div_ceil(unit);
        let per = units.div_ceil(parts);
        let pieces: Vec<Operands> = (0..units.div_ceil(per))
            .map(|p| {
                let (a, b) = (p * per * unit, ((p + 1) * per * unit).min(len));
                if op.n >= op.m { op.part(0, op.m, a, b) } else { op.part(a, b, 0, op.n) }
            })
            .collect();
        #[cfg(feature = "rayon")]
        {
            use rayon::prelude::*;
            pieces.par_iter().for_each(|p| unsafe { gemm_serial(p) });
        }
        #[cfg(not(feature = "rayon"))]
        pieces.iter().for_each(|p| unsafe { gemm_serial(p) });
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn gemm_serial(op: &Operands) {
        if op.k == 0 {
            if !op.accumulate {
                for i in 0..op.m {
                    for j in 0..op.n {
                        unsafe { *op.dst.offset(i as isize * op.dst_rs + j as isize * op.dst_cs) = 0.0 };
                    }
                }
            }
            return;
        }
        // packing buffers of this thread, grown to the largest block seen; packing writes
        // every element a block reads
        thread_local! {
            static PACKS: core::cell::RefCell<(Vec<u32>, Vec<u32>)> = const { core::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        PACKS.with(|packs| {
            let (bpack, apack) = &mut *packs.borrow_mut();
            let kp = KC.min(op.k).div_ceil(2);
            let need_b = NC.min(op.n.div_ceil(NR) * NR) * kp;
            let need_a = MC.min(op.m.div_ceil(MR) * MR) * kp;
            if bpack.len() < need_b {
                bpack.resize(need_b, 0);
            }
            if apack.len() < need_a {
                apack.resize(need_a, 0);
            }
            unsafe { blocks(op, bpack, apack) };
        });
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn blocks(op: &Operands, bpack: &mut [u32], apack: &mut [u32]) {
        let mut tile = [0f32; MR * NR];
        for jc in (0..op.n).step_by(NC) {
            let nc = NC.min(op.n - jc);
            for pc in (0..op.k).step_by(KC) {
                let kc = KC.min(op.k - pc);
                let kp = kc.div_ceil(2);
                unsafe { pack_rhs(op, pc, kc, jc, nc, bpack) };
                let add = op.accumulate || pc > 0;
                for ic in (0..op.m).step_by(MC) {
                    let mc = MC.min(op.m - ic);
                    unsafe { pack_lhs(op, ic, mc, pc, kc, apack) };
                    for jr in (0..nc).step_by(NR) {
                        let b = &bpack[(jr / NR) * kp * NR..];
                        for ir in (0..mc).step_by(MR) {
                            let a = &apack[(ir / MR) * kp * MR..];
                            unsafe { micro_kernel(kp, a.as_ptr(), b.as_ptr(), &mut tile) };
                            let (rows, cols) = (MR.min(mc - ir), NR.min(nc - jr));
                            unsafe { write_tile(op, ic + ir, jc + jr, rows, cols, &tile, add) };
                        }
                    }
                }
            }
        }
    }

    /// `tile[MR x NR] = a-panel * b-panel` over `kp` depth pairs.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    unsafe fn micro_kernel(kp: usize, a: *const u32, b: *const u32, tile: &mut [f32; MR * NR]) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            for p in 0..kp {
                let bp = b.add(p * NR);
                let bv: [__m512bh; NV] = core::array::from_fn(|v| core::mem::transmute(_mm512_loadu_si512(bp.add(16 * v) as *const _)));
                let ap = a.add(p * MR);
                for (i, row) in acc.iter_mut().enumerate() {
                    let av: __m512bh = core::mem::transmute(_mm512_set1_epi32(*ap.add(i) as i32));
                    for v in 0..NV {
                        row[v] = _mm512_dpbf16_ps(row[v], av, bv[v]);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for v in 0..NV {
                    _mm512_storeu_ps(tile.as_mut_ptr().add(i * NR + 16 * v), row[v]);
                }
            }
        }
    }

    /// `dst[r0.., c0..] (+)= tile`, `rows x cols` of it.
    #[inline]
    unsafe fn write_tile(op: &Operands, r0: usize, c0: usize, rows: usize, cols: usize, tile: &[f32; MR * NR], add: bool) {
        for i in 0..rows {
            let d = unsafe { op.dst.offset((r0 + i) as isize * op.dst_rs + c0 as isize * op.dst_cs) };
            let t = &tile[i * NR..i * NR + cols];
            if op.dst_cs == 1 {
                // SAFETY: `cols` consecutive elements of row r0 + i
                let row = unsafe { core::slice::from_raw_parts_mut(d, cols) };
                if add {
                    row.iter_mut().zip(t).for_each(|(d, t)| *d += t);
                } else {
                    row.copy_from_slice(t);
                }
            } else {
                for (j, t) in t.iter().enumerate() {
                    let p = unsafe { d.offset(j as isize * op.dst_cs) };
                    unsafe { *p = if add { *p + t } else { *t } };
                }
            }
        }
    }

    /// Two rows of 16 values -> 16 pairs `(lo[j], hi[j])` of bf16 (round to nearest even).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    unsafe fn interleave_bf16(lo: __m512, hi: __m512) -> __m512i {
        // lanes 0..16: lo, 16..32: hi; then lane 2j <- j, 2j+1 <- 16 + j
        let both: __m512i = unsafe { core::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo)) };
        let idx = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        _mm512_permutexvar_epi16(idx, both)
    }

    /// 32 consecutive values -> their 16 pairs `(x[2p], x[2p+1])` of bf16, in order.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[inline]
    unsafe fn pairs_bf16(x0: __m512, x1: __m512) -> __m512i {
        // lanes 0..16 <- x0, 16..32 <- x1: already consecutive pairs
        unsafe { core::mem::transmute(_mm512_cvtne2ps_pbh(x1, x0)) }
    }

    /// Loads `len <= 16` values `p[0], p[s], ...` (zeros after `len`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16(p: *const f32, s: isize, len: usize) -> __m512 {
        unsafe {
            if s == 1 {
                if len == 16 {
                    return _mm512_loadu_ps(p);
                }
                return _mm512_maskz_loadu_ps(((1u32 << len) - 1) as u16, p);
            }
            let mut v = [0f32; 16];
            for (j, v) in v.iter_mut().enumerate().take(len) {
                *v = *p.offset(j as isize * s);
            }
            _mm512_loadu_ps(v.as_ptr())
        }
    }

    /// Transposes a 16 x 16 matrix of 32-bit values held as 16 rows (also the Winograd
    /// convolution's output tiles).
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) unsafe fn transpose16(r: &mut [__m512i; 16]) {
        // pairs of rows interleaved by 32 then 64 bits: u[4i + c], 128-bit lane L, holds column
        // 4L + c of rows 4i..4i+4
        let t: [__m512i; 16] =
            core::array::from_fn(|x| if x % 2 == 0 { _mm512_unpacklo_epi32(r[x], r[x + 1]) } else { _mm512_unpackhi_epi32(r[x - 1], r[x]) });
        let u: [__m512i; 16] = core::array::from_fn(|x| {
            let (i, c) = (x / 4, x % 4);
            let (a, b) = (t[4 * i + c / 2], t[4 * i + 2 + c / 2]);
            if c % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
        });
        // then the 4 x 4 transposition of 128-bit lanes, for each c
        for c in 0..4 {
            let x0 = _mm512_shuffle_i32x4::<0x44>(u[c], u[4 + c]);
            let x1 = _mm512_shuffle_i32x4::<0xee>(u[c], u[4 + c]);
            let x2 = _mm512_shuffle_i32x4::<0x44>(u[8 + c], u[12 + c]);
            let x3 = _mm512_shuffle_i32x4::<0xee>(u[8 + c], u[12 + c]);
            r[c] = _mm512_shuffle_i32x4::<0x88>(x0, x2);
            r[4 + c] = _mm512_shuffle_i32x4::<0xdd>(x0, x2);
            r[8 + c] = _mm512_shuffle_i32x4::<0x88>(x1, x3);
            r[12 + c] = _mm512_shuffle_i32x4::<0xdd>(x1, x3);
        }
    }

    /// Packs `rhs[pc..pc+kc, jc..jc+nc]` into panels of `NR` columns, each `kp` rows of `NR`
    /// pairs `(rhs[k][j], rhs[k+1][j])`; zeros past the edges.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_rhs(op: &Operands, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [u32]) {
        let kp = kc.div_ceil(2);
        let at = |k: usize, j: usize| unsafe { op.rhs.offset((pc + k) as isize * op.rhs_rs + (jc + j) as isize * op.rhs_cs) };
        for (panel, j0) in (0..nc).step_by(NR).enumerate() {
            let dst = &mut out[panel * kp * NR..(panel + 1) * kp * NR];
            let cols = NR.min(nc - j0);
            if op.rhs_rs == 1 && op.rhs_cs != 1 {
                // depth contiguous (a transposed operand): 16 pairs of each of 16 columns,
                // transposed in registers into 16 rows of 16 columns
                for p0 in (0..kp).step_by(16) {
                    let np = 16.min(kp - p0);
                    let k0 = 2 * p0;
                    let len = (kc - k0).min(32);
                    for jv in (0..NR).step_by(16) {
                        let mut r = [_mm512_setzero_si512(); 16];
                        for (c, r) in r.iter_mut().enumerate() {
                            let j = jv + c;
                            if j < cols {
                                let x0 = unsafe { load16(at(k0, j0 + j), 1, len.min(16)) };
                                let x1 = if len > 16 { unsafe { load16(at(k0 + 16, j0 + j), 1, len - 16) } } else { _mm512_setzero_ps() };
                                *r = unsafe { pairs_bf16(x0, x1) };
                            }
                        }
                        unsafe { transpose16(&mut r) };
                        for (t, r) in r.iter().enumerate().take(np) {
                            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add((p0 + t) * NR + jv) as *mut _, *r) };
                        }
                    }
                }
                continue;
            }
            for p in 0..kp {
                let k = 2 * p;
                for v in 0..NV {
                    let jv = v * 16;
                    let r = unsafe {
                        if jv >= cols {
                            _mm512_setzero_si512()
                        } else {
                            let len = 16.min(cols - jv);
                            let lo = load16(at(k, j0 + jv), op.rhs_cs, len);
                            let hi = if k + 1 < kc { load16(at(k + 1, j0 + jv), op.rhs_cs, len) } else { _mm512_setzero_ps() };
                            interleave_bf16(lo, hi)
                        }
                    };
                    unsafe { _mm512_storeu_si512(dst.as_mut_ptr().add(p * NR + jv) as *mut _, r) };
                }
            }
        }
    }

    /// Packs `lhs[ic..ic+mc, pc..pc+kc]` into panels of `MR` rows, each `kp` groups of `MR`
    /// pairs `(lhs[i][k], lhs[i][k+1])`; zeros past the edges.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn pack_lhs(op: &Operands, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [u32]) {
        let kp = kc.div_ceil(2);
        let at = |i: usize, k: usize| unsafe { op.lhs.offset((ic + i) as isize * op.lhs_rs + (pc + k) as isize * op.lhs_cs) };
        let panels = mc.div_ceil(MR);
        let out = &mut out[..panels * kp * MR];
        if op.lhs_cs == 1 {
            // depth contiguous: 16 pairs of one row per load
            for i in 0..panels * MR {
                let (panel, r) = (i / MR, i % MR);
                let dst = &mut out[panel * kp * MR..];
                for p0 in (0..kp).step_by(16) {
                    let np = 16.min(kp - p0);
                    let mut v = [0u32; 16];
                    if i < mc {
                        let k0 = 2 * p0;
                        let len = (kc - k0).min(32);
                        let x0 = unsafe { load16(at(i, k0), 1, len.min(16)) };
                        let x1 = if len > 16 { unsafe { load16(at(i, k0 + 16), 1, len - 16) } } else { _mm512_setzero_ps() };
                        unsafe { _mm512_storeu_si512(v.as_mut_ptr() as *mut _, pairs_bf16(x0, x1)) };
                    }
                    for (t, v) in v.iter().enumerate().take(np) {
                        dst[(p0 + t) * MR + r] = *v;
                    }
                }
            }
            return;
        }
        if op.lhs_rs == 1 {
            // rows contiguous: per panel and depth pair, the panel's rows from two depth
            // rows (masked loads; rows past `mc` are zeros), stored as MR pairs at once
            let pairs_mask: __mmask32 = (1u32 << (2 * MR)) - 1;
            for panel in 0..panels {
                let i0 = panel * MR;
                let rows: __mmask16 = (1u16 << MR.min(mc - i0)) - 1;
                let dst = out[panel * kp * MR..].as_mut_ptr();
                for p in 0..kp {
                    let k = 2 * p;
                    unsafe {
                        let lo = _mm512_maskz_loadu_ps(rows, at(i0, k));
                        let hi = if k + 1 < kc { _mm512_maskz_loadu_ps(rows, at(i0, k + 1)) } else { _mm512_setzero_ps() };
                        _mm512_mask_storeu_epi16(dst.add(p * MR) as *mut i16, pairs_mask, interleave_bf16(lo, hi));
                    }
                }
            }
            return;
        }
        for i in 0..panels * MR {
            for p in 0..kp {
                let k = 2 * p;
                let pair = if i < mc {
                    let lo = bf16_bits(unsafe { *at(i, k) }) as u32;
                    let hi = if k + 1 < kc { bf16_bits(unsafe { *at(i, k + 1) }) as u32 } else { 0 };
                    lo | (hi << 16)
                } else {
                    0
                };
                out[(i / MR) * kp * MR + p * MR + i % MR] = pair;
            }
        }
    }
}
