//! Real sample photos for the demo: they ship in the `insightface` wheel on the Python package
//! index (`insightface/data/images/`: a group photo and a portrait), fetched once into
//! `$FACENET_HOME/samples/`.

use std::path::PathBuf;

use anyhow::Result;

use crate::util::atomic::write_atomic;
use crate::util::wheel::{pip_download, read_member};

/// The package carrying the photos.
pub const PACKAGE: &str = "insightface==2.1";
/// The photos taken from it.
pub const PHOTOS: [&str; 2] = ["t1.jpg", "Tom_Hanks_54745.png"];
const MEMBER_DIR: &str = "insightface/data/images/";

pub use crate::util::cache::samples_dir;

/// Paths of the sample photos, fetching them first if needed.
pub fn ensure_samples() -> Result<Vec<PathBuf>> {
    let dir = samples_dir();
    let paths: Vec<PathBuf> = PHOTOS.iter().map(|p| dir.join(p)).collect();
    if paths.iter().all(|p| p.is_file()) {
        return Ok(paths);
    }
    let tmp = dir.join(format!(".download-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let wheel = pip_download(PACKAGE, &tmp)?;
        for (name, path) in PHOTOS.iter().zip(&paths) {
            write_atomic(path, &read_member(&wheel, &format!("{MEMBER_DIR}{name}"))?)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result?;
    Ok(paths)
}
