//! Robust image loading: any readable image becomes 8-bit RGB.
//!
//! Grayscale is expanded to 3 channels, alpha is dropped, 16-bit samples are scaled to 8
//! bits. JPEGs are decoded by libjpeg itself ([`super::jpeg`]). Unreadable files give an error naming the file and the reason; nothing panics.
//!
//! Memory is bounded by the size the header claims, checked before any pixel is allocated, on
//! every decoding path (libjpeg, the `image` crate, the streaming PNG decoder of
//! [`super::png_stream`]): at most [`MAX_PIXELS`] pixels in memory ([`MAX_STREAMED_PIXELS`]
//! for a PNG decoded row by row), no side over [`MAX_SIDE`].

use std::path::{Path, PathBuf};

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ImageLoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Most pixels of an image decoded into memory: 512 MiB as RGB8 (178,956,970 pixels, e.g.
/// 13377 x 13377), the `image` crate's default allocation limit and the size at which PIL
/// refuses an image as a decompression bomb. Decoding one image holds at most the decoder's
/// buffer (itself at most 512 MiB: `image`'s limit) plus the RGB8 copy.
pub const MAX_PIXELS: u64 = (512 << 20) / 3;

/// Most pixels of a PNG that `facenet align` decodes row by row instead
/// ([`super::png_stream`]: non-interlaced PNGs over [`MAX_PIXELS`]): 2^30, e.g. 32768 x
/// 32768. Memory does not grow with it (a few rows); time does (two decoding passes).
pub const MAX_STREAMED_PIXELS: u64 = 1 << 30;

/// Longest side of any image, in pixels: 65535, JPEG's own limit. Row buffers and the
/// area-resampling tables grow with the side, so that a header claiming 1 x 2147483647
/// pixels is refused even when its pixel count is not absurd.
pub const MAX_SIDE: u32 = 65535;

/// Refuses a `width x height` image with more than `max_pixels` pixels ([`MAX_PIXELS`], or
/// [`MAX_STREAMED_PIXELS`] for a streamed PNG) or a side over [`MAX_SIDE`]; the reason names
/// the size and the limit.
pub fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), String> {
    let pixels = width as u64 * height as u64;
    let why = if width.max(height) > MAX_SIDE {
        format!("a side over {MAX_SIDE} pixels")
    } else if pixels > max_pixels {
        format!("{:.1} GB as RGB, limit {:.1} GB", pixels as f64 * 3.0 / 1e9, max_pixels as f64 * 3.0 / 1e9)
    } else {
        return Ok(());
    };
    Err(format!("image too large to decode: {width} x {height} pixels ({why})"))
}

/// A reader of the image `bytes`, its format guessed from its first bytes.
fn reader(bytes: &[u8]) -> std::io::Result<image::ImageReader<std::io::Cursor<&[u8]>>> {
    image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()
}

/// Decodes `path` into RGB8; an image over [`MAX_PIXELS`] or [`MAX_SIDE`] is refused from
/// its header.
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let fail = |reason: String| ImageLoadError { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    if bytes.is_empty() {
        return Err(fail("empty file".into()));
    }
    // JPEGs as libjpeg decodes them (the reference's pixels); everything else, and any JPEG
    // libjpeg refuses or warns about, through the `image` crate
    if let Some(img) = super::jpeg::decode_exact(&bytes) {
        return Ok(img);
    }
    // a JPEG cut short decodes "successfully" in lenient decoders, its missing rows grey; the
    // reference's reader (PIL) refuses it ("image file is truncated"), and so do we
    if truncated_jpeg(&bytes) {
        return Err(fail("truncated JPEG (no end-of-image marker after its last scan)".into()));
    }
    // the size the header claims, before any pixel is allocated (a header the `image` crate
    // cannot read is left to `decode`, which words the error)
    if let Ok((w, h)) = reader(&bytes).and_then(|r| r.into_dimensions().map_err(std::io::Error::other)) {
        check_size(w, h, MAX_PIXELS).map_err(&fail)?;
    }
    let mut limits = image::Limits::default();
    (limits.max_image_width, limits.max_image_height) = (Some(MAX_SIDE), Some(MAX_SIDE));
    let mut reader = reader(&bytes).map_err(|e| fail(e.to_string()))?;
    reader.limits(limits);
    let img = reader.decode().map_err(|e| fail(format!("cannot decode image: {e}")))?;
    // (no copy when the image is RGB8 already)
    Ok(img.into_rgb8())
}

/// Whether `bytes` is a JPEG whose last scan (`FF DA`) is not followed by an end-of-image
/// marker (`FF D9`): the file was cut short. Inside scan data a `FF` byte is always followed by
/// `00` or a restart marker, so a `FF D9` there is the real end; a second image appended after
/// the first one's end (multi-picture files) ends with its own marker.
pub fn truncated_jpeg(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let last = |m: u8| bytes.windows(2).rposition(|w| w == [0xFF, m]);
    match last(0xD9) {
        None => true,
        Some(eoi) => last(0xDA).is_some_and(|sos| eoi < sos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        let e = load_rgb(&empty).unwrap_err();
        assert!(e.to_string().contains("empty.jpg: empty file"), "{e}");
        let text = d.path().join("text.jpg");
        std::fs::write(&text, b"hello, I am not a jpeg").unwrap();
        assert!(load_rgb(&text).unwrap_err().to_string().contains("text.jpg"));
        assert!(load_rgb(&d.path().join("missing.png")).is_err());
        // a JPEG cut in the middle of its scan is refused with its reason; the whole one loads
        let mut jpg = Vec::new();
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]));
        image::DynamicImage::ImageRgb8(img).write_to(&mut std::io::Cursor::new(&mut jpg), image::ImageFormat::Jpeg).unwrap();
        assert!(!truncated_jpeg(&jpg));
        let whole = d.path().join("whole.jpg");
        std::fs::write(&whole, &jpg).unwrap();
        assert_eq!(load_rgb(&whole).unwrap().dimensions(), (64, 48));
        let cut = d.path().join("cut.jpg");
        std::fs::write(&cut, &jpg[..jpg.len() * 2 / 3]).unwrap();
        assert!(truncated_jpeg(&jpg[..jpg.len() * 2 / 3]));
        let e = load_rgb(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.jpg: truncated JPEG"), "{e}");
        // another image appended after the end (multi-picture files) is not a cut
        let mut two = jpg.clone();
        two.extend_from_slice(&jpg);
        assert!(!truncated_jpeg(&two));
    }

    #[test]
    fn size_limits() {
        assert!(check_size(13377, 13377, MAX_PIXELS).is_ok());
        let e = check_size(13378, 13378, MAX_PIXELS).unwrap_err();
        assert_eq!(e, "image too large to decode: 13378 x 13378 pixels (0.5 GB as RGB, limit 0.5 GB)");
        assert!(check_size(13378, 13378, MAX_STREAMED_PIXELS).is_ok());
        assert!(check_size(32768, 32769, MAX_STREAMED_PIXELS).is_err());
        assert!(check_size(65535, 1, MAX_PIXELS).is_ok());
        assert!(check_size(1, 65536, MAX_PIXELS).unwrap_err().contains("a side over 65535"));
        // a BMP whose header claims 30000 x 30000: refused from the header, naming the size
        let d = tempfile::tempdir().unwrap();
        let mut bmp = Vec::new();
        image::RgbImage::new(2, 2).write_to(&mut std::io::Cursor::new(&mut bmp), image::ImageFormat::Bmp).unwrap();
        bmp[18..22].copy_from_slice(&30000i32.to_le_bytes());
        bmp[22..26].copy_from_slice(&30000i32.to_le_bytes());
        let p = d.path().join("huge.bmp");
        std::fs::write(&p, bmp).unwrap();
        let e = load_rgb(&p).unwrap_err().to_string();
        assert!(e.contains("huge.bmp: image too large to decode: 30000 x 30000 pixels"), "{e}");
    }

    #[test]
    fn converts_gray_and_alpha() {
        let d = tempfile::tempdir().unwrap();
        let g = d.path().join("g.png");
        image::GrayImage::from_pixel(4, 3, image::Luma([200])).save(&g).unwrap();
        let rgb = load_rgb(&g).unwrap();
        assert_eq!(rgb.dimensions(), (4, 3));
        assert_eq!(rgb.get_pixel(0, 0).0, [200, 200, 200]);
        let a = d.path().join("a.png");
        image::RgbaImage::from_pixel(2, 2, image::Rgba([10, 20, 30, 0])).save(&a).unwrap();
        assert_eq!(load_rgb(&a).unwrap().get_pixel(1, 1).0, [10, 20, 30]);
        let w = d.path().join("w.png");
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(2, 2, image::Luma([65535])).save(&w).unwrap();
        assert_eq!(load_rgb(&w).unwrap().get_pixel(0, 0).0, [255, 255, 255]);
    }
}
