//! Robust image loading: any readable image becomes 8-bit RGB.
//!
//! Grayscale is expanded to 3 channels, alpha is dropped, 16-bit samples are scaled to 8
//! bits. JPEGs are decoded by libjpeg itself ([`super::jpeg`]). Unreadable files give an error naming the file and the reason; nothing panics.

use std::path::{Path, PathBuf};

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ImageLoadError {
    pub path: PathBuf,
    pub reason: String,
}

/// Decodes `path` into RGB8.
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
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?
        .decode()
        .map_err(|e| fail(format!("cannot decode image: {e}")))?;
    Ok(img.to_rgb8())
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
