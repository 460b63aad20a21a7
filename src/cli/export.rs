//! `facenet export MODEL OUT`: write a model for other tools (ONNX, a facenet-pytorch state
//! dict, one `.safetensors`), the format taken from OUT's extension unless `--format` names it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::model::export::{write_export, ExportFormat};
use crate::model::load::load_model;
use crate::util::device::DeviceSpec;

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Model: a run's models folder, a checkpoint, an exported .safetensors, or a
    /// facenet-pytorch .pt state dict
    pub model: PathBuf,
    /// Output file: .onnx (ONNX graph), .pt/.pth (facenet-pytorch state dict) or .safetensors
    pub out: PathBuf,
    /// Output format, whatever OUT's extension: onnx, pytorch, safetensors
    #[arg(long)]
    pub format: Option<String>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    // the format first: a wrong name or extension is an error before any loading
    let format = match &a.format {
        Some(f) => ExportFormat::from_name(f)?,
        None => ExportFormat::from_path(&a.out)?,
    };
    // exporting is a copy of weights: always on the CPU
    let device = DeviceSpec::Cpu.open()?.device;
    let (model, meta) = load_model(&a.model, &device).with_context(|| format!("cannot load model {}", a.model.display()))?;
    let notes = match format {
        ExportFormat::Pytorch if meta.model_def != "inception_resnet_v1" || meta.embedding_size != 512 => Some(format!(
            "note: facenet_pytorch.InceptionResnetV1 is the full network with 512-d embeddings; this {} of {}-d embeddings loads into a network of its own shape only",
            meta.model_def, meta.embedding_size
        )),
        _ => None,
    };
    let bytes = write_export(model, &meta, format, &a.out)?;
    println!(
        "wrote {} ({format}, {:.1} MB): {}, {}-d embeddings, {}x{} input, {:?} standardisation",
        a.out.display(),
        bytes as f64 / 1e6,
        meta.model_def,
        meta.embedding_size,
        meta.image_size,
        meta.image_size,
        meta.standardization
    );
    if let Some(n) = notes {
        eprintln!("{n}");
    }
    Ok(())
}
