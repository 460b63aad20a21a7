//! The folders of a training run: `logs_base_dir/<stamp>/` (arguments.txt,
//! revision_info.txt, steps.csv, epochs.csv, lfw_result.txt, TensorBoard's
//! events.out.tfevents.*) and `models_base_dir/<stamp>/` (options.json, checkpoints), with the
//! same `<YYYYmmdd-HHMMSS>` stamp.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::options::TrainOptions;
use crate::data::dataset::expand_tilde;
use crate::util::atomic::write_atomic;

/// A run's folders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDirs {
    pub stamp: String,
    pub log_dir: PathBuf,
    pub model_dir: PathBuf,
}

/// The current local time as the reference stamps runs: `YYYYmmdd-HHMMSS`.
pub fn timestamp() -> String {
    chrono::Local::now().format("%Y%m%d-%H%M%S").to_string()
}

impl RunDirs {
    /// Creates `<logs_base_dir>/<stamp>` and `<models_base_dir>/<stamp>` for a new run. When a
    /// run with this stamp exists already (two runs in one second), `-2`, `-3`, ... is added.
    pub fn create(logs_base_dir: &str, models_base_dir: &str) -> Result<RunDirs> {
        let logs = expand_tilde(logs_base_dir);
        let models = expand_tilde(models_base_dir);
        let base = timestamp();
        let mut stamp = base.clone();
        let mut k = 1;
        while logs.join(&stamp).exists() || models.join(&stamp).exists() {
            k += 1;
            stamp = format!("{base}-{k}");
        }
        let dirs = RunDirs { log_dir: logs.join(&stamp), model_dir: models.join(&stamp), stamp };
        for d in [&dirs.log_dir, &dirs.model_dir] {
            fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(dirs)
    }

    /// The folders of an existing run, from its models folder and log folder.
    pub fn existing(model_dir: &Path, log_dir: &Path) -> Result<RunDirs> {
        let stamp = model_dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        fs::create_dir_all(log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
        Ok(RunDirs { stamp, log_dir: log_dir.to_path_buf(), model_dir: model_dir.to_path_buf() })
    }

    /// Writes `arguments.txt` (one `name: value` line per option).
    pub fn write_arguments(&self, opts: &TrainOptions) -> Result<()> {
        let p = self.log_dir.join("arguments.txt");
        write_atomic(&p, opts.arguments_text().as_bytes()).with_context(|| format!("cannot write {}", p.display()))
    }

    /// Writes (or, when resuming, appends to) `revision_info.txt`: the command line, versions,
    /// and the git revision of the source tree the binary was built in, when it is there.
    pub fn write_revision_info(&self, command_line: &str) -> Result<()> {
        let p = self.log_dir.join("revision_info.txt");
        let mut text = if p.exists() { fs::read_to_string(&p).unwrap_or_default() + "====================\n" } else { String::new() };
        text.push_str(&format!("arguments: {command_line}\n--------------------\n"));
        text.push_str(&format!(
            "facenet version: {}\nburn version: 0.22\ndate: {}\n--------------------\n",
            env!("CARGO_PKG_VERSION"),
            timestamp()
        ));
        match git_revision() {
            Some((rev, dirty)) => text.push_str(&format!("git hash: {rev}{}\n", if dirty { " (with uncommitted changes)" } else { "" })),
            None => text.push_str("git hash: unknown (binary not in a git checkout)\n"),
        }
        write_atomic(&p, text.as_bytes()).with_context(|| format!("cannot write {}", p.display()))
    }
}

/// The git revision of the checkout holding the running binary, and whether it has
/// uncommitted changes.
fn git_revision() -> Option<(String, bool)> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let out = Command::new("git").arg("-C").arg(dir).args(["rev-parse", "HEAD"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let rev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dirty = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    Some((rev, dirty))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_both_folders_with_one_stamp() {
        let d = tempfile::tempdir().unwrap();
        let logs = d.path().join("logs").to_string_lossy().into_owned();
        let models = d.path().join("models").to_string_lossy().into_owned();
        let a = RunDirs::create(&logs, &models).unwrap();
        let b = RunDirs::create(&logs, &models).unwrap();
        assert!(a.log_dir.is_dir() && a.model_dir.is_dir());
        assert_eq!(a.log_dir.file_name(), a.model_dir.file_name());
        assert_ne!(a.stamp, b.stamp);
        assert_eq!(a.stamp.len(), 15, "{}", a.stamp);
        a.write_arguments(&TrainOptions::default()).unwrap();
        a.write_revision_info("facenet train --x").unwrap();
        a.write_revision_info("facenet train --resume y").unwrap();
        let info = fs::read_to_string(a.log_dir.join("revision_info.txt")).unwrap();
        assert!(info.contains("arguments: facenet train --x") && info.contains("--resume y"), "{info}");
        let args = fs::read_to_string(a.log_dir.join("arguments.txt")).unwrap();
        assert!(args.contains("batch_size: 90\n"), "{args}");
    }
}
