//! Atomic file output: write to a temporary file beside the target, then rename.
//!
//! A reader (or a rerun after `kill -9`) sees either the old file, no file, or the
//! complete new file, never a half-written one. Temporary names carry the process id
//! and a counter, so several processes writing into one folder never collide.
//!
//! The rename alone protects against a killed process (`kill -9`, Ctrl-C): the page cache
//! outlives the process. [`write_atomic_durable`] also syncs the data to disk before the
//! rename, for files that must survive a power cut (checkpoints); it costs a disk flush per
//! file, too much for thousands of image crops.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temporary path used while `target` is being written.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    target.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Writes `bytes` to `target` atomically, creating parent folders as needed.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(target, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], and the data is on disk before the rename.
pub fn write_atomic_durable(target: &Path, bytes: &[u8]) -> io::Result<()> {
    write_impl(target, true, |f| f.write_all(bytes))
}

/// Calls `fill` with a writer on a temporary file and renames it to `target` once
/// `fill` succeeded and the data is flushed. On error the temporary file is removed.
pub fn write_atomic_with<F>(target: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
{
    write_impl(target, false, fill)
}

fn write_impl<F>(target: &Path, durable: bool, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut io::BufWriter<fs::File>) -> io::Result<()>,
{
    if let Some(parent) = target.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)?;
        }
    }
    let tmp = temp_path_for(target);
    let result = (|| {
        let file = fs::File::create(&tmp)?;
        let mut w = io::BufWriter::new(file);
        fill(&mut w)?;
        w.flush()?;
        if durable {
            w.get_ref().sync_data()?;
        }
        drop(w);
        fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/c.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        // no temporary files left behind
        let left: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        let r = write_atomic_with(&p, |_| Err(io::Error::other("boom")));
        assert!(r.is_err());
        assert!(!p.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
