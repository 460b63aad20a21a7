//! From detections to aligned crops, as `align_dataset_mtcnn.py` does it: which face(s) to
//! keep, the margin and clamping of the crop box, and the bilinear resize.

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::boxes::Rect;

/// The index of the face the reference keeps when one face per image is wanted: the largest
/// box area minus twice the squared distance of the box centre from the image centre (the
/// first one on ties). `None` for no faces.
pub fn choose_face(boxes: &[Rect], width: u32, height: u32) -> Option<usize> {
    if boxes.len() <= 1 {
        return (!boxes.is_empty()).then_some(0);
    }
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let mut best: Option<(usize, f64)> = None;
    for (i, b) in boxes.iter().enumerate() {
        let size = (b[2] - b[0]) * (b[3] - b[1]);
        let ox = (b[0] + b[2]) / 2.0 - cx;
        let oy = (b[1] + b[3]) / 2.0 - cy;
        let v = size - (ox * ox + oy * oy) * 2.0;
        // strict `>`: NumPy's argmax keeps the first maximum
        if best.map(|(_, bv)| v > bv).unwrap_or(true) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// The crop box in pixels `[x1, y1, x2, y2]` (x2, y2 exclusive): the detection widened by
/// `margin / 2` on each side, clamped to the image, truncated to integers. `None` when the
/// clamped box is empty.
pub fn margin_box(bbox: Rect, margin: f64, width: u32, height: u32) -> Option<[u32; 4]> {
    let half = margin / 2.0;
    let x1 = (bbox[0] - half).max(0.0);
    let y1 = (bbox[1] - half).max(0.0);
    let x2 = (bbox[2] + half).min(width as f64);
    let y2 = (bbox[3] + half).min(height as f64);
    // float -> int32 truncates toward zero; a negative upper corner means an empty crop
    let t = |v: f64| if v.is_finite() { v.trunc().max(0.0) as u32 } else { 0 };
    let bb = [t(x1), t(y1), t(x2).min(width), t(y2).min(height)];
    (bb[2] > bb[0] && bb[3] > bb[1]).then_some(bb)
}

/// Crops `bb` from `img` and resizes it to `size x size` with a bilinear (triangle) filter
/// whose support widens when shrinking, like PIL's `resize(..., BILINEAR)` that the
/// reference's `misc.imresize` calls.
pub fn crop_and_resize(img: &RgbImage, bb: [u32; 4], size: u32) -> RgbImage {
    let (cw, ch) = (bb[2] - bb[0], bb[3] - bb[1]);
    let mut buf = Vec::with_capacity(cw as usize * ch as usize * 3);
    let stride = img.width() as usize * 3;
    for y in bb[1]..bb[3] {
        let start = y as usize * stride + bb[0] as usize * 3;
        buf.extend_from_slice(&img.as_raw()[start..start + cw as usize * 3]);
    }
    if (cw, ch) == (size, size) {
        return RgbImage::from_raw(size, size, buf).expect("buffer size");
    }
    let src = FirImage::from_vec_u8(cw, ch, buf, PixelType::U8x3).expect("buffer size");
    let mut dst = FirImage::new(size, size, PixelType::U8x3);
    Resizer::new()
        .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)))
        .expect("same pixel types");
    RgbImage::from_raw(size, size, dst.into_vec()).expect("buffer size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_choice_prefers_big_and_central() {
        // a big face at the edge vs a smaller centred one on a 100x100 image
        let edge = [0.0, 0.0, 40.0, 40.0]; // area 1600, centre (20,20): dist2 1800 -> -2000
        let centre = [40.0, 40.0, 60.0, 60.0]; // area 400, dist 0 -> 400
        assert_eq!(choose_face(&[edge, centre], 100, 100), Some(1));
        let huge = [0.0, 0.0, 90.0, 90.0]; // 8100 - 2 * 50 = 8000
        assert_eq!(choose_face(&[centre, huge], 100, 100), Some(1));
        assert_eq!(choose_face(&[centre, centre], 100, 100), Some(0));
        assert_eq!(choose_face(&[], 100, 100), None);
        assert_eq!(choose_face(&[edge], 100, 100), Some(0));
        // image centre is (w/2, h/2): width matters for x
        let left = [45.0, 45.0, 55.0, 55.0]; // centre x 50 = h/2, 50 from w/2
        let right = [125.0, 45.0, 135.0, 55.0]; // centre x 130, 30 from w/2
        assert_eq!(choose_face(&[left, right], 200, 100), Some(1));
    }

    #[test]
    fn margin_and_clamp() {
        assert_eq!(margin_box([30.7, 40.2, 80.9, 95.5], 44.0, 200, 200), Some([8, 18, 102, 117]));
        assert_eq!(margin_box([10.0, 5.0, 190.0, 99.0], 44.0, 200, 100), Some([0, 0, 200, 100]));
        assert_eq!(margin_box([10.0, 10.0, 20.0, 20.0], 0.0, 200, 100), Some([10, 10, 20, 20]));
        // odd margin: half a pixel each side
        assert_eq!(margin_box([10.0, 10.0, 20.0, 20.0], 3.0, 200, 100), Some([8, 8, 21, 21]));
        // entirely outside
        assert_eq!(margin_box([300.0, 10.0, 320.0, 20.0], 0.0, 200, 100), None);
    }

    #[test]
    fn crop_resize_sizes_and_values() {
        let img = RgbImage::from_fn(50, 40, |x, _| image::Rgb([if x < 25 { 0 } else { 200 }, 50, 100]));
        let out = crop_and_resize(&img, [0, 0, 20, 20], 10);
        assert_eq!(out.dimensions(), (10, 10));
        assert!(out.pixels().all(|p| p.0 == [0, 50, 100]));
        let out = crop_and_resize(&img, [20, 10, 30, 20], 182);
        assert_eq!(out.dimensions(), (182, 182));
        assert_eq!(out.get_pixel(0, 0).0, [0, 50, 100]);
        assert_eq!(out.get_pixel(181, 181).0, [200, 50, 100]);
        // exact size: a plain crop
        let out = crop_and_resize(&img, [24, 0, 26, 2], 2);
        assert_eq!(out.get_pixel(0, 0).0[0], 0);
        assert_eq!(out.get_pixel(1, 0).0[0], 200);
    }
}
