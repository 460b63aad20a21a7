//! Training-time augmentation, as the reference's input pipeline applies it, in this order:
//! random rotation in [-10, 10] degrees (bicubic, about the centre, same size, black
//! corners, like `scipy.misc.imrotate`), random crop to `image_size` (else the centre crop or
//! pad of TF's `resize_image_with_crop_or_pad`), random horizontal flip.
//!
//! Every random choice comes from the RNG passed in, so an image's augmentation is a pure
//! function of (image, seed): [`sample_rng`] derives one RNG per training sample from the
//! run's seed and the sample's position in the run, whatever thread processes it.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::preprocess::center_crop_or_pad;

/// Which augmentations to apply, and the output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    pub image_size: u32,
    pub random_rotate: bool,
    pub random_crop: bool,
    pub random_flip: bool,
}

impl Augment {
    /// No randomness: centre crop/pad only (validation, evaluation).
    pub fn center_only(image_size: u32) -> Self {
        Augment { image_size, random_rotate: false, random_crop: false, random_flip: false }
    }

    /// Applies the augmentations to `img`, drawing from `rng` (rotation angle, then crop
    /// offsets, then flip: only the draws of enabled steps happen).
    pub fn apply<R: Rng>(&self, img: &RgbImage, rng: &mut R) -> RgbImage {
        let rotated;
        let mut src = img;
        if self.random_rotate {
            let angle = rng.gen_range(-10.0..=10.0);
            rotated = rotate_bicubic(img, angle);
            src = &rotated;
        }
        let mut out = if self.random_crop { random_crop(src, self.image_size, rng) } else { center_crop_or_pad(src, self.image_size) };
        if self.random_flip && rng.gen_bool(0.5) {
            image::imageops::flip_horizontal_in_place(&mut out);
        }
        out
    }
}

/// splitmix64: a strong 64-bit mix, for deriving independent seeds.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The RNG of training sample number `serial` (its position in the run's sample stream) for
/// the run's `seed`.
pub fn sample_rng(seed: u64, serial: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(serial ^ 0x6175_676D_656E_7421)))
}

/// A uniformly placed `size` x `size` crop (TF's `random_crop`); an image smaller than `size`
/// on a side is first zero-padded to it (centred).
pub fn random_crop<R: Rng>(img: &RgbImage, size: u32, rng: &mut R) -> RgbImage {
    let (w, h) = img.dimensions();
    if w < size || h < size {
        let (pw, ph) = (w.max(size), h.max(size));
        let mut canvas = RgbImage::new(pw, ph);
        image::imageops::replace(&mut canvas, img, ((pw - w) / 2) as i64, ((ph - h) / 2) as i64);
        return random_crop(&canvas, size, rng);
    }
    let x = rng.gen_range(0..=w - size);
    let y = rng.gen_range(0..=h - size);
    image::imageops::crop_imm(img, x, y, size, size).to_image()
}

/// Cubic convolution weight (Keys, a = -0.5, as PIL's bicubic filter).
fn cubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Rotates `img` counter-clockwise by `degrees` about its centre, keeping its size; pixels
/// that come from outside the image are black. Bicubic interpolation (edge pixels repeat
/// for the taps that fall outside), rounded and clamped to 0..=255.
pub fn rotate_bicubic(img: &RgbImage, degrees: f64) -> RgbImage {
    let (w, h) = img.dimensions();
    let (wi, hi) = (w as i64, h as i64);
    let theta = degrees.to_radians();
    let (s, c) = theta.sin_cos();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let raw = img.as_raw();
    let px = |x: i64, y: i64| -> [f64; 3] {
        let x = x.clamp(0, wi - 1) as usize;
        let y = y.clamp(0, hi - 1) as usize;
        let i = (y * w as usize + x) * 3;
        [raw[i] as f64, raw[i + 1] as f64, raw[i + 2] as f64]
    };
    let mut out = RgbImage::new(w, h);
    for oy in 0..h {
        for ox in 0..w {
            // output pixel centre relative to the image centre, mapped back into the source
            let dx = ox as f64 + 0.5 - cx;
            let dy = oy as f64 + 0.5 - cy;
            let sx = c * dx - s * dy + cx;
            let sy = s * dx + c * dy + cy;
            if sx < 0.0 || sy < 0.0 || sx >= w as f64 || sy >= h as f64 {
                continue;
            }
            // to pixel-index coordinates (centres at integers)
            let fx = sx - 0.5;
            let fy = sy - 0.5;
            let x0 = fx.floor();
            let y0 = fy.floor();
            let (tx, ty) = (fx - x0, fy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let wx = [cubic(1.0 + tx), cubic(tx), cubic(1.0 - tx), cubic(2.0 - tx)];
            let wy = [cubic(1.0 + ty), cubic(ty), cubic(1.0 - ty), cubic(2.0 - ty)];
            let mut acc = [0.0f64; 3];
            for (j, wyj) in wy.iter().enumerate() {
                let mut row = [0.0f64; 3];
                for (i, wxi) in wx.iter().enumerate() {
                    let p = px(x0 - 1 + i as i64, y0 - 1 + j as i64);
                    for k in 0..3 {
                        row[k] += wxi * p[k];
                    }
                }
                for k in 0..3 {
                    acc[k] += wyj * row[k];
                }
            }
            let q = |v: f64| v.round().clamp(0.0, 255.0) as u8;
            out.put_pixel(ox, oy, Rgb([q(acc[0]), q(acc[1]), q(acc[2])]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (200 - x - y) as u8]))
    }

    #[test]
    fn same_seed_same_augmentation() {
        let img = pattern(40, 36);
        let aug = Augment { image_size: 32, random_rotate: true, random_crop: true, random_flip: true };
        let a = aug.apply(&img, &mut sample_rng(666, 12));
        let b = aug.apply(&img, &mut sample_rng(666, 12));
        assert_eq!(a, b);
        assert_eq!(a.dimensions(), (32, 32));
        // another sample (or seed) draws differently
        let differs = (0..8).any(|s| aug.apply(&img, &mut sample_rng(666, 100 + s)) != a);
        assert!(differs);
        assert_ne!(mix64(1), mix64(2));
    }

    #[test]
    fn zero_rotation_is_identity_and_rotation_moves_pixels() {
        let img = pattern(21, 17);
        assert_eq!(rotate_bicubic(&img, 0.0), img);
        // 90 degrees counter-clockwise on a square image: top-right corner goes to top-left
        let sq = pattern(9, 9);
        let r = rotate_bicubic(&sq, 90.0);
        assert_eq!(r.get_pixel(0, 0), sq.get_pixel(8, 0));
        assert_eq!(r.get_pixel(4, 4), sq.get_pixel(4, 4));
        // 10 degrees leaves black corners
        let r = rotate_bicubic(&RgbImage::from_pixel(32, 32, Rgb([255, 255, 255])), 10.0);
        assert_eq!(r.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(r.get_pixel(16, 16).0, [255, 255, 255]);
    }

    #[test]
    fn crops_and_flips() {
        let img = pattern(10, 8);
        let mut rng = sample_rng(1, 1);
        for _ in 0..20 {
            let c = random_crop(&img, 6, &mut rng);
            assert_eq!(c.dimensions(), (6, 6));
            // the crop is a window of the source
            let found = (0..=4).any(|x| (0..=2).any(|y| (0..6).all(|i| (0..6).all(|j| c.get_pixel(i, j) == img.get_pixel(x + i, y + j)))));
            assert!(found);
        }
        // smaller than the crop: padded
        let c = random_crop(&pattern(4, 12), 6, &mut rng);
        assert_eq!(c.dimensions(), (6, 6));
        // centre crop only, no randomness
        let a = Augment::center_only(6).apply(&img, &mut rng);
        assert_eq!(a, center_crop_or_pad(&img, 6));
        // flips happen about half the time
        let aug = Augment { image_size: 10, random_rotate: false, random_crop: false, random_flip: true };
        let flips = (0..200).filter(|&s| aug.apply(&pattern(10, 10), &mut sample_rng(3, s)) != pattern(10, 10)).count();
        assert!((60..140).contains(&flips), "{flips}");
    }
}
