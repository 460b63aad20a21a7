//! Anti-aliased 2-D rendering of a synthetic face (tiny-skia), then camera effects.
//!
//! The face is drawn in face-local units (fractions of the image size, origin at the face
//! centre, y down) through one transform that carries the per-image rotation, scale and
//! shift; the background is drawn in image coordinates. Lighting, blur and noise are applied
//! to the finished picture.

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tiny_skia::{
    Color, FillRule, GradientStop, LineCap, LinearGradient, Paint, Path, PathBuilder, Pixmap, Point, Rect, SpreadMode, Stroke, Transform,
};

use super::identity::{FaceParams, HairStyle, Rgb};
use super::nuisance::{BackgroundKind, Nuisance};

/// Renders one image of the face `f` under the variation `n`, `size` x `size` pixels.
/// Returns `None` only for a size of 0.
pub fn render_face(f: &FaceParams, n: &Nuisance, size: u32) -> Option<RgbImage> {
    let mut pm = Pixmap::new(size, size)?;
    let s = size as f32;
    draw_background(&mut pm, n, s);
    let t = Transform::from_translate(s * (0.5 + n.shift.0), s * (0.5 + n.shift.1))
        .pre_rotate(n.rotation_deg)
        .pre_scale(s * n.scale, s * n.scale);
    Painter { pm: &mut pm, t }.face(f, n);
    if let Some(o) = n.occluder {
        let t = Transform::from_translate(o.center.0 * s, o.center.1 * s).pre_rotate(o.angle).pre_scale(s, s);
        let path = if o.ellipse {
            oval(0.0, 0.0, o.size.0, o.size.1)
        } else {
            Rect::from_ltrb(-o.size.0, -o.size.1, o.size.0, o.size.1).map(PathBuilder::from_rect)
        };
        fill(&mut pm, path, o.color, 1.0, t);
    }
    Some(finish(&pm, n, size))
}

fn paint(c: Rgb, alpha: f32) -> Paint<'static> {
    let mut p = Paint::default();
    let [r, g, b] = c.0;
    p.set_color(Color::from_rgba(r / 255.0, g / 255.0, b / 255.0, alpha.clamp(0.0, 1.0)).unwrap_or(Color::BLACK));
    p.anti_alias = true;
    p
}

fn fill(pm: &mut Pixmap, path: Option<Path>, c: Rgb, alpha: f32, t: Transform) {
    if let Some(path) = path {
        pm.fill_path(&path, &paint(c, alpha), FillRule::Winding, t, None);
    }
}

fn oval(cx: f32, cy: f32, rx: f32, ry: f32) -> Option<Path> {
    Rect::from_ltrb(cx - rx, cy - ry, cx + rx, cy + ry).and_then(PathBuilder::from_oval)
}

fn polygon(points: &[(f32, f32)]) -> Option<Path> {
    let mut pb = PathBuilder::new();
    let (first, rest) = points.split_first()?;
    pb.move_to(first.0, first.1);
    for p in rest {
        pb.line_to(p.0, p.1);
    }
    pb.close();
    pb.finish()
}

fn draw_background(pm: &mut Pixmap, n: &Nuisance, s: f32) {
    let [c0, c1, c2] = n.bg_colors;
    let (dx, dy) = (n.bg_angle.to_radians().cos() * s * 0.5, n.bg_angle.to_radians().sin() * s * 0.5);
    let grad = LinearGradient::new(
        Point::from_xy(s * 0.5 - dx, s * 0.5 - dy),
        Point::from_xy(s * 0.5 + dx, s * 0.5 + dy),
        vec![GradientStop::new(0.0, to_color(c0)), GradientStop::new(1.0, to_color(c1))],
        SpreadMode::Pad,
        Transform::identity(),
    );
    let full = Rect::from_xywh(0.0, 0.0, s, s).map(PathBuilder::from_rect);
    if let (Some(shader), Some(full)) = (grad, full) {
        let p = Paint { shader, ..Paint::default() };
        pm.fill_path(&full, &p, FillRule::Winding, Transform::identity(), None);
    } else {
        pm.fill(to_color(c0));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(n.bg_seed);
    match n.background {
        BackgroundKind::Gradient => {}
        BackgroundKind::Stripes => {
            let width = rng.gen_range(0.03..0.12);
            let t = Transform::from_rotate_at(n.bg_angle, s * 0.5, s * 0.5).pre_scale(s, s);
            let mut x = -1.0;
            while x < 2.0 {
                fill(pm, Rect::from_ltrb(x, -1.0, x + width, 2.0).map(PathBuilder::from_rect), c2, 0.7, t);
                x += width * 2.0;
            }
        }
        BackgroundKind::Blobs => {
            let t = Transform::from_scale(s, s);
            for _ in 0..rng.gen_range(4..10) {
                let c = c2.mix(Rgb::random(&mut rng), 0.5);
                let (x, y) = (rng.gen_range(0.0..1.0), rng.gen_range(0.0..1.0));
                let (rx, ry) = (rng.gen_range(0.05..0.3), rng.gen_range(0.05..0.3));
                fill(pm, oval(x, y, rx, ry), c, rng.gen_range(0.4..0.9), t);
            }
        }
    }
}

fn to_color(c: Rgb) -> Color {
    let [r, g, b] = c.0;
    Color::from_rgba8(r as u8, g as u8, b as u8, 255)
}

/// Draws in face-local units through `t`.
struct Painter<'a> {
    pm: &'a mut Pixmap,
    t: Transform,
}

impl Painter<'_> {
    fn fill(&mut self, path: Option<Path>, c: Rgb, alpha: f32) {
        fill(self.pm, path, c, alpha, self.t);
    }

    fn stroke(&mut self, path: Option<Path>, c: Rgb, width: f32) {
        if let Some(path) = path {
            let stroke = Stroke { width, line_cap: LineCap::Round, ..Stroke::default() };
            self.pm.stroke_path(&path, &paint(c, 1.0), &stroke, self.t, None);
        }
    }

    /// The face outline as a polygon: an ellipse narrowed toward the chin.
    fn outline(f: &FaceParams, grow: f32, from: f32, to: f32, steps: usize) -> Vec<(f32, f32)> {
        let fw = f.face_half_width * grow;
        let fh = f.face_half_width * f.face_aspect * grow;
        (0..=steps)
            .map(|k| {
                let th = from + (to - from) * k as f32 / steps as f32;
                let (sn, cs) = th.sin_cos();
                let lower = sn.max(0.0);
                let narrow = 1.0 - f.jaw * 0.38 * lower * lower;
                let cheek = 1.0 + f.cheeks * (-((sn - 0.25) / 0.35).powi(2)).exp();
                (fw * cs * narrow * cheek, fh * sn)
            })
            .collect()
    }

    fn face(&mut self, f: &FaceParams, n: &Nuisance) {
        use std::f32::consts::PI;
        let fw = f.face_half_width;
        let fh = fw * f.face_aspect;
        let skin = f.skin;
        let yaw_dx = n.yaw * fw * 0.22;

        // Behind the head: long hair, clothes, neck, ears.
        if f.hair_style == HairStyle::Long {
            self.fill(oval(0.0, fh * 0.25, fw * 1.3, fh * 1.2), f.hair, 1.0);
        }
        self.fill(oval(0.0, fh * 1.85, fw * 2.7, fh * 0.8), n.clothes, 1.0);
        self.fill(Rect::from_ltrb(-fw * 0.45, fh * 0.4, fw * 0.45, fh * 1.3).map(PathBuilder::from_rect), skin.scaled(0.82), 1.0);
        for side in [-1.0f32, 1.0] {
            let shrink = 1.0 + side * n.yaw * 0.6;
            let (rx, ry) = (0.17 * fw * f.ear_size * shrink.max(0.2), 0.28 * fh * f.ear_size);
            self.fill(oval(side * fw * 0.97, f.eye_height * fh + 0.12 * fh, rx, ry), skin.scaled(0.9), 1.0);
        }

        // The face.
        self.fill(polygon(&Self::outline(f, 1.0, 0.0, 2.0 * PI, 64)), skin, 1.0);
        // A little shading under the cheekbones gives the face some depth.
        self.fill(oval(0.0, fh * 0.55, fw * 0.7, fh * 0.35), skin.scaled(0.93), 0.5);

        if let Some(density) = f.beard {
            let mut pts = Self::outline(f, 1.01, 0.12 * PI, 0.88 * PI, 24);
            pts.push((-fw * 0.75, fh * 0.3));
            pts.push((fw * 0.75, fh * 0.3));
            self.fill(polygon(&pts), f.hair.mix(skin, 0.15), density);
        }
        if let Some((mx, my)) = f.mole {
            self.fill(oval(mx * fw + yaw_dx, my * fh, 0.014, 0.014), skin.scaled(0.45), 1.0);
        }

        self.hair(f, fw, fh);
        self.eyes_and_brows(f, n, fw, fh, yaw_dx);
        self.nose(f, fw, fh, yaw_dx);
        self.mouth(f, n, fw, fh, yaw_dx);
        if let Some(g) = f.glasses {
            let ey = f.eye_height * fh;
            let r = f.eye_size * fw * 1.55;
            for side in [-1.0f32, 1.0] {
                let ex = side * f.eye_spacing * fw + yaw_dx;
                let frame = if g.round {
                    oval(ex, ey, r, r * 0.85)
                } else {
                    Rect::from_ltrb(ex - r, ey - r * 0.7, ex + r, ey + r * 0.75).map(PathBuilder::from_rect)
                };
                if g.tinted {
                    self.fill(frame.clone(), Rgb([30.0, 30.0, 40.0]), 0.45);
                }
                self.stroke(frame, g.color, g.thickness);
                let mut pb = PathBuilder::new();
                pb.move_to(ex + side * r, ey);
                pb.line_to(side * fw * 0.98, ey - r * 0.2);
                self.stroke(pb.finish(), g.color, g.thickness * 0.8);
            }
            let mut pb = PathBuilder::new();
            pb.move_to(-f.eye_spacing * fw + r + yaw_dx, ey);
            pb.quad_to(yaw_dx, ey - r * 0.35, f.eye_spacing * fw - r + yaw_dx, ey);
            self.stroke(pb.finish(), g.color, g.thickness);
        }
    }

    fn hair(&mut self, f: &FaceParams, fw: f32, fh: f32) {
        use std::f32::consts::PI;
        let c = f.hair;
        let side_y = f.eye_height * fh * 0.6;
        let line_y = -fh * f.hairline;
        match f.hair_style {
            HairStyle::Bald => {
                for side in [-1.0f32, 1.0] {
                    self.fill(oval(side * fw * 0.92, side_y - 0.04, fw * 0.14, fh * 0.22), c, 0.9);
                }
                return;
            }
            HairStyle::Curly => {
                for p in Self::outline(f, 1.04, PI * 0.95, PI * 2.05, 14) {
                    self.fill(oval(p.0, p.1, fw * 0.22, fw * 0.22), c, 1.0);
                }
            }
            _ => {}
        }
        let (line_y, part) = match f.hair_style {
            HairStyle::Fringe => (-fh * 0.32, 0.0),
            HairStyle::SidePart => (line_y, 0.45),
            _ => (line_y, 0.0),
        };
        let mut pts = Self::outline(f, 1.07, PI * 0.97, PI * 2.03, 28);
        pts.iter_mut().for_each(|p| p.1 -= fh * 0.03);
        let mut pb = PathBuilder::new();
        pb.move_to(pts[0].0, side_y);
        for p in &pts {
            pb.line_to(p.0, p.1.min(side_y));
        }
        pb.line_to(pts[pts.len() - 1].0, side_y);
        pb.line_to(fw * 0.84, side_y);
        if f.hair_style == HairStyle::Fringe {
            // A jagged fringe across the forehead.
            let teeth = 7;
            for k in 0..=teeth {
                let x = fw * 0.84 - 1.68 * fw * k as f32 / teeth as f32;
                let y = if k % 2 == 0 { line_y } else { line_y - fh * 0.08 };
                pb.line_to(x, y);
            }
        } else {
            pb.quad_to(fw * 0.8, line_y, fw * part, line_y - part * fh * 0.1);
            pb.quad_to(-fw * 0.8, line_y + part * fh * 0.15, -fw * 0.84, side_y);
        }
        pb.close();
        self.fill(pb.finish(), c, 1.0);
    }

    fn eyes_and_brows(&mut self, f: &FaceParams, n: &Nuisance, fw: f32, fh: f32, yaw_dx: f32) {
        let ey = f.eye_height * fh;
        for side in [-1.0f32, 1.0] {
            let ex = side * f.eye_spacing * fw + yaw_dx;
            let size = f.eye_size * fw * (1.0 + side * n.yaw * 0.25);
            let (rx, ry_full) = (size, size * f.eye_aspect);
            let ry = ry_full * n.eye_open;
            if ry > 0.004 {
                self.fill(oval(ex, ey, rx, ry), Rgb([245.0, 245.0, 240.0]), 1.0);
                let ir = (rx * 0.48).min(ry * 1.05);
                let (gx, gy) = (ex + n.gaze.0 * rx * 0.4, ey + n.gaze.1 * ry * 0.4);
                self.fill(oval(gx, gy, ir, ir.min(ry)), f.iris, 1.0);
                self.fill(oval(gx, gy, ir * 0.45, (ir * 0.45).min(ry)), Rgb([10.0, 10.0, 10.0]), 1.0);
            }
            // Upper lid line.
            let mut pb = PathBuilder::new();
            pb.move_to(ex - rx, ey);
            pb.quad_to(ex, ey - ry * 2.0, ex + rx, ey);
            self.stroke(pb.finish(), f.skin.scaled(0.45), 0.012);
            // Brow.
            let by = ey - ry_full - f.brow_gap * fh - n.brow_raise * fh;
            let half = rx * f.brow_length;
            let rise = (f.brow_angle.to_radians()).tan() * half;
            let mut pb = PathBuilder::new();
            pb.move_to(ex - side * half, by + rise * 0.5);
            pb.quad_to(ex, by - fh * 0.03, ex + side * half, by - rise * 0.5);
            let brow_c = if f.hair.0.iter().sum::<f32>() > 450.0 { f.hair.scaled(0.7) } else { f.hair };
            self.stroke(pb.finish(), brow_c, f.brow_thickness * fh);
        }
    }

    fn nose(&mut self, f: &FaceParams, fw: f32, fh: f32, yaw_dx: f32) {
        let top = f.eye_height * fh + 0.02;
        let tip = top + f.nose_length * fh;
        let w = f.nose_width * fw;
        let dark = f.skin.scaled(0.6);
        let x = yaw_dx * 1.3;
        self.fill(oval(x, tip - 0.01, w * 0.6, fh * 0.08), f.skin.scaled(1.05), 0.6);
        let mut pb = PathBuilder::new();
        pb.move_to(x + w * 0.2, top);
        pb.quad_to(x + w * 0.35, tip - fh * 0.05, x + w * 0.15, tip);
        self.stroke(pb.finish(), dark, 0.008);
        let mut pb = PathBuilder::new();
        pb.move_to(x - w, tip - 0.01);
        pb.quad_to(x, tip + 0.035, x + w, tip - 0.01);
        self.stroke(pb.finish(), dark, 0.014);
        for side in [-1.0f32, 1.0] {
            self.fill(oval(x + side * w * 0.45, tip, w * 0.2, w * 0.12), f.skin.scaled(0.35), 1.0);
        }
    }

    fn mouth(&mut self, f: &FaceParams, n: &Nuisance, fw: f32, fh: f32, yaw_dx: f32) {
        let my = f.mouth_height * fh;
        let mw = f.mouth_width * fw * 0.9;
        let x = yaw_dx * 1.1;
        let curve = n.smile * fh * 0.08;
        let lip = f.lip_thickness * fh;
        let open = n.mouth_open * fh * 0.14;
        if f.moustache {
            let mut pb = PathBuilder::new();
            pb.move_to(x - mw * 1.05, my - lip * 0.5);
            pb.quad_to(x, my - lip * 2.5 - fh * 0.05, x + mw * 1.05, my - lip * 0.5);
            self.stroke(pb.finish(), f.hair, fh * 0.07);
        }
        // Upper lip: between the mouth line and an arc above it.
        let mut pb = PathBuilder::new();
        pb.move_to(x - mw, my - curve);
        pb.quad_to(x - mw * 0.3, my - lip * 1.6 - curve * 0.3, x, my - lip);
        pb.quad_to(x + mw * 0.3, my - lip * 1.6 - curve * 0.3, x + mw, my - curve);
        pb.quad_to(x, my + curve - open * 0.2, x - mw, my - curve);
        pb.close();
        self.fill(pb.finish(), f.lips, 1.0);
        // Lower lip.
        let mut pb = PathBuilder::new();
        pb.move_to(x - mw, my - curve);
        pb.quad_to(x, my + curve + open, x + mw, my - curve);
        pb.quad_to(x, my + curve + open + lip * 2.2, x - mw, my - curve);
        pb.close();
        self.fill(pb.finish(), f.lips.scaled(1.05), 1.0);
        if open > 0.002 {
            let mut pb = PathBuilder::new();
            pb.move_to(x - mw * 0.85, my - curve * 0.8);
            pb.quad_to(x, my + curve - open * 0.2, x + mw * 0.85, my - curve * 0.8);
            pb.quad_to(x, my + curve + open, x - mw * 0.85, my - curve * 0.8);
            pb.close();
            self.fill(pb.finish(), Rgb([50.0, 15.0, 20.0]), 1.0);
        } else {
            let mut pb = PathBuilder::new();
            pb.move_to(x - mw, my - curve);
            pb.quad_to(x, my + curve, x + mw, my - curve);
            self.stroke(pb.finish(), f.lips.scaled(0.5), 0.008);
        }
    }
}

/// Blur, lighting and sensor noise; premultiplied RGBA (opaque) to RGB.
fn finish(pm: &Pixmap, n: &Nuisance, size: u32) -> RgbImage {
    let data = pm.data();
    let mut rgb = RgbImage::new(size, size);
    for (dst, src) in (*rgb).chunks_exact_mut(3).zip(data.chunks_exact(4)) {
        dst.copy_from_slice(&src[..3]);
    }
    if n.blur_sigma > 0.0 {
        rgb = image::imageops::blur(&rgb, n.blur_sigma * size as f32 / 182.0);
    }
    let mut noise = NoiseSource(n.bg_seed ^ 0x9E37_79B9_7F4A_7C15);
    let half = size as f32 * 0.5;
    let (sd, cd) = n.shade_dir.sin_cos();
    for (x, y, px) in rgb.enumerate_pixels_mut() {
        let along = ((x as f32 - half) * cd + (y as f32 - half) * sd) / half;
        let shade = 1.0 + n.shade_strength * 0.5 * along;
        for k in 0..3 {
            let mut v = px.0[k] as f32 * n.cast[k];
            v = ((v - 128.0) * n.contrast + 128.0 + n.brightness) * shade;
            if n.noise_sigma > 0.0 {
                v += n.noise_sigma * noise.next_normal();
            }
            px.0[k] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    rgb
}

/// Sensor noise: SplitMix64 words turned into approximately normal samples (Irwin-Hall sum
/// of four 16-bit uniforms, scaled to unit variance). Cheap and exactly reproducible.
struct NoiseSource(u64);

impl NoiseSource {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_normal(&mut self) -> f32 {
        let w = self.next_u64();
        let sum: u32 = (0..4).map(|k| ((w >> (16 * k)) & 0xFFFF) as u32).sum();
        // Each uniform has mean 0.5 and variance 1/12; four of them: mean 2, variance 1/3.
        (sum as f32 / 65535.0 - 2.0) * 1.732_050_8
    }
}
