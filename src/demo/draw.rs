//! Boxes and landmarks drawn onto a photo (anti-aliased, tiny-skia).

use image::RgbImage;
use tiny_skia::{Color, FillRule, Paint, PathBuilder, Pixmap, Rect, Stroke, Transform};

use crate::align::Face;

/// A copy of `img` with each face's box (green), its probability bar and its five
/// landmarks (red) drawn on it.
pub fn annotate(img: &RgbImage, faces: &[Face]) -> RgbImage {
    let (w, h) = img.dimensions();
    let Some(mut pm) = Pixmap::new(w, h) else { return img.clone() };
    for (dst, src) in pm.data_mut().chunks_exact_mut(4).zip(img.as_raw().chunks_exact(3)) {
        dst[..3].copy_from_slice(src);
        dst[3] = 255;
    }
    let line = (w.max(h) as f32 / 400.0).max(1.5);
    let mut green = Paint::default();
    green.set_color(Color::from_rgba8(40, 220, 60, 255));
    green.anti_alias = true;
    let mut red = Paint::default();
    red.set_color(Color::from_rgba8(240, 40, 40, 255));
    red.anti_alias = true;
    for f in faces {
        let [x1, y1, x2, y2] = f.bbox.map(|v| v as f32);
        if let Some(r) = Rect::from_ltrb(x1, y1, x2.max(x1 + 1.0), y2.max(y1 + 1.0)) {
            let path = PathBuilder::from_rect(r);
            pm.stroke_path(&path, &green, &Stroke { width: line, ..Stroke::default() }, Transform::identity(), None);
        }
        for [x, y] in f.landmarks {
            if let Some(c) = PathBuilder::from_circle(x as f32, y as f32, line * 1.3) {
                pm.fill_path(&c, &red, FillRule::Winding, Transform::identity(), None);
            }
        }
    }
    let mut out = RgbImage::new(w, h);
    for (dst, src) in (*out).chunks_exact_mut(3).zip(pm.data().chunks_exact(4)) {
        dst.copy_from_slice(&src[..3]);
    }
    out
}
