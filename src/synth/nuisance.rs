//! What changes from one image of a person to the next: pose, expression, lighting,
//! background, camera noise and blur, occluders.

use rand::Rng;

use super::identity::Rgb;

/// Kinds of background.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackgroundKind {
    Gradient,
    Stripes,
    Blobs,
}

/// An occluding object in front of the face (a hand, a microphone, a cup...).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Occluder {
    /// Centre in image units (0..1).
    pub center: (f32, f32),
    pub size: (f32, f32),
    pub angle: f32,
    pub color: Rgb,
    pub ellipse: bool,
}

/// Per-image variation. Lengths are fractions of the image size.
#[derive(Clone, Debug, PartialEq)]
pub struct Nuisance {
    pub rotation_deg: f32,
    pub scale: f32,
    pub shift: (f32, f32),
    /// Horizontal head turn (-1..1): shifts features sideways, narrows one side.
    pub yaw: f32,
    pub smile: f32,
    pub mouth_open: f32,
    pub eye_open: f32,
    pub gaze: (f32, f32),
    pub brow_raise: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub cast: [f32; 3],
    /// Directional shading: direction (radians) and strength.
    pub shade_dir: f32,
    pub shade_strength: f32,
    pub background: BackgroundKind,
    pub bg_colors: [Rgb; 3],
    pub bg_angle: f32,
    pub bg_seed: u64,
    pub clothes: Rgb,
    pub noise_sigma: f32,
    pub blur_sigma: f32,
    pub occluder: Option<Occluder>,
}

impl Nuisance {
    pub fn random<R: Rng>(rng: &mut R) -> Nuisance {
        let background = match rng.gen_range(0..3) {
            0 => BackgroundKind::Gradient,
            1 => BackgroundKind::Stripes,
            _ => BackgroundKind::Blobs,
        };
        let occluder = rng.gen_bool(0.12).then(|| Occluder {
            center: (rng.gen_range(0.2..0.8), rng.gen_range(0.45..0.9)),
            size: (rng.gen_range(0.08..0.22), rng.gen_range(0.12..0.35)),
            angle: rng.gen_range(-60.0..60.0),
            color: Rgb::random(rng),
            ellipse: rng.gen_bool(0.5),
        });
        Nuisance {
            rotation_deg: rng.gen_range(-10.0..10.0),
            scale: rng.gen_range(0.9..1.1),
            shift: (rng.gen_range(-0.045..0.045), rng.gen_range(-0.045..0.045)),
            yaw: rng.gen_range(-0.35..0.35),
            smile: rng.gen_range(-0.3..1.0),
            mouth_open: if rng.gen_bool(0.3) { rng.gen_range(0.1..0.7) } else { 0.0 },
            eye_open: if rng.gen_bool(0.08) { rng.gen_range(0.05..0.3) } else { rng.gen_range(0.7..1.15) },
            gaze: (rng.gen_range(-0.3..0.3), rng.gen_range(-0.2..0.2)),
            brow_raise: rng.gen_range(-0.04..0.08),
            brightness: rng.gen_range(-55.0..55.0),
            contrast: rng.gen_range(0.6..1.3),
            cast: [rng.gen_range(0.8..1.2), rng.gen_range(0.8..1.2), rng.gen_range(0.8..1.2)],
            shade_dir: rng.gen_range(0.0..std::f32::consts::TAU),
            shade_strength: rng.gen_range(0.0..0.6),
            background,
            bg_colors: [Rgb::random(rng), Rgb::random(rng), Rgb::random(rng)],
            bg_angle: rng.gen_range(0.0..180.0),
            bg_seed: rng.gen(),
            clothes: Rgb::random(rng),
            noise_sigma: rng.gen_range(0.0..9.0),
            blur_sigma: if rng.gen_bool(0.4) { rng.gen_range(0.3..1.6) } else { 0.0 },
            occluder,
        }
    }

    /// No variation at all: a frontal, evenly lit, neutral face on a plain background.
    pub fn neutral() -> Nuisance {
        let grey = Rgb([128.0, 128.0, 128.0]);
        Nuisance {
            rotation_deg: 0.0,
            scale: 1.0,
            shift: (0.0, 0.0),
            yaw: 0.0,
            smile: 0.2,
            mouth_open: 0.0,
            eye_open: 1.0,
            gaze: (0.0, 0.0),
            brow_raise: 0.0,
            brightness: 0.0,
            contrast: 1.0,
            cast: [1.0; 3],
            shade_dir: 0.0,
            shade_strength: 0.0,
            background: BackgroundKind::Gradient,
            bg_colors: [grey; 3],
            bg_angle: 0.0,
            bg_seed: 0,
            clothes: grey,
            noise_sigma: 0.0,
            blur_sigma: 0.0,
            occluder: None,
        }
    }
}
