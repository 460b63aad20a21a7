//! `facenet compare`: align photos with MTCNN (as the reference's compare.py: first detected
//! face, margin 44, resized to 160) and print the Euclidean distance matrix of their embeddings.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use image::RgbImage;

use super::limits;
use crate::align::crop::{crop_and_resize, margin_box};
use crate::align::{load_detector, DetectorConfig, Mtcnn};
use crate::data::image_io::load_rgb;
use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_images, EmbedOptions};
use crate::model::load::load_inference_model;
use crate::util::device::DeviceArg;
use crate::util::precision::{set_precision, PrecisionArg};

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArg,
    /// [MODEL] IMAGE...: with --model, every argument is an image; without it, the first
    /// argument is the model (the reference's `compare.py MODEL IMAGE...`)
    #[arg(required = true)]
    pub args: Vec<PathBuf>,
    /// Model: a run's models folder, a checkpoint, a facenet-pytorch .pt state dict, or the
    /// reference's TensorFlow model (folder, checkpoint prefix or frozen .pb)
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Side of the aligned face in pixels
    #[arg(long, default_value_t = 160, value_parser = limits::image_size())]
    pub image_size: u32,
    /// Pixels added around the detected box (half on each side)
    #[arg(long, default_value_t = 44.0, value_parser = limits::margin)]
    pub margin: f64,
    /// Standardise pixels as (x - 127.5) / 128 [default: what the model was trained with]
    #[arg(long)]
    pub use_fixed_image_standardization: bool,
    /// Accepted for compatibility with the reference; has no effect
    #[arg(long)]
    pub gpu_memory_fraction: Option<f64>,
}

/// The reference's compare.py alignment: the first detected face, widened by `margin / 2`,
/// clamped, resized to `size` (bilinear). `None` when no face is found.
pub fn align_first_face(img: &RgbImage, mtcnn: &Mtcnn, size: u32, margin: f64) -> Option<RgbImage> {
    let faces = mtcnn.detect(img);
    let first = faces.first()?;
    let bb = margin_box(first.bbox, margin, img.width(), img.height())?;
    Some(crop_and_resize(img, bb, size))
}

pub fn run(a: CompareArgs) -> Result<()> {
    let (model_path, images) = match &a.model {
        Some(m) => (m.clone(), a.args.clone()),
        None => match a.args.split_first() {
            Some((m, rest)) => (m.clone(), rest.to_vec()),
            None => bail!("give a model and at least two images"),
        },
    };
    if images.is_empty() {
        bail!("give at least one image to compare");
    }
    let chosen = a.device.open()?;
    set_precision(a.precision.precision, &chosen)?;
    let device = chosen.device;
    let (model, meta) =
        load_inference_model(&model_path, &device).with_context(|| format!("cannot load model {}", model_path.display()))?;
    meta.check_image_size(a.image_size)?;
    let mtcnn = load_detector(DetectorConfig::default(), &device)?;
    let mut kept = Vec::new();
    let mut faces = Vec::new();
    for p in &images {
        match load_rgb(p) {
            Ok(img) => match align_first_face(&img, &mtcnn, a.image_size, a.margin) {
                Some(face) => {
                    kept.push(p.clone());
                    faces.push(face);
                }
                None => eprintln!("can't detect a face, skipped: {}", p.display()),
            },
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    if faces.is_empty() {
        bail!("no face found in any of the {} images", images.len());
    }
    let eo = EmbedOptions {
        image_size: a.image_size,
        batch_size: 100,
        standardization: if a.use_fixed_image_standardization { Standardization::Fixed } else { meta.standardization },
        use_flipped_images: false,
    };
    let emb = embed_images(&model, &faces, &eo, &device);
    let dim = emb.len() / faces.len();
    println!("Images:");
    for (i, p) in kept.iter().enumerate() {
        println!("{i}: {}", p.display());
    }
    println!("\nDistance matrix");
    print!("    ");
    for i in 0..kept.len() {
        print!("    {i:<6}");
    }
    println!();
    for i in 0..kept.len() {
        print!("{i:<4}");
        for j in 0..kept.len() {
            let d: f32 =
                emb[i * dim..(i + 1) * dim].iter().zip(&emb[j * dim..(j + 1) * dim]).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
            print!("  {d:8.4}");
        }
        println!();
    }
    Ok(())
}
