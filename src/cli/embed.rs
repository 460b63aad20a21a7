//! `facenet embed`: embeddings of images (files or folders) with a trained model, written as
//! a .npy matrix plus a text file of the image paths in row order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::prelude::Device;
use clap::Args;
use image::RgbImage;

use crate::data::has_image_extension;
use crate::data::image_io::load_rgb;
use crate::data::npy::write_matrix_f32;
use crate::data::preprocess::Standardization;
use crate::eval::embed::{embed_images, EmbedOptions};
use crate::train::checkpoint::load_inference_model;
use crate::util::atomic::write_atomic;
use crate::util::progress;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Images, or folders searched recursively for images
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Model: a training run's models folder, a checkpoint, or a facenet-pytorch .pt state dict
    #[arg(long)]
    pub model: PathBuf,
    /// Output matrix (N x D float32); the paths go to the same name with .txt
    #[arg(short, long, default_value = "embeddings.npy")]
    pub output: PathBuf,
    /// Image side fed to the model [default: the model's own]
    #[arg(long)]
    pub image_size: Option<u32>,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Standardise pixels as (x - 127.5) / 128 [default: what the model was trained with]
    #[arg(long)]
    pub use_fixed_image_standardization: bool,
    /// Concatenate each embedding with that of the horizontally flipped image
    #[arg(long)]
    pub use_flipped_images: bool,
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
    let device = Device::default();
    let paths = collect_images(&a.inputs)?;
    if paths.is_empty() {
        bail!("no images found in {:?}", a.inputs);
    }
    let (model, meta) = load_inference_model(&a.model, &device).with_context(|| format!("cannot load model {}", a.model.display()))?;
    let eo = EmbedOptions {
        image_size: a.image_size.unwrap_or(meta.image_size),
        batch_size: a.batch_size.max(1),
        standardization: if a.use_fixed_image_standardization { Standardization::Fixed } else { meta.standardization },
        use_flipped_images: a.use_flipped_images,
    };
    let pb = progress::bar(paths.len() as u64, "img");
    pb.set_message("embedding");
    let mut rows: Vec<f32> = Vec::new();
    let mut kept: Vec<PathBuf> = Vec::new();
    let mut skipped = 0usize;
    for chunk in paths.chunks(eo.batch_size) {
        let mut images: Vec<RgbImage> = Vec::with_capacity(chunk.len());
        for p in chunk {
            match load_rgb(p) {
                Ok(img) => {
                    images.push(img);
                    kept.push(p.clone());
                }
                Err(e) => {
                    pb.suspend(|| eprintln!("skipped: {e}"));
                    skipped += 1;
                }
            }
        }
        rows.extend(embed_images(&model, &images, &eo, &device));
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    if kept.is_empty() {
        bail!("none of the {} images could be read", paths.len());
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
    Ok(())
}
