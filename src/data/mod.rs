//! Data: class-per-folder datasets, LFW pairs files, image loading and resampling.

pub mod augment;
pub mod dataset;
pub mod image_io;
pub mod jpeg;
pub mod loader;
pub mod loader_bench;
pub mod npy;
pub mod pairs;
pub mod png_stream;
pub mod preprocess;
pub mod resample;

/// File extensions (lower case) that are read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp"];

/// True when `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &std::path::Path) -> bool {
    path.extension().and_then(|e| e.to_str()).map(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e))).unwrap_or(false)
}
