//! The published MTCNN weights: where they are cached, how they are fetched, how they load.
//!
//! The weights are facenet-pytorch 2.6.0's `facenet_pytorch/data/{pnet,rnet,onet}.pt`
//! (the reference's `det1-3.npy` with the kernels' spatial axes swapped). They are fetched
//! once into `$FACENET_HOME/mtcnn/` (default `~/.facenet/mtcnn/`): `pip download` of the
//! package's wheel into a temporary folder, then the three files are read out of the wheel
//! (a zip archive) by Rust code and written atomically. The `.pt` files are legacy PyTorch
//! pickles; burn-store's reader parses them as data, nothing in them is executed.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::store::{ModuleSnapshot, PytorchStore};
use burn::tensor::Device;

use super::nets::{Nets, ONet, PNet, RNet};
use crate::util::atomic::write_atomic;

/// The Python package whose wheel carries the weights, as a pip requirement.
pub const PACKAGE: &str = "facenet-pytorch==2.6.0";
/// The wheel's file name (what `pip download` produces).
pub const WHEEL_NAME: &str = "facenet_pytorch-2.6.0-py3-none-any.whl";
/// The three weight files and their sizes in bytes (a check that the right version came).
pub const WEIGHT_FILES: [(&str, u64); 3] = [("pnet.pt", 28_570), ("rnet.pt", 403_147), ("onet.pt", 1_559_269)];
const WHEEL_DIR: &str = "facenet_pytorch/data/";

/// Why the weights are not usable.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(
        "the MTCNN weights are not in {dir} and could not be downloaded: {reason}\n\
         To fix: run `facenet fetch-weights` on a machine with Python's pip and network access \
         (it runs `python3 -m pip download --no-deps {PACKAGE}`), or download the wheel \
         {WHEEL_NAME} yourself and run `facenet fetch-weights --from PATH/TO/{WHEEL_NAME}`; \
         set FACENET_HOME to choose the cache folder (default ~/.facenet)"
    )]
    Unavailable { dir: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadSource { path: PathBuf, reason: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot load MTCNN weights: {reason} (delete the file and run `facenet fetch-weights`)")]
    Load { path: PathBuf, reason: String },
}

/// Where the three weight files live: `$FACENET_HOME/mtcnn` ([`crate::util::cache`]).
pub fn weights_dir() -> PathBuf {
    crate::util::cache::mtcnn_dir()
}

/// True when all three files are in `dir` with their expected sizes.
pub fn weights_present(dir: &Path) -> bool {
    WEIGHT_FILES.iter().all(|(name, size)| fs::metadata(dir.join(name)).map(|m| m.len() == *size).unwrap_or(false))
}

/// Returns the weights folder, fetching the weights first if they are missing.
pub fn ensure_weights() -> Result<PathBuf, WeightsError> {
    let dir = weights_dir();
    if !weights_present(&dir) {
        eprintln!("MTCNN weights not found in {}; fetching them (once)...", dir.display());
        fetch_weights(&dir, None)?;
    }
    Ok(dir)
}

/// Puts the three weight files into `dir`.
///
/// `source` may be the facenet-pytorch wheel, or a folder holding that wheel or the three
/// `.pt` files; without it the wheel is downloaded with `pip download`.
pub fn fetch_weights(dir: &Path, source: Option<&Path>) -> Result<(), WeightsError> {
    match source {
        Some(src) if src.is_dir() => {
            let wheel = src.join(WHEEL_NAME);
            if wheel.is_file() {
                install_from_wheel(&wheel, dir)
            } else if weights_present(src) {
                for (name, _) in WEIGHT_FILES {
                    let from = src.join(name);
                    let bytes = fs::read(&from).map_err(|e| WeightsError::BadSource { path: from.clone(), reason: e.to_string() })?;
                    let to = dir.join(name);
                    write_atomic(&to, &bytes).map_err(|source| WeightsError::Write { path: to, source })?;
                }
                Ok(())
            } else {
                Err(WeightsError::BadSource {
                    path: src.to_path_buf(),
                    reason: format!("holds neither {WHEEL_NAME} nor pnet.pt, rnet.pt and onet.pt"),
                })
            }
        }
        Some(wheel) => install_from_wheel(wheel, dir),
        None => {
            let tmp = fs::create_dir_all(dir)
                .and_then(|_| {
                    let t = dir.join(format!(".download-{}", std::process::id()));
                    fs::create_dir_all(&t).map(|_| t)
                })
                .map_err(|source| WeightsError::Write { path: dir.to_path_buf(), source })?;
            let result = download_wheel(&tmp).and_then(|wheel| install_from_wheel(&wheel, dir));
            let _ = fs::remove_dir_all(&tmp);
            result.map_err(|e| match e {
                WeightsError::Unavailable { .. } => e,
                other => WeightsError::Unavailable { dir: dir.to_path_buf(), reason: other.to_string() },
            })
        }
    }
}

/// Runs `pip download --no-deps` for [`PACKAGE`] into `into`; returns the wheel's path.
fn download_wheel(into: &Path) -> Result<PathBuf, WeightsError> {
    let unavailable = |reason: String| WeightsError::Unavailable { dir: weights_dir(), reason };
    let wheel = crate::util::wheel::pip_download(PACKAGE, into).map_err(|e| unavailable(format!("{e:#}")))?;
    if wheel.file_name().is_some_and(|n| n == WHEEL_NAME) {
        Ok(wheel)
    } else {
        Err(unavailable(format!("pip downloaded {} instead of {WHEEL_NAME}", wheel.display())))
    }
}

/// Reads the three weight files out of the wheel and writes them atomically into `dir`.
pub fn install_from_wheel(wheel: &Path, dir: &Path) -> Result<(), WeightsError> {
    let bad = |reason: String| WeightsError::BadSource { path: wheel.to_path_buf(), reason };
    let file = fs::File::open(wheel).map_err(|e| bad(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a wheel (zip) file: {e}")))?;
    let mut files = Vec::new();
    for (name, size) in WEIGHT_FILES {
        let entry_name = format!("{WHEEL_DIR}{name}");
        let mut entry = zip.by_name(&entry_name).map_err(|e| bad(format!("{entry_name}: {e}")))?;
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(|e| bad(format!("{entry_name}: {e}")))?;
        if bytes.len() as u64 != size {
            return Err(bad(format!("{entry_name} has {} bytes, expected {size} (wrong package version?)", bytes.len())));
        }
        files.push((name, bytes));
    }
    for (name, bytes) in files {
        let to = dir.join(name);
        write_atomic(&to, &bytes).map_err(|source| WeightsError::Write { path: to, source })?;
    }
    Ok(())
}

fn load_one<M: ModuleSnapshot>(module: &mut M, path: &Path) -> Result<(), WeightsError> {
    let fail = |reason: String| WeightsError::Load { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(fail("file not found".into()));
    }
    let mut store = PytorchStore::from_file(path).with_key_remapping(r"^(prelu\d+)\.weight$", "$1.alpha");
    let result = module.load_from(&mut store).map_err(|e| fail(e.to_string()))?;
    if !result.errors.is_empty() {
        let errs: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        return Err(fail(errs.join("; ")));
    }
    if !result.missing.is_empty() {
        let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).collect();
        return Err(fail(format!("missing tensors: {}", missing.join(", "))));
    }
    Ok(())
}

/// Builds the three nets on `device` with the weights from `dir`.
pub fn load_nets(dir: &Path, device: &Device) -> Result<Nets, WeightsError> {
    let mut pnet = PNet::new(device);
    let mut rnet = RNet::new(device);
    let mut onet = ONet::new(device);
    load_one(&mut pnet, &dir.join("pnet.pt"))?;
    load_one(&mut rnet, &dir.join("rnet.pt"))?;
    load_one(&mut onet, &dir.join("onet.pt"))?;
    Ok(Nets { pnet, rnet, onet, device: device.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_wheels_are_reported() {
        let d = tempfile::tempdir().unwrap();
        let fake = d.path().join("x.whl");
        fs::write(&fake, b"not a zip").unwrap();
        let e = install_from_wheel(&fake, &d.path().join("out")).unwrap_err();
        assert!(e.to_string().contains("not a wheel"), "{e}");
        // a zip without the weight files
        let z = d.path().join("empty.whl");
        let mut w = zip::ZipWriter::new(fs::File::create(&z).unwrap());
        w.start_file("other.txt", zip::write::SimpleFileOptions::default()).unwrap();
        w.finish().unwrap();
        let e = install_from_wheel(&z, &d.path().join("out")).unwrap_err();
        assert!(e.to_string().contains("facenet_pytorch/data/pnet.pt"), "{e}");
        assert!(!d.path().join("out").exists());
        let e = fetch_weights(&d.path().join("out"), Some(d.path())).unwrap_err();
        assert!(e.to_string().contains("holds neither"), "{e}");
    }

    #[test]
    fn missing_weights_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let e = load_nets(d.path(), &Device::flex()).unwrap_err();
        assert!(e.to_string().contains("pnet.pt"), "{e}");
        assert!(!weights_present(d.path()));
    }
}
