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

/// [`scales`] without the levels of more than `max_pixels` pixels. Only a minimum face size
/// under 12 pixels enlarges the image (by up to 12x per side); on a large image such levels
/// would take gigabytes, so faces that small are not searched for there.
pub fn scales_within(h: usize, w: usize, min_face_size: f64, factor: f64, max_pixels: usize) -> Vec<f64> {
    let fits = |&s: &f64| {
        let (hs, ws) = level_size(h, w, s);
        hs.saturating_mul(ws) <= max_pixels
    };
    scales(h, w, min_face_size, factor).into_iter().filter(fits).collect()
}

/// Size `(h, w)` of a pyramid level: `ceil(h * scale) x ceil(w * scale)`.
pub fn level_size(h: usize, w: usize, scale: f64) -> (usize, usize) {
    ((h as f64 * scale).ceil() as usize, (w as f64 * scale).ceil() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enlarging_levels_are_capped() {
        // a 1 x 1 minimum face enlarges 12x: 1000 x 1000 -> 12000 x 12000 first
        let all = scales(1000, 1000, 1.0, 0.709);
        assert_eq!(all[0], 12.0);
        let capped = scales_within(1000, 1000, 1.0, 0.709, 4096 * 4096);
        assert!(capped.len() < all.len() && capped[0] <= 4.096, "{capped:?}");
        assert_eq!(&all[all.len() - capped.len()..], &capped[..]);
        // the default minimum face never enlarges: nothing dropped
        assert_eq!(scales_within(1000, 1000, 20.0, 0.709, 1000 * 1000), scales(1000, 1000, 20.0, 0.709));
    }

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
