//! JPEG decoding with libjpeg's own arithmetic, so that our pixels are the reference's.
//!
//! The reference reads photos through PIL / imageio, i.e. libjpeg(-turbo) with its defaults:
//! the accurate integer IDCT (`JDCT_ISLOW`), "fancy" (triangle-filter) chroma upsampling and
//! libjpeg's fixed-point YCbCr -> RGB tables. Other decoders (zune-jpeg, which the `image`
//! crate uses) round differently: pixels move by a few levels at chroma edges, and MTCNN's
//! probabilities by up to ~1e-2. So a JPEG is decoded here by libjpeg-turbo itself (the
//! `mozjpeg` crate builds it from source with the C compiler; with `nasm` on the PATH at
//! build time it gets libjpeg-turbo's SIMD, whose ISLOW path is bit-exact with the C one).
//! Tested: byte-identical to PIL 13's RGB on the insightface sample photos.
//!
//! Anything this path does not take — not a JPEG, CMYK / YCCK / unknown colour spaces, an
//! image over the memory limit, and any file that makes libjpeg stop (fatal error) or warn
//! (corrupt or truncated data) — returns `None`, and the caller decodes with the `image`
//! crate, which is lenient and words the error message.

use std::panic::{catch_unwind, AssertUnwindSafe};

use image::RgbImage;
use mozjpeg::{ColorSpace, Decompress};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error};

use super::image_io::{check_size, MAX_PIXELS};

/// Decodes a baseline or progressive JPEG in YCbCr, RGB or grayscale to RGB8 exactly as
/// libjpeg does, or `None` (see the module documentation).
pub fn decode_exact(bytes: &[u8]) -> Option<RgbImage> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    // libjpeg reports errors and warnings through callbacks; ours unwind (without the panic
    // hook, so nothing is printed) back to this `catch_unwind`.
    catch_unwind(AssertUnwindSafe(|| decode(bytes))).ok().flatten()
}

fn decode(bytes: &[u8]) -> Option<RgbImage> {
    let d = Decompress::with_err(unwinding_error_mgr()).from_mem(bytes).ok()?;
    if !matches!(d.color_space(), ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB | ColorSpace::JCS_GRAYSCALE) {
        return None;
    }
    let (w, h) = d.size();
    // checked before libjpeg allocates anything of the image's size
    if w == 0 || h == 0 || check_size(w as u32, h as u32, MAX_PIXELS).is_err() {
        return None;
    }
    let mut started = d.rgb().ok()?;
    if (started.width(), started.height()) != (w, h) {
        return None;
    }
    let mut pixels = vec![0u8; w * h * 3];
    let n = started.read_scanlines_into::<[u8; 3]>(bytemuck_rgb(&mut pixels)).ok()?.len();
    if n != w * h {
        return None;
    }
    started.finish().ok()?;
    RgbImage::from_raw(w as u32, h as u32, pixels)
}

/// The flat RGB buffer as pixels (`[u8; 3]` has alignment 1, so this is a plain reinterpretation).
fn bytemuck_rgb(flat: &mut [u8]) -> &mut [[u8; 3]] {
    let (pixels, rest) = flat.as_chunks_mut::<3>();
    debug_assert!(rest.is_empty());
    pixels
}

fn unwinding_error_mgr() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a C struct of integers, pointers and nullable function
    // pointers, for which all-zero is valid; jpeg_std_error then fills in libjpeg's defaults.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(stop);
    err.emit_message = Some(warn_is_fatal);
    err
}

/// Payload of the unwind that carries libjpeg's stop back to [`decode_exact`].
struct LibjpegStop;

extern "C-unwind" fn stop(_cinfo: &mut jpeg_common_struct) {
    std::panic::resume_unwind(Box::new(LibjpegStop));
}

/// Level -1 is a warning (corrupt data, premature end of file): give the file to the lenient
/// decoder. Levels >= 0 are informational trace messages, ignored.
extern "C-unwind" fn warn_is_fatal(_cinfo: &mut jpeg_common_struct, level: std::os::raw::c_int) {
    if level < 0 {
        std::panic::resume_unwind(Box::new(LibjpegStop));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: &image::DynamicImage) -> Vec<u8> {
        let mut jpg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
        jpg
    }

    fn gradient() -> RgbImage {
        RgbImage::from_fn(61, 37, |x, y| image::Rgb([(x * 4) as u8, (y * 6) as u8, ((x * y) % 251) as u8]))
    }

    #[test]
    fn decodes_colour_and_gray_close_to_the_other_decoder() {
        for img in [
            image::DynamicImage::ImageRgb8(gradient()),
            image::DynamicImage::ImageLuma8(image::DynamicImage::ImageRgb8(gradient()).to_luma8()),
        ] {
            let jpg = encode(&img);
            let ours = decode_exact(&jpg).expect("libjpeg decodes it");
            let other = image::load_from_memory(&jpg).unwrap().to_rgb8();
            assert_eq!(ours.dimensions(), other.dimensions());
            let worst = ours.as_raw().iter().zip(other.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            assert!(worst <= 8, "decoders differ by {worst} levels");
        }
    }

    #[test]
    fn refuses_what_it_cannot_decode_exactly() {
        assert!(decode_exact(b"").is_none());
        assert!(decode_exact(b"\xFF\xD8 not really a jpeg").is_none());
        assert!(decode_exact(b"GIF89a").is_none());
        let jpg = encode(&image::DynamicImage::ImageRgb8(gradient()));
        // truncated: libjpeg warns (premature end of data), so the lenient decoder takes it
        assert!(decode_exact(&jpg[..jpg.len() / 2]).is_none());
        let cmyk = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mtcnn/cmyk.jpg")).unwrap();
        assert!(decode_exact(&cmyk).is_none());
    }
}
