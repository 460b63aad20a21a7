//! `facenet embed`: embeddings of images (files or folders) with a trained model, written as
//! a .npy matrix plus a text file of the image paths in row order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use image::RgbImage;

use super::limits;
use crate::align::crop::{choose_face, crop_and_resize, margin_box};
use crate::align::{load_detector, DetectorConfig, Mtcnn};
use crate::data::has_image_extension;
use crate::data::image_io::load_rgb;
use crate::data::npy::write_matrix_f32;
use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_images, EmbedOptions};
use crate::model::load::load_inference_model;
use crate::util::atomic::write_atomic;
use crate::util::device::DeviceArg;
use crate::util::precision::{set_precision, PrecisionArg};
use crate::util::progress;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArg,
    /// Images, or folders searched recursively for images
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Model: a training run's models folder, a checkpoint, a facenet-pytorch .pt state dict, or
    /// the reference's TensorFlow model (folder, checkpoint prefix or frozen .pb)
    #[arg(long)]
    pub model: PathBuf,
    /// Output matrix (N x D float32); the paths go to the same name with .txt
    #[arg(short, long, default_value = "embeddings.npy")]
    pub output: PathBuf,
    /// Image side fed to the model [default: the model's own]
    #[arg(long, value_parser = limits::image_size())]
    pub image_size: Option<u32>,
    /// Images per batch
    #[arg(long, default_value_t = 100, value_parser = limits::batch_size())]
    pub batch_size: usize,
    /// Standardise pixels as (x - 127.5) / 128 [default: what the model was trained with]
    #[arg(long)]
    pub use_fixed_image_standardization: bool,
    /// Concatenate each embedding with that of the horizontally flipped image
    #[arg(long)]
    pub use_flipped_images: bool,
    /// Raw photos: detect faces with MTCNN first and embed the main face of each photo
    /// (the face `facenet align` would keep: largest, nearest the centre), cropped with
    /// --margin and resized to the model's image size, as the reference's compare.py does
    #[arg(long)]
    pub align: bool,
    /// With --align: pixels added around the detected box (split over both sides)
    #[arg(long, default_value_t = 44.0, value_parser = limits::margin)]
    pub margin: f64,
}

/// The main face of a raw photo (largest, nearest the centre), widened by `margin / 2` per
/// side, clamped to the image and resized to `size`; `None` when MTCNN finds no face.
pub fn align_main_face(img: &RgbImage, mtcnn: &Mtcnn, size: u32, margin: f64) -> Option<RgbImage> {
    let faces = mtcnn.detect(img);
    let boxes: Vec<_> = faces.iter().map(|f| f.bbox).collect();
    let index = choose_face(&boxes, img.width(), img.height())?;
    let bb = margin_box(boxes[index], margin, img.width(), img.height())?;
    Some(crop_and_resize(img, bb, size))
}

/// Image files named by `inputs` (folders walked recursively, sorted).
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if has_image_extension(&p) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for i in inputs {
        if i.is_dir() {
            walk(i, &mut out)?;
        } else if i.is_file() {
            out.push(i.clone());
        } else {
            bail!("{}: no such file or folder", i.display());
        }
    }
    Ok(out)
}

pub fn run(a: EmbedArgs) -> Result<()> {
    let chosen = a.device.open()?;
    set_precision(a.precision.precision, &chosen)?;
    let device = chosen.device;
    let paths = collect_images(&a.inputs)?;
    if paths.is_empty() {
        bail!("no images found in {:?}", a.inputs);
    }
    let (model, meta) = load_inference_model(&a.model, &device).with_context(|| format!("cannot load model {}", a.model.display()))?;
    if let Some(size) = a.image_size {
        meta.check_image_size(size)?;
    }
    let eo = EmbedOptions {
        image_size: a.image_size.unwrap_or(meta.image_size),
        batch_size: a.batch_size.max(1),
        standardization: if a.use_fixed_image_standardization { Standardization::Fixed } else { meta.standardization },
        use_flipped_images: a.use_flipped_images,
    };
    let mtcnn = if a.align { Some(load_detector(DetectorConfig::default(), &device)?) } else { None };
    let pb = progress::bar(paths.len() as u64, "img");
    pb.set_message(if a.align { "aligning + embedding" } else { "embedding" });
    let mut rows: Vec<f32> = Vec::new();
    let mut kept: Vec<PathBuf> = Vec::new();
    let (mut skipped, mut no_face) = (0usize, 0usize);
    for chunk in paths.chunks(eo.batch_size) {
        let mut images: Vec<RgbImage> = Vec::with_capacity(chunk.len());
        for p in chunk {
            match load_rgb(p) {
                Ok(img) => {
                    let img = match &mtcnn {
                        None => img,
                        Some(m) => match align_main_face(&img, m, eo.image_size, a.margin) {
                            Some(face) => face,
                            None => {
                                pb.suspend(|| eprintln!("no face found, skipped: {}", p.display()));
                                no_face += 1;
                                continue;
                            }
                        },
                    };
                    images.push(img);
                    kept.push(p.clone());
                }
                Err(e) => {
                    pb.suspend(|| eprintln!("skipped: {e}"));
                    skipped += 1;
                }
            }
        }
        if images.is_empty() {
            pb.inc(chunk.len() as u64);
            continue;
        }
        rows.extend(embed_images(&model, &images, &eo, &device));
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if kept.is_empty() {
        bail!("none of the {} images could be read{}", paths.len(), if a.align { " or had a face" } else { "" });
    }
    let dim = rows.len() / kept.len();
    write_matrix_f32(&a.output, &rows, kept.len(), dim).with_context(|| format!("cannot write {}", a.output.display()))?;
    let list = a.output.with_extension("txt");
    let text: String = kept.iter().map(|p| format!("{}\n", p.display())).collect();
    write_atomic(&list, text.as_bytes()).with_context(|| format!("cannot write {}", list.display()))?;
    println!(
        "facenet embed: {} images -> {} ({} x {}), paths in {}{}",
        kept.len(),
        a.output.display(),
        kept.len(),
        dim,
        list.display(),
        if skipped > 0 { format!(", {skipped} unreadable skipped") } else { String::new() }
    );
    if no_face > 0 {
        println!("facenet embed: {no_face} photos without a detectable face skipped (listed above)");
    }
    Ok(())
}
