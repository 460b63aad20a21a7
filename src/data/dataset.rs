//! Class-per-folder datasets: one sub-folder per identity, every image in it of that identity.
//!
//! As in the reference, several roots may be joined with `:`; identities are sorted by name
//! within each root and the roots' identities are concatenated; the label of an identity is
//! its index in that order. Unlike the reference, images within an identity are sorted too
//! (the reference uses the file system's order), so every run sees the same dataset.
//! Non-image files and identities without images are reported and skipped.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use super::has_image_extension;

/// One identity: its folder name and its image files (sorted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageClass {
    pub name: String,
    pub image_paths: Vec<PathBuf>,
}

/// Something skipped while reading a dataset; the run goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetWarning {
    /// A file that is not an image (by extension) inside an identity folder.
    NotAnImage(PathBuf),
    /// An identity folder with no image in it.
    EmptyClass(PathBuf),
    /// A plain file directly in a dataset root (only folders are identities).
    StrayFile(PathBuf),
}

impl fmt::Display for DatasetWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnImage(p) => write!(f, "{}: not an image file, skipped", p.display()),
            Self::EmptyClass(p) => write!(f, "{}: identity folder has no images, skipped", p.display()),
            Self::StrayFile(p) => write!(f, "{}: file outside any identity folder, skipped", p.display()),
        }
    }
}

/// Why a dataset cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: dataset folder does not exist")]
    Missing { path: PathBuf },
    #[error("{path}: not a folder")]
    NotADir { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{spec}: no identity with at least one image")]
    Empty { spec: String },
}

/// A dataset: identities in label order, plus what was skipped while reading it.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub classes: Vec<ImageClass>,
    pub warnings: Vec<DatasetWarning>,
}

impl Dataset {
    /// Reads one root or several joined with `:`.
    pub fn open(spec: &str) -> Result<Self, DatasetError> {
        let mut ds = Dataset::default();
        for root in spec.split(':').filter(|s| !s.is_empty()) {
            let root = expand_tilde(root);
            read_root(&root, &mut ds)?;
        }
        if ds.classes.is_empty() {
            return Err(DatasetError::Empty { spec: spec.to_string() });
        }
        Ok(ds)
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    pub fn num_images(&self) -> usize {
        self.classes.iter().map(|c| c.image_paths.len()).sum()
    }

    /// All images with their labels, in label order.
    pub fn images_and_labels(&self) -> (Vec<PathBuf>, Vec<usize>) {
        let mut paths = Vec::with_capacity(self.num_images());
        let mut labels = Vec::with_capacity(self.num_images());
        for (label, c) in self.classes.iter().enumerate() {
            for p in &c.image_paths {
                paths.push(p.clone());
                labels.push(label);
            }
        }
        (paths, labels)
    }
}

/// Replaces a leading `~/` by `$HOME/` (command lines copied from the reference use it).
pub fn expand_tilde(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest);
        }
    }
    PathBuf::from(path)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.to_path_buf(), source }
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).map(|n| n.starts_with('.')).unwrap_or(false)
}

fn read_root(root: &Path, ds: &mut Dataset) -> Result<(), DatasetError> {
    if !root.exists() {
        return Err(DatasetError::Missing { path: root.to_path_buf() });
    }
    if !root.is_dir() {
        return Err(DatasetError::NotADir { path: root.to_path_buf() });
    }
    for class_dir in sorted_entries(root)? {
        if is_hidden(&class_dir) {
            continue;
        }
        if !class_dir.is_dir() {
            ds.warnings.push(DatasetWarning::StrayFile(class_dir));
            continue;
        }
        let mut images = Vec::new();
        for p in sorted_entries(&class_dir)? {
            if is_hidden(&p) || p.is_dir() {
                continue;
            }
            if has_image_extension(&p) {
                images.push(p);
            } else {
                ds.warnings.push(DatasetWarning::NotAnImage(p));
            }
        }
        if images.is_empty() {
            ds.warnings.push(DatasetWarning::EmptyClass(class_dir));
            continue;
        }
        let name = class_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        ds.classes.push(ImageClass { name, image_paths: images });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"x").unwrap();
    }

    #[test]
    fn reads_sorted_classes_and_skips_junk() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("Bob/b2.png"));
        touch(&r.join("Bob/b1.jpg"));
        touch(&r.join("Bob/notes.txt"));
        touch(&r.join("Alice/a.JPG"));
        fs::create_dir_all(r.join("Empty")).unwrap();
        touch(&r.join("README"));
        let ds = Dataset::open(r.to_str().unwrap()).unwrap();
        let names: Vec<_> = ds.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Alice", "Bob"]);
        assert_eq!(ds.classes[1].image_paths, vec![r.join("Bob/b1.jpg"), r.join("Bob/b2.png")]);
        assert_eq!(ds.num_images(), 3);
        assert!(ds.warnings.contains(&DatasetWarning::NotAnImage(r.join("Bob/notes.txt"))));
        assert!(ds.warnings.contains(&DatasetWarning::EmptyClass(r.join("Empty"))));
        assert!(ds.warnings.contains(&DatasetWarning::StrayFile(r.join("README"))));
        let (paths, labels) = ds.images_and_labels();
        assert_eq!(paths.len(), 3);
        assert_eq!(labels, vec![0, 1, 1]);
    }

    #[test]
    fn joins_roots_with_colon() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        touch(&a.path().join("Zed/1.png"));
        touch(&b.path().join("Amy/1.png"));
        let spec = format!("{}:{}", a.path().display(), b.path().display());
        let ds = Dataset::open(&spec).unwrap();
        let names: Vec<_> = ds.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Zed", "Amy"], "roots are concatenated, not merged");
    }

    #[test]
    fn refuses_missing_and_empty() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let e = Dataset::open(missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        fs::create_dir_all(d.path().join("Empty")).unwrap();
        let e = Dataset::open(d.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(e, DatasetError::Empty { .. }), "{e}");
        let f = d.path().join("file.txt");
        touch(&f);
        assert!(matches!(Dataset::open(f.to_str().unwrap()), Err(DatasetError::NotADir { .. })));
    }
}
