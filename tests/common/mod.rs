//! Helpers shared by the integration tests (each test file that needs them says `mod common;`).
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use facenet::util::cache::testdata_dir;

/// The sample photos of the insightface 2.1 wheel, fetched once into the cache.
pub fn photos() -> Option<&'static Path> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = testdata_dir().join("insightface-2.1");
        if dir.join("t1.jpg").is_file() && dir.join("Tom_Hanks_54745.png").is_file() {
            return Some(dir);
        }
        let tmp = testdata_dir().join(format!(".download-{}", std::process::id()));
        fs::create_dir_all(&tmp).ok()?;
        let ok = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "--disable-pip-version-check", "-d"])
            .arg(&tmp)
            .arg("insightface==2.1")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let result = (|| {
            if !ok {
                return None;
            }
            let wheel = fs::read_dir(&tmp).ok()?.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|e| e == "whl"))?;
            let mut zip = zip::ZipArchive::new(fs::File::open(wheel).ok()?).ok()?;
            for i in 0..zip.len() {
                let mut f = zip.by_index(i).ok()?;
                let name = f.name().to_string();
                if let Some(file) = name.strip_prefix("insightface/data/images/") {
                    let mut bytes = Vec::new();
                    f.read_to_end(&mut bytes).ok()?;
                    facenet::util::atomic::write_atomic(&dir.join(file), &bytes).ok()?;
                }
            }
            Some(dir.clone())
        })();
        let _ = fs::remove_dir_all(&tmp);
        if result.is_none() {
            eprintln!("SKIPPED: sample photos unavailable (python3 -m pip download insightface==2.1 failed)");
        }
        result
    })
    .as_deref()
}

/// CRC-32 (PNG chunks), for tests that patch image headers.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}
