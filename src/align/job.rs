//! `facenet align`: every image of a class-per-folder dataset -> aligned face crops.
//!
//! Reproduces `align_dataset_mtcnn.py`: output `OUT/<identity>/<stem>.png` (with
//! `--detect_multiple_faces`: `<stem>_<k>.png` for every face), the crop rule of
//! [`super::crop`], and the bounding-box list `bounding_boxes_XXXXX.txt`. What differs, for
//! robustness:
//! - all cores work at once (rayon); `--shard K/N` takes every N-th image starting at K, so
//!   N processes (a job array) together write exactly what one run writes;
//! - every file is written atomically, so several processes on one output folder, or a rerun
//!   after `kill -9`, never see a partial file; an image whose output exists is skipped (with
//!   several faces: `<stem>_0.png`, written last, marks the image done);
//! - the bounding-box list is written at the end, atomically, covering every image of this
//!   run's share (finished images included: each crop keeps its box in a PNG text chunk), in
//!   dataset order, under a fixed name (`bounding_boxes_00000.txt`, or `K+1` for shard
//!   `K/N`) instead of a random one, so a resumed run ends with the same files, byte for byte;
//! - unreadable images are reported with a one-line reason and counted; the run goes on;
//! - a PNG too large to decode in memory (e.g. 20000 x 20000) is streamed: detected on a
//!   copy area-downscaled while it is decoded, cropped from a second decoding pass that keeps
//!   only the crop windows (memory: the detector's copy plus the crops). Other formats that
//!   large, interlaced PNGs and PNGs over the streaming limit are refused with their size
//!   (limits: [`crate::data::image_io::MAX_PIXELS`] and the constants beside it), each image
//!   on its own: the run goes on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::boxes::Rect;
use super::crop::{choose_face, crop_and_resize, margin_box};
use super::detector::{Mtcnn, StageTimes};
use super::output::{box_line, encode_png_with_box, read_png_box, remove_stale_temps};
use crate::data::dataset::Dataset;
use crate::data::image_io::load_rgb;
use crate::data::png_stream::{decode_png_shrunk, decode_png_windows, memory_limit, oversized_png, PngInfo};
use crate::util::atomic::write_atomic;

/// `--shard K/N`: this process handles the images whose index (in dataset order) is `K`
/// modulo `N`; `0 <= K < N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s.split_once('/').ok_or_else(|| format!("expected K/N (e.g. 0/4), got '{s}'"))?;
        let index: usize = k.trim().parse().map_err(|_| format!("shard index '{k}' is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("shard count '{n}' is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("need 0 <= K < N, got {index}/{count}"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Everything `align` needs besides the detector.
#[derive(Clone, Debug)]
pub struct AlignOptions {
    /// Dataset folder (or several joined with `:`).
    pub input_dir: String,
    pub output_dir: PathBuf,
    /// Side of the square crops (182).
    pub image_size: u32,
    /// Pixels added around the box, half on each side (44).
    pub margin: f64,
    pub detect_multiple_faces: bool,
    pub random_order: bool,
    pub shard: Option<Shard>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What happened to the images of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlignSummary {
    /// Images in this run's share.
    pub total: usize,
    /// Images with at least one crop written now.
    pub aligned: usize,
    /// Crops written now (more than `aligned` with `--detect_multiple_faces`).
    pub faces_written: usize,
    /// Images whose output existed already (skipped).
    pub existing: usize,
    /// Readable images without a face.
    pub no_face: usize,
    /// Images that could not be decoded.
    pub unreadable: usize,
    /// Images whose crop could not be written.
    pub failed: usize,
    /// Files skipped while reading the dataset (not images, empty folders).
    pub dataset_warnings: usize,
    pub elapsed: Duration,
    /// The bounding-box list written.
    pub bounding_boxes: PathBuf,
}

impl fmt::Display for AlignSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let done = self.total - self.existing;
        writeln!(f, "Total number of images: {}", self.total)?;
        writeln!(f, "Number of successfully aligned images: {}", self.aligned + self.existing)?;
        writeln!(f, "  aligned now:        {:>8}  ({} crops written)", self.aligned, self.faces_written)?;
        writeln!(f, "  already aligned:    {:>8}  (skipped)", self.existing)?;
        writeln!(f, "  no face found:      {:>8}", self.no_face)?;
        writeln!(f, "  unreadable:         {:>8}", self.unreadable)?;
        if self.failed > 0 {
            writeln!(f, "  write failed:       {:>8}", self.failed)?;
        }
        if self.dataset_warnings > 0 {
            writeln!(f, "  input skipped:      {:>8}  (empty folders, non-image files; not counted above)", self.dataset_warnings)?;
        }
        writeln!(f, "Bounding boxes: {}", self.bounding_boxes.display())?;
        write!(f, "Time: {:.1} s ({:.2} images/s processed)", secs, if secs > 0.0 { done as f64 / secs } else { 0.0 })
    }
}

/// One image to align: its identity folder name and file.
#[derive(Clone, Debug)]
struct WorkItem {
    order: usize,
    class: String,
    path: PathBuf,
}

enum Outcome {
    Existing(Vec<String>),
    Aligned(Vec<String>),
    NoFace(String),
    Unreadable(String),
    Failed(String),
}

/// The name of the bounding-box list for a run.
pub fn bounding_boxes_name(shard: Option<Shard>) -> String {
    let key = shard.filter(|s| s.count > 1).map(|s| s.index + 1).unwrap_or(0);
    format!("bounding_boxes_{key:05}.txt")
}

/// The output path of an image: `OUT/<class>/<stem>.png`.
pub fn output_path(output_dir: &Path, class: &str, image: &Path) -> PathBuf {
    let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    output_dir.join(class).join(format!("{stem}.png"))
}

/// `<stem>_<k>.png` beside `<stem>.png`.
fn numbered(single: &Path, k: usize) -> PathBuf {
    let stem = single.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    single.with_file_name(format!("{stem}_{k}.png"))
}

/// Aligns the dataset with `mtcnn`; per-image problems are logged and counted, only a
/// missing dataset or an unwritable output folder is an error.
pub fn align_dataset(opts: &AlignOptions, mtcnn: &Mtcnn) -> Result<AlignSummary> {
    let start = Instant::now();
    let dataset = Dataset::open(&opts.input_dir).with_context(|| format!("reading dataset {}", opts.input_dir))?;
    for w in &dataset.warnings {
        eprintln!("{w}");
    }
    std::fs::create_dir_all(&opts.output_dir).with_context(|| format!("{}: cannot create output folder", opts.output_dir.display()))?;

    let mut items: Vec<WorkItem> = Vec::new();
    let mut order = 0;
    for class in &dataset.classes {
        for path in &class.image_paths {
            if opts.shard.map(|s| order % s.count == s.index).unwrap_or(true) {
                items.push(WorkItem { order, class: class.name.clone(), path: path.clone() });
            }
            order += 1;
        }
    }
    // leftovers of killed runs
    let mut dirs: Vec<&str> = items.iter().map(|i| i.class.as_str()).collect();
    dirs.dedup();
    for d in dirs {
        remove_stale_temps(&opts.output_dir.join(d));
    }
    remove_stale_temps(&opts.output_dir);
    if opts.random_order {
        items.shuffle(&mut rand::thread_rng());
    }

    let pb = crate::util::progress::bar(items.len() as u64, "img");
    if !opts.progress {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_message("aligning");
    let faces_written = AtomicUsize::new(0);
    let mut outcomes: Vec<(usize, Outcome)> = items
        .par_iter()
        .map(|item| {
            let o = align_one(opts, mtcnn, item, &faces_written);
            // one line per problem, printed above the bar (which may be hidden)
            let msg = match &o {
                Outcome::NoFace(_) => Some(format!("Unable to align \"{}\"", item.path.display())),
                Outcome::Unreadable(r) => Some(format!("unreadable: {r}")),
                Outcome::Failed(r) => Some(format!("failed: {r}")),
                _ => None,
            };
            if let Some(m) = msg {
                pb.suspend(|| eprintln!("{m}"));
            }
            pb.inc(1);
            (item.order, o)
        })
        .collect();
    pb.finish_and_clear();
    outcomes.sort_by_key(|(o, _)| *o);

    let mut summary = AlignSummary { total: items.len(), dataset_warnings: dataset.warnings.len(), ..Default::default() };
    let mut text = String::new();
    for (_, o) in &outcomes {
        match o {
            Outcome::Existing(lines) => {
                summary.existing += 1;
                lines.iter().for_each(|l| {
                    text.push_str(l);
                    text.push('\n')
                });
            }
            Outcome::Aligned(lines) => {
                summary.aligned += 1;
                lines.iter().for_each(|l| {
                    text.push_str(l);
                    text.push('\n')
                });
            }
            Outcome::NoFace(line) => {
                summary.no_face += 1;
                text.push_str(line);
                text.push('\n');
            }
            Outcome::Unreadable(_) => summary.unreadable += 1,
            Outcome::Failed(_) => summary.failed += 1,
        }
    }
    summary.faces_written = faces_written.load(Ordering::Relaxed);
    summary.bounding_boxes = opts.output_dir.join(bounding_boxes_name(opts.shard));
    write_atomic(&summary.bounding_boxes, text.as_bytes())
        .with_context(|| format!("{}: cannot write", summary.bounding_boxes.display()))?;
    summary.elapsed = start.elapsed();
    Ok(summary)
}

/// "`path`: image too large to decode: W x H pixels (... GB as RGB, limit 0.5 GB)`why`".
fn too_large(path: &Path, w: u32, h: u32, why: &str) -> String {
    format!(
        "{}: image too large to decode: {w} x {h} pixels ({:.1} GB as RGB, limit {:.1} GB){why}",
        path.display(),
        w as f64 * h as f64 * 3.0 / 1e9,
        memory_limit() as f64 / (1u64 << 30) as f64
    )
}

/// Names the size of an image that is too large to decode within the decoder's memory limit
/// (it is skipped: memory stays bounded). Large PNGs do not get here: they are
/// streamed ([`align_streamed`]).
fn explain_load_error(path: &Path, message: String) -> String {
    if !message.contains("limit") {
        return message;
    }
    let dims = image::ImageReader::open(path).and_then(|r| r.with_guessed_format()).ok().and_then(|r| r.into_dimensions().ok());
    match dims {
        Some((w, h)) => too_large(path, w, h, "; only PNG is streamed"),
        None => message,
    }
}

/// The lines of an image whose crops exist, or `None` if it still has to be aligned.
fn existing_lines(single: &Path, multiple: bool) -> Option<Vec<String>> {
    if !multiple {
        return single.is_file().then(|| read_png_box(single).map(|b| vec![box_line(single, Some(b))]).unwrap_or_default());
    }
    if !numbered(single, 0).is_file() {
        return None;
    }
    let mut lines = Vec::new();
    for k in 0.. {
        let p = numbered(single, k);
        if !p.is_file() {
            break;
        }
        if let Some(b) = read_png_box(&p) {
            lines.push(box_line(&p, Some(b)));
        }
    }
    Some(lines)
}

fn align_one(opts: &AlignOptions, mtcnn: &Mtcnn, item: &WorkItem, written: &AtomicUsize) -> Outcome {
    let single = output_path(&opts.output_dir, &item.class, &item.path);
    // like the reference, every identity gets its folder, with or without crops
    if let Some(dir) = single.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Outcome::Failed(format!("{}: {e}", dir.display()));
        }
    }
    if let Some(lines) = existing_lines(&single, opts.detect_multiple_faces) {
        return Outcome::Existing(lines);
    }
    if let Some(info) = oversized_png(&item.path) {
        return align_streamed(opts, mtcnn, &item.path, &single, info, written);
    }
    let img = match load_rgb(&item.path) {
        Ok(img) => img,
        Err(e) => return Outcome::Unreadable(explain_load_error(&item.path, e.to_string())),
    };
    let boxes: Vec<Rect> = mtcnn.detect(&img).iter().map(|f| f.bbox).collect();
    let crops = plan_crops(opts, &single, &boxes, img.width(), img.height());
    write_crops(&single, &crops, written, |_, bb| Ok(crop_and_resize(&img, bb, opts.image_size)))
}

/// Crop windows larger than this many pixels are area-shrunk while a streamed PNG is
/// decoded (before the bilinear resize to `image_size`), which bounds memory; smaller ones,
/// every realistic face, give the same crop as an image decoded in memory.
const MAX_STREAMED_CROP_PIXELS: usize = 4096 * 4096;

/// A PNG too large to decode in memory (see [`oversized_png`]), decoded twice, row by row:
/// first area-downscaled to the detector's size ([`DetectorConfig::detect_size`]), the
/// faces found there mapped back to the original; then only the crop windows of the chosen
/// faces are kept, chosen and written exactly as for any other image.
///
/// [`DetectorConfig::detect_size`]: super::DetectorConfig::detect_size
fn align_streamed(opts: &AlignOptions, mtcnn: &Mtcnn, path: &Path, single: &Path, info: PngInfo, written: &AtomicUsize) -> Outcome {
    let (w, h) = (info.width, info.height);
    if info.interlaced {
        return Outcome::Unreadable(too_large(path, w, h, "; an interlaced PNG cannot be streamed"));
    }
    let (dw, dh) = mtcnn.config.detect_size(w as usize, h as usize);
    let small = match decode_png_shrunk(path, dw as u32, dh as u32) {
        Ok(img) => img,
        Err(e) => return Outcome::Unreadable(e.to_string()),
    };
    let scale = (w as f64 / dw as f64, h as f64 / dh as f64);
    let faces = mtcnn.detect_scaled(small.as_raw(), dw, dh, scale, &mut StageTimes::default());
    drop(small);
    let boxes: Vec<Rect> = faces.iter().map(|f| f.bbox).collect();
    let crops = plan_crops(opts, single, &boxes, w, h);
    if crops.is_empty() {
        return Outcome::NoFace(box_line(single, None));
    }
    let windows: Vec<[u32; 4]> = crops.iter().map(|(_, bb)| *bb).collect();
    let pixels = match decode_png_windows(path, &windows, MAX_STREAMED_CROP_PIXELS) {
        Ok(p) => p,
        Err(e) => return Outcome::Unreadable(e.to_string()),
    };
    write_crops(single, &crops, written, |k, _| {
        let win = &pixels[k];
        Ok(crop_and_resize(win, [0, 0, win.width(), win.height()], opts.image_size))
    })
}

/// The crops to write for the faces `boxes` of a `width x height` image: output path and
/// crop box, for the face the reference keeps or, with `--detect_multiple_faces`, for every
/// face (`<stem>_<k>.png`).
fn plan_crops(opts: &AlignOptions, single: &Path, boxes: &[Rect], width: u32, height: u32) -> Vec<(PathBuf, [u32; 4])> {
    let chosen: Vec<usize> =
        if opts.detect_multiple_faces { (0..boxes.len()).collect() } else { choose_face(boxes, width, height).into_iter().collect() };
    let mut crops = Vec::new();
    for (k, &i) in chosen.iter().enumerate() {
        let Some(bb) = margin_box(boxes[i], opts.margin, width, height) else { continue };
        let path = if opts.detect_multiple_faces { numbered(single, k) } else { single.to_path_buf() };
        crops.push((path, bb));
    }
    crops
}

/// Writes the crops of [`plan_crops`] (`pixels(k, box)` gives crop `k` at its final size),
/// the last first, so that `<stem>_0.png` marks the image done; the bounding-box lines.
fn write_crops(
    single: &Path,
    crops: &[(PathBuf, [u32; 4])],
    written: &AtomicUsize,
    pixels: impl Fn(usize, [u32; 4]) -> std::io::Result<image::RgbImage>,
) -> Outcome {
    if crops.is_empty() {
        return Outcome::NoFace(box_line(single, None));
    }
    let mut lines = Vec::with_capacity(crops.len());
    for (k, (path, bb)) in crops.iter().enumerate().rev() {
        let result = pixels(k, *bb).and_then(|img| encode_png_with_box(&img, *bb)).and_then(|png| write_atomic(path, &png));
        if let Err(e) = result {
            return Outcome::Failed(format!("{}: {e}", path.display()));
        }
        written.fetch_add(1, Ordering::Relaxed);
        lines.push(box_line(path, Some(*bb)));
    }
    lines.reverse();
    Outcome::Aligned(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parsing() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        assert!("a/3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert_eq!(Shard { index: 2, count: 3 }.to_string(), "2/3");
    }

    #[test]
    fn names() {
        assert_eq!(bounding_boxes_name(None), "bounding_boxes_00000.txt");
        assert_eq!(bounding_boxes_name(Some(Shard { index: 0, count: 1 })), "bounding_boxes_00000.txt");
        assert_eq!(bounding_boxes_name(Some(Shard { index: 2, count: 4 })), "bounding_boxes_00003.txt");
        let p = output_path(Path::new("out"), "Ann", Path::new("/in/Ann/Ann_0001.jpg"));
        assert_eq!(p, Path::new("out/Ann/Ann_0001.png"));
        assert_eq!(numbered(&p, 2), Path::new("out/Ann/Ann_0001_2.png"));
    }
}
