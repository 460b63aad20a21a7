//! The cache folder and every path in it, in one place:
//!
//! ```text
//! $FACENET_HOME (default ~/.facenet)
//!   mtcnn/        the published MTCNN weights (`facenet fetch-weights`)
//!   samples/      the demo's sample photos
//!   testdata/     files the test suite fetches once
//! ```

use std::path::{Path, PathBuf};

/// The cache folder: `$FACENET_HOME`, else `~/.facenet`.
pub fn facenet_home() -> PathBuf {
    if let Some(h) = std::env::var_os("FACENET_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    match std::env::var_os("HOME") {
        Some(home) => Path::new(&home).join(".facenet"),
        None => PathBuf::from(".facenet"),
    }
}

/// Where the three MTCNN weight files live.
pub fn mtcnn_dir() -> PathBuf {
    facenet_home().join("mtcnn")
}

/// Where the demo's sample photos live.
pub fn samples_dir() -> PathBuf {
    facenet_home().join("samples")
}

/// Where the test suite keeps what it fetched.
pub fn testdata_dir() -> PathBuf {
    facenet_home().join("testdata")
}
