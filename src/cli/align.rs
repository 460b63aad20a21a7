//! `facenet align INPUT_DIR OUTPUT_DIR`: the reference's `align_dataset_mtcnn.py`.

use anyhow::{Context, Result};
use clap::Args;

use super::detect::DetectorArgs;
use super::limits::{self, MAX_CROP_SIZE, MAX_MARGIN};
use crate::align::{align_dataset, load_detector, AlignOptions, Shard};
use crate::data::dataset::expand_tilde;
use crate::util::device::DeviceArg;
use crate::util::precision::{set_precision, Precision};

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "y" | "on" => Ok(true),
        "0" | "false" | "no" | "n" | "off" => Ok(false),
        _ => Err(format!("expected true/false, got '{s}'")),
    }
}

#[derive(Args, Debug)]
pub struct AlignArgs {
    /// Folder with one sub-folder of unaligned images per identity
    pub input_dir: String,
    /// Folder for the aligned crops (OUTPUT_DIR/<identity>/<image>.png)
    pub output_dir: String,
    /// Side of the square crops in pixels
    #[arg(long, default_value_t = 182, value_parser = limits::u32_in(1, MAX_CROP_SIZE))]
    pub image_size: u32,
    /// Pixels added around the face box (half on each side) before resizing
    #[arg(long, default_value_t = 44, value_parser = limits::u32_in(0, MAX_MARGIN))]
    pub margin: u32,
    /// Process the images in random order (several processes can share one output folder)
    #[arg(long)]
    pub random_order: bool,
    /// Write every face of an image (<stem>_<k>.png), not only the most central large one
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = parse_bool)]
    pub detect_multiple_faces: bool,
    /// Accepted for compatibility with the reference; has no effect
    #[arg(long)]
    pub gpu_memory_fraction: Option<f64>,
    /// Worker threads (default: all cores)
    #[arg(long, value_parser = limits::threads())]
    pub threads: Option<usize>,
    /// Handle only shard K of N (0 <= K < N): every N-th image starting at K
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub detector: DetectorArgs,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(a: AlignArgs) -> Result<()> {
    if let Some(f) = a.gpu_memory_fraction {
        eprintln!("note: --gpu_memory_fraction {f} has no effect here (no GPU memory is reserved up front)");
    }
    if let Some(t) = a.threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
    }
    let config = a.detector.config()?;
    let opts = AlignOptions {
        input_dir: a.input_dir.clone(),
        output_dir: expand_tilde(&a.output_dir),
        image_size: a.image_size,
        margin: a.margin as f64,
        detect_multiple_faces: a.detect_multiple_faces,
        random_order: a.random_order,
        shard: a.shard,
        progress: true,
    };
    let device = a.device.open()?;
    set_precision(Precision::F32, &device)?;
    eprintln!("Creating networks and loading parameters on {}", device.description);
    let mtcnn = load_detector(config, &device.device)?;
    let summary = align_dataset(&opts, &mtcnn).with_context(|| format!("aligning {}", a.input_dir))?;
    println!("{summary}");
    Ok(())
}
