//! Output files of `facenet align`: the PNG crops (which carry their crop box in a `tEXt`
//! chunk, so a rerun that skips a finished image can still list its box), the bounding-box
//! list, and the cleanup of temporary files a killed run left behind.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

/// The `tEXt` keyword under which a crop stores its box `x1 y1 x2 y2`.
pub const BOX_KEYWORD: &str = "facenet-crop-box";
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

fn crc32(parts: &[&[u8]]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        std::array::from_fn(|n| {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            c
        })
    });
    let mut c = 0xffff_ffffu32;
    for p in parts {
        for &b in *p {
            c = table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
        }
    }
    c ^ 0xffff_ffff
}

/// Encodes `img` as PNG with the crop box in a `tEXt` chunk right after the header.
/// Deterministic: the same pixels and box give the same bytes.
pub fn encode_png_with_box(img: &RgbImage, bb: [u32; 4]) -> io::Result<Vec<u8>> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png).write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8).map_err(io::Error::other)?;
    // signature (8) + IHDR chunk (4 + 4 + 13 + 4)
    let at = 8 + 25;
    let text = format!("{BOX_KEYWORD}\0{} {} {} {}", bb[0], bb[1], bb[2], bb[3]);
    let mut chunk = Vec::with_capacity(text.len() + 12);
    chunk.extend_from_slice(&(text.len() as u32).to_be_bytes());
    chunk.extend_from_slice(b"tEXt");
    chunk.extend_from_slice(text.as_bytes());
    chunk.extend_from_slice(&crc32(&[b"tEXt", text.as_bytes()]).to_be_bytes());
    png.splice(at..at, chunk);
    Ok(png)
}

/// Reads the crop box stored by [`encode_png_with_box`]; `None` for other PNGs (e.g. written
/// by the reference) or unreadable files.
pub fn read_png_box(path: &Path) -> Option<[u32; 4]> {
    let mut head = vec![0u8; 256];
    let mut f = fs::File::open(path).ok()?;
    let n = f.read(&mut head).ok()?;
    head.truncate(n);
    if head.get(..8)? != PNG_SIGNATURE {
        return None;
    }
    let mut pos = 8;
    while pos + 8 <= head.len() {
        let len = u32::from_be_bytes(head[pos..pos + 4].try_into().ok()?) as usize;
        let kind = &head[pos + 4..pos + 8];
        let data = head.get(pos + 8..pos + 8 + len)?;
        if kind == b"tEXt" {
            let text = std::str::from_utf8(data).ok()?;
            if let Some(v) = text.strip_prefix(BOX_KEYWORD).and_then(|t| t.strip_prefix('\0')) {
                let nums: Vec<u32> = v.split(' ').filter_map(|s| s.parse().ok()).collect();
                return nums.try_into().ok();
            }
        }
        if kind == b"IDAT" {
            return None;
        }
        pos += 12 + len;
    }
    None
}

/// One line of the bounding-box list: `path x1 y1 x2 y2`, or the path alone for an image
/// without a face.
pub fn box_line(path: &Path, bb: Option<[u32; 4]>) -> String {
    match bb {
        Some(b) => format!("{} {} {} {} {}", path.display(), b[0], b[1], b[2], b[3]),
        None => path.display().to_string(),
    }
}

/// True while process `pid` runs on this machine (Linux: `/proc/PID`); elsewhere assume it
/// does, so nothing of a live process is ever removed.
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes temporary files (`.NAME.PID.N.tmp`, see `util::atomic`) that a killed process
/// left in `dir`: those whose process is gone. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let me = std::process::id();
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else { continue };
        // NAME.PID.N
        let mut parts = stem.rsplitn(3, '.');
        let (Some(n), Some(pid), Some(_)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let (Ok(_), Ok(pid)) = (n.parse::<u64>(), pid.parse::<u32>()) else { continue };
        if pid != me && !process_alive(pid) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_iend() {
        // the IEND chunk's well-known CRC
        assert_eq!(crc32(&[b"IEND"]), 0xae42_6082);
    }

    #[test]
    fn png_box_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        let bytes = encode_png_with_box(&img, [1, 22, 333, 4444]).unwrap();
        assert_eq!(bytes, encode_png_with_box(&img, [1, 22, 333, 4444]).unwrap());
        let p = d.path().join("a.png");
        fs::write(&p, &bytes).unwrap();
        assert_eq!(read_png_box(&p), Some([1, 22, 333, 4444]));
        // still a valid PNG with the same pixels
        assert_eq!(image::open(&p).unwrap().to_rgb8(), img);
        // a PNG without the note, and a non-PNG
        let q = d.path().join("b.png");
        img.save(&q).unwrap();
        assert_eq!(read_png_box(&q), None);
        fs::write(&q, b"nope").unwrap();
        assert_eq!(read_png_box(&q), None);
        assert_eq!(read_png_box(&d.path().join("missing.png")), None);
    }

    #[test]
    fn lines() {
        assert_eq!(box_line(Path::new("o/a/x.png"), Some([1, 2, 3, 4])), "o/a/x.png 1 2 3 4");
        assert_eq!(box_line(Path::new("o/a/y.png"), None), "o/a/y.png");
    }

    #[test]
    fn stale_temps_removed_live_kept() {
        let d = tempfile::tempdir().unwrap();
        // pid 4000000000 cannot exist (pid_max is at most 2^22); our own pid is alive
        fs::write(d.path().join(".x.png.4000000000.0.tmp"), b"").unwrap();
        fs::write(d.path().join(format!(".y.png.{}.3.tmp", std::process::id())), b"").unwrap();
        fs::write(d.path().join("z.png"), b"").unwrap();
        fs::write(d.path().join(".hidden.tmp"), b"").unwrap();
        let n = remove_stale_temps(d.path());
        if cfg!(target_os = "linux") {
            assert_eq!(n, 1);
            assert!(!d.path().join(".x.png.4000000000.0.tmp").exists());
        }
        assert!(d.path().join("z.png").exists() && d.path().join(".hidden.tmp").exists());
    }
}
