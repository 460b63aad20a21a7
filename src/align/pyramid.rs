//! The image pyramid of MTCNN's first stage: the scales the reference uses and the size of
//! each level. The levels themselves are resampled with OpenCV's `INTER_AREA`
//! ([`crate::data::resample`]), as are the R-Net / O-Net crops.

/// Pyramid scales: `12 / min_face_size` times `factor^k` while the shorter side, scaled,
/// stays at least 12 pixels (P-Net's input size).
pub fn scales(h: usize, w: usize, min_face_size: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_face_size;
    let mut minl = h.min(w) as f64 * m;
    let mut out = Vec::new();
    let mut k = 0i32;
    // `minl` shrinks by repeated multiplication while the scale is `m * factor^k` computed
    // with `pow`, exactly as in the reference (the two can differ in the last bit).
    while minl >= 12.0 && k < 1000 {
        out.push(m * factor.powf(k as f64));
        minl *= factor;
        k += 1;
    }
    out
}

/// Size `(h, w)` of a pyramid level: `ceil(h * scale) x ceil(w * scale)`.
pub fn level_size(h: usize, w: usize, scale: f64) -> (usize, usize) {
    ((h as f64 * scale).ceil() as usize, (w as f64 * scale).ceil() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_follow_the_reference_loop() {
        // 100 x 100, min face 20: 0.6 * 0.709^k while 60 * 0.709^k >= 12
        let s = scales(100, 100, 20.0, 0.709);
        assert_eq!(s.len(), 5);
        assert!((s[0] - 0.6).abs() < 1e-15);
        assert!((s[4] - 0.6 * 0.709f64.powi(4)).abs() < 1e-12);
        assert!(scales(19, 500, 20.0, 0.709).is_empty());
        assert_eq!(scales(20, 500, 20.0, 0.709).len(), 1);
        assert_eq!(level_size(886, 1280, 0.6), (532, 768));
        assert_eq!(level_size(5, 5, 0.6), (3, 3));
    }
}
