//! Deterministic preprocessing shared by training, validation and embedding: TF's
//! `resize_image_with_crop_or_pad`, horizontal flip, and the two pixel standardisations.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// How pixels become network input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standardization {
    /// `(x - 127.5) / 128` (`--use_fixed_image_standardization`).
    Fixed,
    /// Per image: `(x - mean) / max(std, 1/sqrt(#values))` (TF's
    /// `per_image_standardization`, the reference's default).
    PerImage,
}

impl Standardization {
    pub fn from_flag(use_fixed: bool) -> Self {
        if use_fixed {
            Standardization::Fixed
        } else {
            Standardization::PerImage
        }
    }
}

/// Centre crop (offset `(H - size) / 2`, floored) or zero pad (`(size - H) / 2` before) to
/// `size` x `size`, like TF's `resize_image_with_crop_or_pad`.
pub fn center_crop_or_pad(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == size && h == size {
        return img.clone();
    }
    let mut out = RgbImage::new(size, size);
    // Source offset when cropping, destination offset when padding, per axis.
    let (sx, dx) = if w >= size { ((w - size) / 2, 0) } else { (0, (size - w) / 2) };
    let (sy, dy) = if h >= size { ((h - size) / 2, 0) } else { (0, (size - h) / 2) };
    let cw = w.min(size);
    let ch = h.min(size);
    for y in 0..ch {
        for x in 0..cw {
            out.put_pixel(dx + x, dy + y, *img.get_pixel(sx + x, sy + y));
        }
    }
    out
}

/// Writes `img` as planar CHW floats (3 x H x W) into `out` with the standardisation.
pub fn standardize_into(img: &RgbImage, s: Standardization, out: &mut [f32]) {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    assert_eq!(out.len(), 3 * plane, "output buffer size");
    let raw = img.as_raw();
    for (i, px) in raw.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c] as f32;
        }
    }
    let (mean, scale) = match s {
        Standardization::Fixed => (127.5f64, 1.0 / 128.0),
        Standardization::PerImage => {
            let n = raw.len() as f64;
            let mean = raw.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = raw.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let std = var.sqrt().max(1.0 / n.sqrt());
            (mean, 1.0 / std)
        }
    };
    for v in out.iter_mut() {
        *v = ((*v as f64 - mean) * scale) as f32;
    }
}

/// Planar CHW floats of `img` with the standardisation.
pub fn standardize(img: &RgbImage, s: Standardization) -> Vec<f32> {
    let mut out = vec![0f32; 3 * (img.width() * img.height()) as usize];
    standardize_into(img, s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_and_pad_follow_tf() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = center_crop_or_pad(&img, 2);
        // offsets (5-2)/2 = 1, (4-2)/2 = 1
        assert_eq!(c.get_pixel(0, 0).0, [1, 1, 0]);
        assert_eq!(c.get_pixel(1, 1).0, [2, 2, 0]);
        let p = center_crop_or_pad(&img, 7);
        // pad (7-5)/2 = 1 left, (7-4)/2 = 1 top
        assert_eq!(p.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(p.get_pixel(1, 1).0, [0, 0, 0]);
        assert_eq!(p.get_pixel(2, 1).0, [1, 0, 0]);
        assert_eq!(p.get_pixel(5, 4).0, [4, 3, 0]);
    }

    #[test]
    fn standardisations() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 0 } else { 255 }, 128, 128]));
        let f = standardize(&img, Standardization::Fixed);
        assert_eq!(f.len(), 6);
        assert!((f[0] - (-127.5 / 128.0)).abs() < 1e-6 && (f[1] - 127.5 / 128.0).abs() < 1e-6);
        let p = standardize(&img, Standardization::PerImage);
        let mean: f32 = p.iter().sum::<f32>() / 6.0;
        let var: f32 = p.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 6.0;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        // a flat image: std floored at 1/sqrt(n), no division by zero
        let flat = standardize(&RgbImage::from_pixel(3, 3, image::Rgb([9, 9, 9])), Standardization::PerImage);
        assert!(flat.iter().all(|v| *v == 0.0));
    }
}
