//! Streaming PNG decoding for images too large to decode into memory ("downscale for
//! detection, crop from the original").
//!
//! [`load_rgb`](super::image_io::load_rgb) refuses images over [`MAX_PIXELS`] or whose decoded
//! pixels exceed the `image` crate's memory limit (512 MiB). A non-interlaced PNG of up to
//! [`MAX_STREAMED_PIXELS`] (no side over [`MAX_SIDE`](super::image_io::MAX_SIDE)) can instead
//! be decoded one row at a time: [`decode_png_shrunk`] area-averages it on the fly into a small
//! copy ([`AreaShrinkU8`]: OpenCV's `INTER_AREA` over the exact fractional footprint, the same
//! bytes as [`resize_area_u8`](crate::data::resample::resize_area_u8) on the fully decoded
//! image), and
//! [`decode_png_windows`] keeps only the pixels of a few rectangles. Memory is a few rows of
//! the original plus the outputs. Rows become RGB8 exactly as `load_rgb` converts: gray is
//! replicated, alpha dropped, palettes expanded, 16-bit samples rounded to `(v + 128) / 257`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::RgbImage;
use png::{BitDepth, ColorType, Transformations};

use super::image_io::{check_size, ImageLoadError, MAX_PIXELS, MAX_STREAMED_PIXELS};
use crate::data::resample::AreaShrinkU8;

/// The header facts of a PNG file that decide how it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PngInfo {
    pub width: u32,
    pub height: u32,
    /// Adam7-interlaced (cannot be streamed row by row).
    pub interlaced: bool,
    /// Bytes the in-memory decoder (`image`) allocates for the pixels.
    pub decoded_bytes: u64,
}

/// The in-memory decoder's limit: `image`'s default `max_alloc`.
pub fn memory_limit() -> u64 {
    image::Limits::default().max_alloc.unwrap_or(u64::MAX)
}

fn open(path: &Path) -> Result<png::Reader<BufReader<File>>, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    // what `image` does; 16-bit samples are rounded here, like `to_rgb8`
    decoder.set_transformations(Transformations::EXPAND);
    decoder.read_info().map_err(|e| format!("cannot decode image: {e}"))
}

/// The header of `path` when it is a PNG too large for `load_rgb` (over [`MAX_PIXELS`] or
/// [`MAX_SIDE`](super::image_io::MAX_SIDE), or pixels over [`memory_limit`]); `None` for anything else, including
/// unreadable files.
pub fn oversized_png(path: &Path) -> Option<PngInfo> {
    let mut head = [0u8; 8];
    let mut f = File::open(path).ok()?;
    std::io::Read::read_exact(&mut f, &mut head).ok()?;
    if head != [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a] {
        return None;
    }
    let reader = open(path).ok()?;
    let info = reader.info();
    let (w, h) = info.size();
    let (color, depth) = reader.output_color_type();
    let decoded_bytes = w as u64 * h as u64 * color.samples() as u64 * if depth == BitDepth::Sixteen { 2 } else { 1 };
    let refused = check_size(w, h, MAX_PIXELS).is_err() || decoded_bytes > memory_limit();
    refused.then_some(PngInfo { width: w, height: h, interlaced: info.interlaced, decoded_bytes })
}

/// A PNG read row by row as RGB8.
struct RgbRows {
    reader: png::Reader<BufReader<File>>,
    width: usize,
    height: usize,
    /// Rows returned so far.
    done: usize,
    channels: usize,
    wide: bool,
    rgb: Vec<u8>,
}

impl RgbRows {
    fn open(path: &Path) -> Result<Self, String> {
        let reader = open(path)?;
        let info = reader.info();
        if info.interlaced {
            return Err("interlaced PNG cannot be decoded row by row".into());
        }
        let (w, h) = info.size();
        // before the row buffers, which grow with the width
        check_size(w, h, MAX_STREAMED_PIXELS)?;
        let (color, depth) = reader.output_color_type();
        let channels = match color {
            ColorType::Grayscale | ColorType::GrayscaleAlpha | ColorType::Rgb | ColorType::Rgba => color.samples(),
            // EXPAND turns palettes into RGB(A)
            ColorType::Indexed => return Err("unexpected palette output".into()),
        };
        Ok(RgbRows {
            reader,
            width: w as usize,
            height: h as usize,
            done: 0,
            channels,
            wide: depth == BitDepth::Sixteen,
            rgb: vec![0; w as usize * 3],
        })
    }

    /// The next row (`width * 3` bytes); an error names how far the data went.
    fn next(&mut self) -> Result<&[u8], String> {
        let (done, height) = (self.done, self.height);
        let row = match self.reader.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => return Err(format!("cannot decode image: data ends at row {done} of {height}")),
            Err(e) => return Err(format!("cannot decode image at row {done} of {height}: {e}")),
        };
        to_rgb8(row.data(), self.channels, self.wide, &mut self.rgb);
        self.done += 1;
        Ok(&self.rgb)
    }
}

/// One decoded row (gray, gray+alpha, RGB or RGBA; 8 or 16-bit big-endian samples) as RGB8,
/// the conversion of `image`'s `to_rgb8`.
fn to_rgb8(data: &[u8], channels: usize, wide: bool, rgb: &mut [u8]) {
    let bytes = if wide { 2 } else { 1 };
    let sample = |px: &[u8], c: usize| -> u8 {
        if wide {
            ((u16::from_be_bytes([px[2 * c], px[2 * c + 1]]) as u32 + 128) / 257) as u8
        } else {
            px[c]
        }
    };
    for (out, px) in rgb.chunks_exact_mut(3).zip(data.chunks_exact(channels * bytes)) {
        if channels >= 3 {
            out.copy_from_slice(&[sample(px, 0), sample(px, 1), sample(px, 2)]);
        } else {
            out.fill(sample(px, 0));
        }
    }
}

fn load_error(path: &Path) -> impl Fn(String) -> ImageLoadError + '_ {
    move |reason| ImageLoadError { path: path.to_path_buf(), reason }
}

/// Decodes the PNG `path` row by row, area-shrinking it to `dw x dh` (at most its size) on
/// the fly: the bytes `resize_area_u8` gives on the fully decoded image.
pub fn decode_png_shrunk(path: &Path, dw: u32, dh: u32) -> Result<RgbImage, ImageLoadError> {
    let fail = load_error(path);
    let mut rows = RgbRows::open(path).map_err(&fail)?;
    let (w, h) = (rows.width, rows.height);
    if w == 0 || h == 0 || dw == 0 || dh == 0 || dw as usize > w || dh as usize > h {
        return Err(fail(format!("cannot shrink {w} x {h} pixels to {dw} x {dh}")));
    }
    let mut shrink = AreaShrinkU8::new(w, h, 3, dw as usize, dh as usize);
    for _ in 0..h {
        shrink.push_row(rows.next().map_err(&fail)?);
    }
    RgbImage::from_raw(dw, dh, shrink.finish()).ok_or_else(|| fail("buffer size".into()))
}

/// Decodes only the windows `[x1, y1, x2, y2]` (x2, y2 exclusive, inside the image) of the PNG
/// `path`, reading rows up to the lowest window only. A window of more than `max_pixels`
/// pixels comes back area-shrunk (same aspect ratio) to about `max_pixels`, so memory stays
/// bounded whatever the windows.
pub fn decode_png_windows(path: &Path, windows: &[[u32; 4]], max_pixels: usize) -> Result<Vec<RgbImage>, ImageLoadError> {
    let fail = load_error(path);
    let mut rows = RgbRows::open(path).map_err(&fail)?;
    let (w, h) = (rows.width as u32, rows.height as u32);
    let mut sinks = Vec::with_capacity(windows.len());
    for &[x1, y1, x2, y2] in windows {
        if !(x1 < x2 && y1 < y2 && x2 <= w && y2 <= h) {
            return Err(fail(format!("crop window {x1} {y1} {x2} {y2} outside {w} x {h} pixels")));
        }
        let (cw, ch) = ((x2 - x1) as usize, (y2 - y1) as usize);
        let k = (max_pixels as f64 / (cw * ch) as f64).sqrt().min(1.0);
        let side = |n: usize| ((n as f64 * k).round() as usize).clamp(1, n);
        let (dw, dh) = (side(cw), side(ch));
        sinks.push((dw as u32, dh as u32, AreaShrinkU8::new(cw, ch, 3, dw, dh)));
    }
    let last = windows.iter().map(|b| b[3]).max().unwrap_or(0);
    for y in 0..last {
        let row = rows.next().map_err(&fail)?;
        for (&[x1, y1, x2, y2], (_, _, sink)) in windows.iter().zip(sinks.iter_mut()) {
            if (y1..y2).contains(&y) {
                sink.push_row(&row[x1 as usize * 3..x2 as usize * 3]);
            }
        }
    }
    sinks.into_iter().map(|(dw, dh, sink)| RgbImage::from_raw(dw, dh, sink.finish()).ok_or_else(|| fail("buffer size".into()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::image_io::load_rgb;
    use crate::data::resample::resize_area_u8;

    /// Writes a `w x h` PNG of `color`/`depth` whose samples follow a pattern.
    fn write_png(path: &Path, w: u32, h: u32, color: ColorType, depth: BitDepth) {
        let mut enc = png::Encoder::new(std::io::BufWriter::new(File::create(path).unwrap()), w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        if color == ColorType::Indexed {
            enc.set_palette((0..256u32).flat_map(|i| [i as u8, (i * 7) as u8, (255 - i) as u8]).collect::<Vec<u8>>());
        }
        let mut writer = enc.write_header().unwrap();
        let per_px = color.samples() * if depth == BitDepth::Sixteen { 2 } else { 1 };
        let data: Vec<u8> = (0..(w * h) as usize * per_px).map(|i| (i * 31 % 251 + i / 97) as u8).collect();
        writer.write_image_data(&data).unwrap();
    }

    #[test]
    fn shrunk_equals_full_decode_and_resize() {
        let d = tempfile::tempdir().unwrap();
        let kinds = [
            (ColorType::Rgb, BitDepth::Eight),
            (ColorType::Rgba, BitDepth::Eight),
            (ColorType::Grayscale, BitDepth::Eight),
            (ColorType::GrayscaleAlpha, BitDepth::Eight),
            (ColorType::Rgb, BitDepth::Sixteen),
            (ColorType::Grayscale, BitDepth::Sixteen),
            (ColorType::Indexed, BitDepth::Eight),
        ];
        for (k, (color, depth)) in kinds.into_iter().enumerate() {
            let p = d.path().join(format!("{k}.png"));
            write_png(&p, 96, 60, color, depth);
            let full = load_rgb(&p).unwrap();
            // fractional ratios, integer ratios (OpenCV's box path, 2x2 rounding), same size
            for (dw, dh) in [(40, 25), (96, 29), (48, 30), (32, 20), (96, 60), (1, 1)] {
                let got = decode_png_shrunk(&p, dw, dh).unwrap();
                let want = resize_area_u8(full.as_raw(), 96, 60, 3, dw as usize, dh as usize);
                assert_eq!(got.as_raw(), &want, "{color:?} {depth:?} -> {dw}x{dh}");
            }
            let wins = decode_png_windows(&p, &[[3, 5, 40, 9], [0, 0, 96, 60], [90, 50, 96, 60]], 1 << 20).unwrap();
            assert_eq!(wins[0], image::imageops::crop_imm(&full, 3, 5, 37, 4).to_image());
            assert_eq!(wins[1], full);
            assert_eq!(wins[2], image::imageops::crop_imm(&full, 90, 50, 6, 10).to_image());
            // a window over the pixel budget is area-shrunk
            let big = decode_png_windows(&p, &[[0, 0, 96, 60]], 24 * 15).unwrap();
            let sub = image::imageops::crop_imm(&full, 0, 0, 96, 60).to_image();
            assert_eq!(big[0].as_raw(), &resize_area_u8(sub.as_raw(), 96, 60, 3, 24, 15));
        }
        // the images of this test fit in memory
        assert_eq!(oversized_png(&d.path().join("0.png")), None);
    }

    #[test]
    fn bad_input_gives_reasons() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.png");
        write_png(&p, 64, 64, ColorType::Rgb, BitDepth::Eight);
        let bytes = std::fs::read(&p).unwrap();
        let cut = d.path().join("cut.png");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = decode_png_shrunk(&cut, 8, 8).unwrap_err().to_string();
        assert!(e.starts_with(&cut.display().to_string()) && e.contains(" of 64"), "{e}");
        let e = decode_png_windows(&p, &[[0, 0, 65, 3]], 100).unwrap_err().to_string();
        assert!(e.contains("outside 64 x 64"), "{e}");
        // the header says Adam7 (the encoder writes no interlaced PNGs): refused before any row
        let il = d.path().join("il.png");
        let mut bytes = bytes.clone();
        bytes[28] = 1;
        let crc = png_crc(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&il, &bytes).unwrap();
        assert!(decode_png_shrunk(&il, 4, 4).unwrap_err().to_string().contains("interlaced"));
        assert!(decode_png_shrunk(&d.path().join("missing.png"), 4, 4).is_err());
        assert_eq!(oversized_png(&d.path().join("missing.png")), None);
    }

    #[test]
    fn oversized_header() {
        // a header claiming 20000 x 20000 RGB (1.2 GB decoded), no pixel data to speak of
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.png");
        write_png(&p, 2, 2, ColorType::Rgb, BitDepth::Eight);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[16..20].copy_from_slice(&20000u32.to_be_bytes());
        bytes[20..24].copy_from_slice(&20000u32.to_be_bytes());
        let mut crc = png_crc(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let info = oversized_png(&p).unwrap();
        assert_eq!((info.width, info.height, info.interlaced, info.decoded_bytes), (20000, 20000, false, 1_200_000_000));
        let e = decode_png_shrunk(&p, 4096, 4096).unwrap_err().to_string();
        assert!(e.contains("row 0 of 20000") && !e.contains('\n'), "{e}");
        // 1 x 2147483647: refused from the header on both paths (its area table alone was ~100 GB)
        let mut tall = bytes.clone();
        tall[16..20].copy_from_slice(&1u32.to_be_bytes());
        tall[20..24].copy_from_slice(&2_147_483_647u32.to_be_bytes());
        let tall_crc = png_crc(&tall[12..29]);
        tall[29..33].copy_from_slice(&tall_crc.to_be_bytes());
        let t = d.path().join("tall.png");
        std::fs::write(&t, &tall).unwrap();
        assert!(oversized_png(&t).is_some());
        let e = decode_png_shrunk(&t, 1, 4096).unwrap_err().to_string();
        assert!(e.contains("1 x 2147483647 pixels (a side over 65535 pixels)"), "{e}");
        assert!(decode_png_windows(&t, &[[0, 0, 1, 1]], 100).is_err());
        assert!(load_rgb(&t).unwrap_err().to_string().contains("a side over"));
        crc ^= 1;
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(oversized_png(&p), None, "a corrupt header is left to the normal decoder");
    }

    fn png_crc(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
}
