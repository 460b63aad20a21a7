//! OpenCV's `cv2.resize(..., interpolation=INTER_AREA)`, reproduced operation by operation so
//! that the reference's MTCNN pyramid levels and R-Net / O-Net crops come out as the same
//! bytes (used by MTCNN alignment and by the streaming PNG decoder of [`crate::data::png_stream`]).
//!
//! - Shrinking (both axes): exact area averaging. Weights are `f32` (OpenCV stores them as
//!   `float`); for `u8` images sums are accumulated in `f32` and rounded half-to-even back to
//!   `u8`, for `f64` images in `f64` without rounding. Integer ratios take OpenCV's fast path
//!   (plain box average; for `u8` at ratio 2 its rounding is `(sum + 2) >> 2`).
//! - Growing (either axis): OpenCV falls back to a bilinear variant with area-style
//!   coefficients; reproduced too (`u8` in OpenCV's 11-bit fixed point, with the rounding of
//!   its vectorised vertical pass).
//!
//! Images are interleaved (`h x w x cn`, row-major), like NumPy arrays.

/// One source position and weight of an area-resampling table.
#[derive(Clone, Copy, Debug)]
struct Tap {
    dst: usize,
    src: usize,
    alpha: f32,
}

/// OpenCV's `computeResizeAreaTab`: for each destination index, the source indices it covers
/// and their coverage weights, in increasing source order.
fn area_table(ssize: usize, dsize: usize, scale: f64) -> Vec<Tap> {
    let mut tab = Vec::with_capacity(ssize * 2);
    for dx in 0..dsize {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx1 = fsx1.ceil() as i64;
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize as i64 - 1);
        sx1 = sx1.min(sx2);
        if sx1 as f64 - fsx1 > 1e-3 {
            tab.push(Tap { dst: dx, src: (sx1 - 1) as usize, alpha: ((sx1 as f64 - fsx1) / cell) as f32 });
        }
        for sx in sx1..sx2 {
            tab.push(Tap { dst: dx, src: sx as usize, alpha: (1.0 / cell) as f32 });
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            tab.push(Tap { dst: dx, src: sx2 as usize, alpha: ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32 });
        }
    }
    tab
}

/// The taps of one destination index: `n` consecutive sources from `src`, weights
/// `alphas[a..a + n]` (an area table's taps of one destination are consecutive).
#[derive(Clone, Copy, Debug, Default)]
struct Span {
    src: usize,
    n: usize,
    a: usize,
}

/// An area table grouped per destination: one [`Span`] per destination index and the
/// weights in the table's order.
struct Spans {
    spans: Vec<Span>,
    alphas: Vec<f32>,
}

impl Spans {
    fn new(ssize: usize, dsize: usize, scale: f64) -> Self {
        let tab = area_table(ssize, dsize, scale);
        let mut spans = vec![Span::default(); dsize];
        for (i, t) in tab.iter().enumerate() {
            let s = &mut spans[t.dst];
            if s.n == 0 {
                *s = Span { src: t.src, n: 0, a: i };
            }
            debug_assert_eq!(s.src + s.n, t.src, "taps of a destination are consecutive");
            s.n += 1;
        }
        Spans { spans, alphas: tab.iter().map(|t| t.alpha).collect() }
    }

    /// The spans for a window whose source index 0 is `offset` in a row of `limit` pixels,
    /// keeping only the taps inside the row. Taps outside read zeros in the reference (a
    /// zero-padded crop), and adding `+0.0 * alpha` to a non-negative sum changes nothing, so
    /// dropping them gives the same values.
    fn clipped(&self, offset: i64, limit: usize) -> Vec<Span> {
        self.spans
            .iter()
            .map(|s| {
                let start = s.src as i64 + offset;
                let lo = start.max(0);
                let hi = (start + s.n as i64).min(limit as i64);
                if lo >= hi {
                    return Span::default();
                }
                Span { src: lo as usize, n: (hi - lo) as usize, a: s.a + (lo - start) as usize }
            })
            .collect()
    }
}

/// Accumulator type of the area passes (`f32` for `u8` images, as OpenCV; `f64` for the
/// float64 crops).
trait Acc: Copy + Default + std::ops::Add<Output = Self> + std::ops::Mul<Output = Self> {
    fn px(v: u8) -> Self;
    fn weight(a: f32) -> Self;
    /// [`hpass`] for 3 channels with the three channels in one SIMD register, when the CPU
    /// has the instructions; `false` if it did nothing.
    fn hpass3_simd(_src: &[u8], _spans: &[Span], _alphas: &[f32], _out: &mut [Self]) -> bool {
        false
    }
}

impl Acc for f32 {
    #[inline(always)]
    fn px(v: u8) -> Self {
        v as f32
    }
    #[inline(always)]
    fn weight(a: f32) -> Self {
        a
    }
    fn hpass3_simd(src: &[u8], spans: &[Span], alphas: &[f32], out: &mut [Self]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("sse4.1") {
            // SAFETY: SSE4.1 is available (checked above)
            unsafe { simd::hpass3_f32(src, spans, alphas, out) };
            return true;
        }
        false
    }
}

impl Acc for f64 {
    #[inline(always)]
    fn px(v: u8) -> Self {
        v as f64
    }
    #[inline(always)]
    fn weight(a: f32) -> Self {
        a as f64
    }
    fn hpass3_simd(src: &[u8], spans: &[Span], alphas: &[f32], out: &mut [Self]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available (checked above)
            unsafe { simd::hpass3_f64(src, spans, alphas, out) };
            return true;
        }
        false
    }
}

/// The 3-channel horizontal pass with a pixel's three channels as lanes of one register
/// (a fourth lane carries the next byte and is dropped). Lane by lane these are the scalar
/// pass's operations (one rounded multiply, one rounded add per tap, in tap order), so the
/// sums are bit-identical.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Span;
    use std::arch::x86_64::*;

    /// The 4 bytes at pixel `i` (its 3 channels and the next byte) as 4 `i32` lanes; the
    /// caller keeps `i` below the row's last pixel (the slice index checks it too).
    #[inline(always)]
    unsafe fn pixel4(src: &[u8], i: usize) -> __m128i {
        let p = src[i * 3..i * 3 + 4].as_ptr() as *const i32;
        _mm_cvtepu8_epi32(_mm_cvtsi32_si128(p.read_unaligned()))
    }

    /// `v * a` for tap `k` of a span (f32 lanes).
    macro_rules! tap_f32 {
        ($src:expr, $s:expr, $al:expr, $k:expr) => {
            _mm_mul_ps(_mm_cvtepi32_ps(pixel4($src, $s.src + $k)), _mm_set1_ps($al[$k]))
        };
    }

    /// `v * a` for tap `k` of a span (f64 lanes).
    macro_rules! tap_f64 {
        ($src:expr, $s:expr, $al:expr, $k:expr) => {
            _mm256_mul_pd(_mm256_cvtepi32_pd(pixel4($src, $s.src + $k)), _mm256_set1_pd($al[$k] as f64))
        };
    }

    // Spans of 1-3 taps (every span of a shrink by less than 2, e.g. the first pyramid levels
    // and most crops) are summed in straight-line code: the sums' dependency chains stay
    // short and independent of each other, with no loop branch to mispredict. The first
    // product starts the sum (`+0.0 + x == x` for the non-negative products). Four lanes are
    // stored at once except for the last destination; the fourth lane lands on the next
    // destination's first channel, which that destination overwrites. One body for both
    // lane types (`tap`, `add`, `store` and the zero of the accumulator's element type).
    macro_rules! hpass3_body {
        ($src:expr, $spans:expr, $alphas:expr, $out:expr, $tap:ident, $add:ident, $store:ident, $zero:expr) => {{
            let (src, spans, alphas, out) = ($src, $spans, $alphas, $out);
            let whole = src.len() / 3;
            let nd = spans.len();
            for (d, s) in spans.iter().enumerate() {
                if s.src + s.n >= whole || s.n == 0 {
                    // the row's last pixel (no 4th byte to read), or no tap at all
                    super::hpass3_one(src, s, alphas, &mut out[d * 3..d * 3 + 3]);
                    continue;
                }
                let al = &alphas[s.a..s.a + s.n];
                let mut acc = $tap!(src, s, al, 0);
                if s.n <= 3 {
                    if s.n >= 2 {
                        acc = $add(acc, $tap!(src, s, al, 1));
                    }
                    if s.n == 3 {
                        acc = $add(acc, $tap!(src, s, al, 2));
                    }
                } else {
                    for k in 1..s.n {
                        acc = $add(acc, $tap!(src, s, al, k));
                    }
                }
                if d + 1 < nd {
                    let o = &mut out[d * 3..d * 3 + 4];
                    $store(o.as_mut_ptr(), acc);
                } else {
                    let mut lanes = [$zero; 4];
                    $store(lanes.as_mut_ptr(), acc);
                    out[d * 3..d * 3 + 3].copy_from_slice(&lanes[..3]);
                }
            }
        }};
    }

    #[target_feature(enable = "sse4.1")]
    pub(super) unsafe fn hpass3_f32(src: &[u8], spans: &[Span], alphas: &[f32], out: &mut [f32]) {
        hpass3_body!(src, spans, alphas, out, tap_f32, _mm_add_ps, _mm_storeu_ps, 0f32)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn hpass3_f64(src: &[u8], spans: &[Span], alphas: &[f32], out: &mut [f64]) {
        hpass3_body!(src, spans, alphas, out, tap_f64, _mm256_add_pd, _mm256_storeu_pd, 0f64)
    }
}

/// One destination of the 3-channel horizontal pass.
#[inline(always)]
fn hpass3_one<A: Acc>(src: &[u8], s: &Span, alphas: &[f32], d: &mut [A]) {
    let (px, al) = (&src[s.src * 3..(s.src + s.n) * 3], &alphas[s.a..s.a + s.n]);
    let (mut a0, mut a1, mut a2) = (A::default(), A::default(), A::default());
    for (p, &a) in px.chunks_exact(3).zip(al) {
        let a = A::weight(a);
        a0 = a0 + A::px(p[0]) * a;
        a1 = a1 + A::px(p[1]) * a;
        a2 = a2 + A::px(p[2]) * a;
    }
    d[0] = a0;
    d[1] = a1;
    d[2] = a2;
}

/// Horizontal area pass of one source row (`cn` interleaved channels): each destination's
/// taps summed in the table's order, as OpenCV's `buf[dx] += S[sx] * alpha` (same operations,
/// same order; the sums live in registers instead of memory).
#[multiversion::multiversion(targets("x86_64+avx+avx2+fma"))]
fn hpass<A: Acc>(src: &[u8], cn: usize, spans: &[Span], alphas: &[f32], out: &mut [A]) {
    if cn == 3 {
        if !A::hpass3_simd(src, spans, alphas, out) {
            for (d, s) in out.chunks_exact_mut(3).zip(spans) {
                hpass3_one(src, s, alphas, d);
            }
        }
        return;
    }
    for (d, s) in out.chunks_exact_mut(cn).zip(spans) {
        d.fill(A::default());
        for (k, &a) in alphas[s.a..s.a + s.n].iter().enumerate() {
            let p = &src[(s.src + k) * cn..(s.src + k + 1) * cn];
            for (o, &v) in d.iter_mut().zip(p) {
                *o = *o + A::px(v) * A::weight(a);
            }
        }
    }
}

/// Vertical area pass: `sum += beta * row`.
#[multiversion::multiversion(targets("x86_64+avx+avx2+fma"))]
fn vpass<A: Acc>(sum: &mut [A], row: &[A], beta: A) {
    for (acc, b) in sum.iter_mut().zip(row) {
        *acc = *acc + beta * *b;
    }
}

/// The ratio `src / dst` and whether it is an integer (OpenCV's `is_area_fast` test).
fn ratio(s: usize, d: usize) -> (f64, Option<usize>) {
    let r = s as f64 / d as f64;
    let i = r.round();
    (r, ((r - i).abs() < f64::EPSILON).then_some(i as usize))
}

macro_rules! area_impl {
    ($name:ident, $t:ty, $wt:ty, $round:expr) => {
        // OpenCV's own signature: source geometry, destination size, scale factors
        #[allow(clippy::too_many_arguments)]
        fn $name(src: &[$t], sw: usize, sh: usize, cn: usize, dw: usize, dh: usize, sx: f64, sy: f64) -> Vec<$t> {
            let xtab = area_table(sw, dw, sx);
            let ytab = area_table(sh, dh, sy);
            let row = dw * cn;
            let mut out = vec![<$t>::default(); dh * row];
            let mut buf = vec![0 as $wt; row];
            let mut sum = vec![0 as $wt; row];
            let round = $round;
            let mut j = 0;
            // a source row feeds up to two consecutive output rows: its horizontal pass is
            // computed once (same values as OpenCV, which recomputes it)
            let mut cached = usize::MAX;
            while j < ytab.len() {
                let dy = ytab[j].dst;
                sum.iter_mut().for_each(|v| *v = 0 as $wt);
                while j < ytab.len() && ytab[j].dst == dy {
                    let beta = ytab[j].alpha as $wt;
                    if ytab[j].src != cached {
                        cached = ytab[j].src;
                        let s = &src[cached * sw * cn..(cached + 1) * sw * cn];
                        buf.iter_mut().for_each(|v| *v = 0 as $wt);
                        if cn == 3 {
                            for t in &xtab {
                                let alpha = t.alpha as $wt;
                                let (d, p) = (&mut buf[t.dst * 3..t.dst * 3 + 3], &s[t.src * 3..t.src * 3 + 3]);
                                d[0] += p[0] as $wt * alpha;
                                d[1] += p[1] as $wt * alpha;
                                d[2] += p[2] as $wt * alpha;
                            }
                        } else {
                            for t in &xtab {
                                let alpha = t.alpha as $wt;
                                for c in 0..cn {
                                    buf[t.dst * cn + c] += s[t.src * cn + c] as $wt * alpha;
                                }
                            }
                        }
                    }
                    for (acc, b) in sum.iter_mut().zip(&buf) {
                        *acc += beta * *b;
                    }
                    j += 1;
                }
                for (o, v) in out[dy * row..(dy + 1) * row].iter_mut().zip(&sum) {
                    *o = round(*v);
                }
            }
            out
        }
    };
}

area_impl!(area_f64, f64, f64, |v: f64| v);

/// How [`AreaShrinkU8`] averages.
enum ShrinkMode {
    /// Integer ratios on both axes (OpenCV's `resizeAreaFast`): exact integer box sums of
    /// the current output row.
    Box { kx: usize, ky: usize, sums: Vec<u32> },
    /// OpenCV's general area averaging over the exact fractional footprint, `f32` weights.
    Table { xspans: Spans, ytab: Vec<Tap>, next_tap: usize, row: Vec<f32>, sum: Vec<f32>, dy: Option<usize> },
}

/// `cv2.resize(..., INTER_AREA)` for shrinking an 8-bit image (`dw <= sw`, `dh <= sh`), fed
/// one source row at a time, top to bottom: the same bytes as [`resize_area_u8`] (which uses
/// it), holding only two rows of sums besides the output. Lets an image too large for memory
/// be downscaled while it is decoded.
pub struct AreaShrinkU8 {
    sw: usize,
    cn: usize,
    dw: usize,
    mode: ShrinkMode,
    /// Index of the next source row.
    next: usize,
    out: Vec<u8>,
}

impl AreaShrinkU8 {
    /// A `sw x sh` image with `cn` channels to `dw x dh`; panics unless `0 < dw <= sw` and
    /// `0 < dh <= sh` (a caller's bug, not bad input).
    pub fn new(sw: usize, sh: usize, cn: usize, dw: usize, dh: usize) -> Self {
        assert!(dw > 0 && dh > 0 && dw <= sw && dh <= sh, "area shrink {sw}x{sh} -> {dw}x{dh}");
        let ((rx, ix), (ry, iy)) = (ratio(sw, dw), ratio(sh, dh));
        let mode = match (ix, iy) {
            (Some(kx), Some(ky)) => ShrinkMode::Box { kx, ky, sums: vec![0; dw * cn] },
            _ => ShrinkMode::Table {
                xspans: Spans::new(sw, dw, rx),
                ytab: area_table(sh, dh, ry),
                next_tap: 0,
                row: vec![0.0; dw * cn],
                sum: vec![0.0; dw * cn],
                dy: None,
            },
        };
        AreaShrinkU8 { sw, cn, dw, mode, next: 0, out: vec![0; dw * dh * cn] }
    }

    /// Adds the next source row (`sw * cn` bytes).
    pub fn push_row(&mut self, src: &[u8]) {
        debug_assert_eq!(src.len(), self.sw * self.cn);
        let (r, cn, width) = (self.next, self.cn, self.dw * self.cn);
        self.next += 1;
        match &mut self.mode {
            ShrinkMode::Box { kx, ky, sums } => {
                let kx = *kx;
                for (s, block) in sums.chunks_exact_mut(cn).zip(src.chunks_exact(kx * cn)) {
                    for px in block.chunks_exact(cn) {
                        for (acc, &v) in s.iter_mut().zip(px) {
                            *acc += v as u32;
                        }
                    }
                }
                if (r + 1) % *ky == 0 {
                    let dy = r / *ky;
                    let area = kx * *ky;
                    let scale = 1.0f32 / area as f32;
                    let halves = kx == 2 && area == 4 && matches!(cn, 1 | 3 | 4);
                    for (o, s) in self.out[dy * width..(dy + 1) * width].iter_mut().zip(sums.iter_mut()) {
                        // OpenCV rounds the 2x2 case in integers
                        *o = if halves { ((*s + 2) >> 2) as u8 } else { round_u8(*s as f32 * scale) };
                        *s = 0;
                    }
                }
            }
            ShrinkMode::Table { xspans, ytab, next_tap, row, sum, dy } => {
                if ytab.get(*next_tap).is_none_or(|t| t.src != r) {
                    return;
                }
                hpass(src, cn, &xspans.spans, &xspans.alphas, row);
                while let Some(t) = ytab.get(*next_tap).filter(|t| t.src == r) {
                    if *dy != Some(t.dst) {
                        if let Some(d) = *dy {
                            store_row(&mut self.out[d * width..(d + 1) * width], sum);
                        }
                        sum.iter_mut().for_each(|v| *v = 0.0);
                        *dy = Some(t.dst);
                    }
                    vpass(sum, row, t.alpha);
                    *next_tap += 1;
                }
            }
        }
    }

    /// The shrunk image (`dh x dw x cn`); rows never fed stay black.
    pub fn finish(mut self) -> Vec<u8> {
        if let ShrinkMode::Table { sum, dy: Some(d), .. } = &self.mode {
            let width = self.dw * self.cn;
            store_row(&mut self.out[d * width..(d + 1) * width], sum);
        }
        self.out
    }
}

/// OpenCV's saturating round half to even.
fn round_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

// (with SSE4.1 the rounding is one instruction instead of a call to libm's `rintf`)
#[multiversion::multiversion(targets("x86_64+avx+avx2+fma", "x86_64+sse4.1"))]
fn store_row(out: &mut [u8], sum: &[f32]) {
    for (o, v) in out.iter_mut().zip(sum) {
        *o = round_u8(*v);
    }
}

fn area_fast_f64(src: &[f64], sw: usize, cn: usize, dw: usize, dh: usize, kx: usize, ky: usize) -> Vec<f64> {
    let mut out = vec![0.0; dh * dw * cn];
    let scale = (1.0f32 / (kx * ky) as f32) as f64;
    for dy in 0..dh {
        for dx in 0..dw {
            for c in 0..cn {
                let mut sum = 0.0;
                for yy in 0..ky {
                    let r = (dy * ky + yy) * sw * cn;
                    for xx in 0..kx {
                        sum += src[r + (dx * kx + xx) * cn + c];
                    }
                }
                out[(dy * dw + dx) * cn + c] = sum * scale;
            }
        }
    }
    out
}

/// Source index and fraction of OpenCV's area-mode linear coefficients along one axis
/// (used when that axis, or the other, grows).
fn linear_area_coeffs(ssize: usize, dsize: usize) -> Vec<(usize, f32, bool)> {
    let scale = ssize as f64 / dsize as f64;
    let inv = dsize as f64 / ssize as f64;
    (0..dsize)
        .map(|d| {
            let mut s = (d as f64 * scale).floor() as i64;
            let mut f = ((d + 1) as f64 - (s + 1) as f64 * inv) as f32;
            f = if f <= 0.0 { 0.0 } else { f - f.floor() };
            // last column: a single tap (OpenCV's `xmax`)
            let single = s + 1 >= ssize as i64;
            if s >= ssize as i64 - 1 {
                f = 0.0;
                s = ssize as i64 - 1;
            }
            (s.max(0) as usize, f, single)
        })
        .collect()
}

fn linear_u8(src: &[u8], sw: usize, sh: usize, cn: usize, dw: usize, dh: usize) -> Vec<u8> {
    const ONE: i32 = 2048;
    let xs = linear_area_coeffs(sw, dw);
    let ys = linear_area_coeffs(sh, dh);
    let fixed = |f: f32| (f * ONE as f32).round_ties_even() as i32;
    let hrow = |r: usize| -> Vec<i32> {
        let s = &src[r * sw * cn..(r + 1) * sw * cn];
        let mut out = vec![0i32; dw * cn];
        for (dx, &(sx, f, single)) in xs.iter().enumerate() {
            for c in 0..cn {
                out[dx * cn + c] = if single {
                    s[sx * cn + c] as i32 * ONE
                } else {
                    s[sx * cn + c] as i32 * fixed(1.0 - f) + s[(sx + 1) * cn + c] as i32 * fixed(f)
                };
            }
        }
        out
    };
    let mut out = vec![0u8; dh * dw * cn];
    for (dy, &(sy, f, _)) in ys.iter().enumerate() {
        let r0 = hrow(sy.min(sh - 1));
        let r1 = hrow((sy + 1).min(sh - 1));
        let (b0, b1) = (fixed(1.0 - f), fixed(f));
        for x in 0..dw * cn {
            // OpenCV's vectorised vertical pass (what runs for all but a few tail pixels):
            // 16-bit products of the rows shifted by 4, high halves, then a rounding shift.
            let t0 = ((r0[x] >> 4) as i16 as i32 * b0) >> 16;
            let t1 = ((r1[x] >> 4) as i16 as i32 * b1) >> 16;
            out[dy * dw * cn + x] = ((t0 + t1 + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    out
}

fn linear_f64(src: &[f64], sw: usize, sh: usize, cn: usize, dw: usize, dh: usize) -> Vec<f64> {
    let xs = linear_area_coeffs(sw, dw);
    let ys = linear_area_coeffs(sh, dh);
    let hrow = |r: usize| -> Vec<f64> {
        let s = &src[r * sw * cn..(r + 1) * sw * cn];
        let mut out = vec![0.0; dw * cn];
        for (dx, &(sx, f, single)) in xs.iter().enumerate() {
            let (a0, a1) = ((1.0 - f) as f64, f as f64);
            for c in 0..cn {
                out[dx * cn + c] = if single { s[sx * cn + c] } else { s[sx * cn + c] * a0 + s[(sx + 1) * cn + c] * a1 };
            }
        }
        out
    };
    let mut out = vec![0.0; dh * dw * cn];
    for (dy, &(sy, f, _)) in ys.iter().enumerate() {
        let r0 = hrow(sy.min(sh - 1));
        let r1 = hrow((sy + 1).min(sh - 1));
        let (b0, b1) = ((1.0 - f) as f64, f as f64);
        for x in 0..dw * cn {
            out[dy * dw * cn + x] = r0[x] * b0 + r1[x] * b1;
        }
    }
    out
}

/// `cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)` for an 8-bit image.
pub fn resize_area_u8(src: &[u8], sw: usize, sh: usize, cn: usize, dw: usize, dh: usize) -> Vec<u8> {
    assert_eq!(src.len(), sw * sh * cn, "image buffer size");
    assert!(sw > 0 && sh > 0 && dw > 0 && dh > 0, "empty resize");
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let (rx, ry) = (ratio(sw, dw).0, ratio(sh, dh).0);
    if rx >= 1.0 && ry >= 1.0 {
        let mut shrink = AreaShrinkU8::new(sw, sh, cn, dw, dh);
        src.chunks_exact(sw * cn).for_each(|row| shrink.push_row(row));
        return shrink.finish();
    }
    linear_u8(src, sw, sh, cn, dw, dh)
}

/// `cv2.resize(img, (dw, dh), interpolation=cv2.INTER_AREA)` for a float64 image.
pub fn resize_area_f64(src: &[f64], sw: usize, sh: usize, cn: usize, dw: usize, dh: usize) -> Vec<f64> {
    assert_eq!(src.len(), sw * sh * cn, "image buffer size");
    assert!(sw > 0 && sh > 0 && dw > 0 && dh > 0, "empty resize");
    if (sw, sh) == (dw, dh) {
        return src.to_vec();
    }
    let (rx, ix) = ratio(sw, dw);
    let (ry, iy) = ratio(sh, dh);
    if rx >= 1.0 && ry >= 1.0 {
        if let (Some(kx), Some(ky)) = (ix, iy) {
            return area_fast_f64(src, sw, cn, dw, dh, kx, ky);
        }
        return area_f64(src, sw, sh, cn, dw, dh, rx, ry);
    }
    linear_f64(src, sw, sh, cn, dw, dh)
}

/// `cv2.resize(crop, (dw, dh), interpolation=cv2.INTER_AREA)` of the float64 crop that
/// covers the window `x, y, cw x ch` of an 8-bit image (`w x h x cn`), zeros where the window
/// leaves the image (the reference's padded crop), for windows at least as large as the
/// output (shrinking, or the same size); `None` otherwise.
///
/// The same values as building the crop and calling [`resize_area_f64`], read straight from
/// the image: the sums run in the same order, and the zeros outside the image, which add
/// `+0.0` to non-negative sums, are skipped.
pub fn resize_window_area_f64(
    img: &[u8],
    (w, h, cn): (usize, usize, usize),
    (x, y, cw, ch): (i64, i64, usize, usize),
    dw: usize,
    dh: usize,
) -> Option<Vec<f64>> {
    assert_eq!(img.len(), w * h * cn, "image buffer size");
    if cw < dw || ch < dh || dw == 0 || dh == 0 {
        return None;
    }
    let row_of = |r: usize| -> Option<&[u8]> {
        let iy = y + r as i64;
        (0..h as i64).contains(&iy).then(|| &img[iy as usize * w * cn..(iy as usize + 1) * w * cn])
    };
    let mut out = vec![0f64; dh * dw * cn];
    let (ix, iy) = (ratio(cw, dw).1, ratio(ch, dh).1);
    if (cw, ch) == (dw, dh) || (ix.is_some() && iy.is_some()) {
        // a plain copy, or OpenCV's integer-ratio box average
        let (kx, ky) = (ix.unwrap_or(1), iy.unwrap_or(1));
        let copy = (cw, ch) == (dw, dh);
        let scale = (1.0f32 / (kx * ky) as f32) as f64;
        let mut sums = vec![0f64; dw * cn];
        for dy in 0..dh {
            sums.fill(0.0);
            for yy in 0..ky {
                let Some(src) = row_of(dy * ky + yy) else { continue };
                for (dx, acc) in sums.chunks_exact_mut(cn).enumerate() {
                    for xx in 0..kx {
                        let sx = x + (dx * kx + xx) as i64;
                        if (0..w as i64).contains(&sx) {
                            for (a, &v) in acc.iter_mut().zip(&src[sx as usize * cn..(sx as usize + 1) * cn]) {
                                *a += v as f64;
                            }
                        }
                    }
                }
            }
            let dst = &mut out[dy * dw * cn..(dy + 1) * dw * cn];
            for (o, v) in dst.iter_mut().zip(&sums) {
                *o = if copy { *v } else { *v * scale };
            }
        }
        return Some(out);
    }
    let xs = Spans::new(cw, dw, ratio(cw, dw).0);
    let xspans = xs.clipped(x, w);
    let ytab = area_table(ch, dh, ratio(ch, dh).0);
    let mut buf = vec![0f64; dw * cn];
    let mut cached = usize::MAX;
    let mut taps = ytab.iter().peekable();
    for (dy, dst) in out.chunks_exact_mut(dw * cn).enumerate() {
        while let Some(t) = taps.next_if(|t| t.dst == dy) {
            // rows outside the image are zeros: nothing to add
            let Some(src) = row_of(t.src) else { continue };
            if t.src != cached {
                cached = t.src;
                hpass(src, cn, &xspans, &xs.alphas, &mut buf);
            }
            vpass(dst, &buf, t.alpha as f64);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_average_of_fractional_cells() {
        // 3 -> 2 columns: each output covers 1.5 pixels
        let src = [0u8, 100, 200];
        let out = resize_area_u8(&src, 3, 1, 1, 2, 1);
        // (0 * 1 + 100 * 0.5) / 1.5 = 33.3, (100 * 0.5 + 200) / 1.5 = 166.7
        assert_eq!(out, vec![33, 167]);
        let f = resize_area_f64(&[0.0, 100.0, 200.0], 3, 1, 1, 2, 1);
        assert!((f[0] - 100.0 / 3.0).abs() < 1e-5 && (f[1] - 500.0 / 3.0).abs() < 1e-5);
    }

    #[test]
    fn fast_path_rounding() {
        // 2x2 -> 1x1, sum 10: OpenCV's vector path rounds half up (3), not to even (2)
        assert_eq!(resize_area_u8(&[1, 2, 3, 4], 2, 2, 1, 1, 1), vec![3]);
        // 3x3 -> 1x1: sum 13 times a float 1/9
        assert_eq!(resize_area_u8(&[1, 1, 1, 1, 1, 1, 1, 1, 5], 3, 3, 1, 1, 1), vec![1]);
        let f = resize_area_f64(&[1.0, 2.0, 3.0, 4.0], 2, 2, 1, 1, 1);
        assert_eq!(f, vec![2.5]);
    }

    #[test]
    fn same_size_is_a_copy_and_channels_stay_apart() {
        let src: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_area_u8(&src, 3, 2, 3, 3, 2), src);
        // 4x1 RGB -> 2x1: each output is the mean of two pixels, per channel
        let src = [10u8, 20, 30, 12, 22, 32, 100, 0, 50, 102, 2, 52];
        assert_eq!(resize_area_u8(&src, 4, 1, 3, 2, 1), vec![11, 21, 31, 101, 1, 51]);
    }

    #[test]
    fn growing_interpolates() {
        // 2 -> 4 pixels in area mode: OpenCV's coefficients give a step, not a ramp
        let out = resize_area_f64(&[0.0, 100.0], 2, 1, 1, 4, 1);
        assert_eq!(out, vec![0.0, 0.0, 100.0, 100.0]);
        let out = resize_area_f64(&[0.0, 90.0], 2, 1, 1, 3, 1);
        // dx=1: sx=0, fx = 2 - 1.5 = 0.5 -> 45
        assert_eq!(out, vec![0.0, 45.0, 90.0]);
        let out = resize_area_u8(&[0, 90], 2, 1, 1, 3, 1);
        assert_eq!(out, vec![0, 45, 90]);
    }

    #[test]
    fn window_resize_equals_padded_crop_resize() {
        // every shrink case (copy, integer box, fractional table) with windows inside, across
        // and outside the image borders: bit-identical to the padded crop's resize
        let (w, h) = (37usize, 29usize);
        let img: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919 + i / 5) % 256) as u8).collect();
        let crop = |x: i64, y: i64, cw: usize, ch: usize| -> Vec<f64> {
            let mut out = vec![0f64; cw * ch * 3];
            for r in 0..ch {
                for c in 0..cw {
                    let (ix, iy) = (x + c as i64, y + r as i64);
                    if (0..w as i64).contains(&ix) && (0..h as i64).contains(&iy) {
                        for k in 0..3 {
                            out[(r * cw + c) * 3 + k] = img[(iy as usize * w + ix as usize) * 3 + k] as f64;
                        }
                    }
                }
            }
            out
        };
        let mut checked = 0;
        for (cw, ch) in [(24, 24), (48, 48), (72, 48), (25, 31), (40, 40), (13, 50), (60, 26)] {
            for (x, y) in [(0, 0), (-5, -7), (20, 10), (-30, 3), (30, 25), (-60, -60), (5, -20)] {
                for size in [12usize, 24] {
                    let Some(got) = resize_window_area_f64(&img, (w, h, 3), (x, y, cw, ch), size, size) else {
                        assert!(cw < size || ch < size);
                        continue;
                    };
                    let want = resize_area_f64(&crop(x, y, cw, ch), cw, ch, 3, size, size);
                    assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{cw}x{ch} at {x},{y} -> {size}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 60);
        assert!(resize_window_area_f64(&img, (w, h, 3), (0, 0, 10, 30), 12, 12).is_none());
    }
}
