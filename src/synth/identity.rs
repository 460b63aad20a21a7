//! What makes an identity: a fixed set of facial parameters drawn once per identity.

use rand::Rng;

/// An RGB colour with components in 0..=255.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rgb(pub [f32; 3]);

impl Rgb {
    pub fn scaled(self, k: f32) -> Rgb {
        Rgb(self.0.map(|c| (c * k).clamp(0.0, 255.0)))
    }
    pub fn mix(self, other: Rgb, t: f32) -> Rgb {
        let mut o = self.0;
        for (a, b) in o.iter_mut().zip(other.0) {
            *a = *a * (1.0 - t) + b * t;
        }
        Rgb(o)
    }
    pub fn random<R: Rng>(rng: &mut R) -> Rgb {
        Rgb([rng.gen_range(0.0..255.0), rng.gen_range(0.0..255.0), rng.gen_range(0.0..255.0)])
    }
}

/// Hair styles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HairStyle {
    Bald,
    Short,
    Long,
    Fringe,
    Curly,
    SidePart,
}

/// Glasses frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Glasses {
    pub round: bool,
    pub color: Rgb,
    pub thickness: f32,
    pub tinted: bool,
}

/// The identity: everything that stays the same across the images of one person.
/// Lengths are relative: face half-width and half-height are fractions of the image
/// size; features are fractions of the face half-width (x) or half-height (y).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceParams {
    pub face_half_width: f32,
    pub face_aspect: f32,
    /// 0 = round chin, 1 = narrow pointed chin.
    pub jaw: f32,
    /// Widening of the cheeks (-0.1..0.15).
    pub cheeks: f32,
    pub skin: Rgb,
    pub ear_size: f32,
    pub eye_spacing: f32,
    pub eye_height: f32,
    pub eye_size: f32,
    pub eye_aspect: f32,
    pub iris: Rgb,
    pub brow_thickness: f32,
    pub brow_angle: f32,
    pub brow_gap: f32,
    pub brow_length: f32,
    pub nose_length: f32,
    pub nose_width: f32,
    pub mouth_width: f32,
    pub mouth_height: f32,
    pub lip_thickness: f32,
    pub lips: Rgb,
    pub hair: Rgb,
    pub hair_style: HairStyle,
    pub hairline: f32,
    pub glasses: Option<Glasses>,
    /// Beard density (0..1), if any.
    pub beard: Option<f32>,
    pub moustache: bool,
    /// A mole at a relative position (x, y) in face units.
    pub mole: Option<(f32, f32)>,
}

impl FaceParams {
    /// Draws an identity. Everything random comes from `rng`.
    pub fn random<R: Rng>(rng: &mut R) -> FaceParams {
        // Skin tones: a range from dark to light brown/pink.
        let depth: f32 = rng.gen_range(0.0..1.0);
        let light = Rgb([250.0, 218.0, 190.0]);
        let dark = Rgb([92.0, 58.0, 40.0]);
        let skin = dark.mix(light, depth).mix(Rgb([235.0, 170.0, 150.0]), rng.gen_range(0.0..0.3));
        let hair_palette = [
            Rgb([25.0, 20.0, 18.0]),
            Rgb([70.0, 45.0, 25.0]),
            Rgb([120.0, 80.0, 40.0]),
            Rgb([200.0, 160.0, 90.0]),
            Rgb([160.0, 70.0, 30.0]),
            Rgb([190.0, 190.0, 190.0]),
            Rgb([90.0, 90.0, 95.0]),
        ];
        let hair = hair_palette[rng.gen_range(0..hair_palette.len())].mix(Rgb::random(rng), rng.gen_range(0.0..0.15));
        let iris_palette = [
            Rgb([60.0, 40.0, 25.0]),
            Rgb([90.0, 60.0, 30.0]),
            Rgb([70.0, 110.0, 160.0]),
            Rgb([80.0, 120.0, 70.0]),
            Rgb([110.0, 110.0, 110.0]),
        ];
        let hair_style = match rng.gen_range(0..12) {
            0 => HairStyle::Bald,
            1..=3 => HairStyle::Short,
            4..=5 => HairStyle::Long,
            6..=7 => HairStyle::Fringe,
            8..=9 => HairStyle::Curly,
            _ => HairStyle::SidePart,
        };
        let glasses = rng.gen_bool(0.25).then(|| Glasses {
            round: rng.gen_bool(0.5),
            color: Rgb([rng.gen_range(0.0..80.0), rng.gen_range(0.0..60.0), rng.gen_range(0.0..60.0)]),
            thickness: rng.gen_range(0.015..0.035),
            tinted: rng.gen_bool(0.2),
        });
        FaceParams {
            face_half_width: rng.gen_range(0.25..0.31),
            face_aspect: rng.gen_range(1.18..1.42),
            jaw: rng.gen_range(0.0..1.0),
            cheeks: rng.gen_range(-0.08..0.14),
            skin,
            ear_size: rng.gen_range(0.8..1.25),
            eye_spacing: rng.gen_range(0.30..0.46),
            eye_height: rng.gen_range(-0.22..-0.04),
            eye_size: rng.gen_range(0.13..0.21),
            eye_aspect: rng.gen_range(0.38..0.62),
            iris: iris_palette[rng.gen_range(0..iris_palette.len())].mix(Rgb::random(rng), 0.15),
            brow_thickness: rng.gen_range(0.035..0.09),
            brow_angle: rng.gen_range(-14.0..14.0),
            brow_gap: rng.gen_range(0.12..0.22),
            brow_length: rng.gen_range(0.9..1.5),
            nose_length: rng.gen_range(0.22..0.40),
            nose_width: rng.gen_range(0.12..0.26),
            mouth_width: rng.gen_range(0.28..0.52),
            mouth_height: rng.gen_range(0.45..0.62),
            lip_thickness: rng.gen_range(0.025..0.075),
            lips: skin.mix(Rgb([170.0, 60.0, 70.0]), rng.gen_range(0.25..0.7)),
            hair,
            hair_style,
            hairline: rng.gen_range(0.45..0.7),
            glasses,
            beard: rng.gen_bool(0.2).then(|| rng.gen_range(0.45..0.95)),
            moustache: rng.gen_bool(0.2),
            mole: rng.gen_bool(0.35).then(|| (rng.gen_range(-0.6..0.6), rng.gen_range(-0.3..0.6))),
        }
    }
}
