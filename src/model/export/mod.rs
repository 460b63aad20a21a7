//! `facenet export`: a network written for other tools.
//!
//! - [`onnx`]: an ONNX graph (opset 13, dynamic batch, batch norms folded, L2-normalised
//!   embeddings out; the input's standardisation in its metadata), messages in [`onnx_proto`];
//! - [`pytorch`]: a facenet-pytorch `InceptionResnetV1` state dict (`.pt`);
//! - [`safetensors`]: our own weights and `model.json` in one `.safetensors` file.
//!
//! The format comes from the output's extension ([`ExportFormat::from_path`]) unless named;
//! the file is written atomically ([`write_export`]).

pub mod onnx;
pub mod onnx_proto;
pub mod pytorch;
pub mod safetensors;

use std::fmt;
use std::path::{Path, PathBuf};

use super::load::ModelMeta;
use super::InceptionResnetV1;
use crate::util::atomic::write_atomic;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output's extension names no format.
    #[error("{path}: cannot tell the format from the extension; use .onnx, .pt (facenet-pytorch state dict) or .safetensors, or --format onnx|pytorch|safetensors")]
    UnknownExtension { path: PathBuf },
    /// `--format` names no format.
    #[error("unknown export format '{0}'; known: onnx, pytorch (or pt), safetensors")]
    UnknownFormat(String),
    /// A tensor could not be read or written.
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    /// The model and its description disagree.
    #[error("{0}")]
    Config(String),
    /// A weights export was given a network with folded batch norms.
    #[error("the network's batch norms are folded; export the weights of an unfolded network")]
    Folded,
    /// The ONNX graph was given a layer that is not folded.
    #[error("layer {0}: batch norm not folded")]
    Unfolded(String),
    /// Building the bytes failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Writing the output failed (nothing is left at `path`).
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// An export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// ONNX graph (`.onnx`).
    Onnx,
    /// facenet-pytorch state dict (`.pt`, `.pth`).
    Pytorch,
    /// Our weights + `model.json` (`.safetensors`).
    Safetensors,
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportFormat::Onnx => "onnx",
            ExportFormat::Pytorch => "pytorch",
            ExportFormat::Safetensors => "safetensors",
        })
    }
}

impl ExportFormat {
    /// The format `--format NAME` names (case-insensitive).
    pub fn from_name(name: &str) -> Result<Self, ExportError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "onnx" => Ok(ExportFormat::Onnx),
            "pytorch" | "pt" | "pth" | "torch" => Ok(ExportFormat::Pytorch),
            "safetensors" => Ok(ExportFormat::Safetensors),
            _ => Err(ExportError::UnknownFormat(name.to_string())),
        }
    }

    /// The format `path`'s extension names.
    pub fn from_path(path: &Path) -> Result<Self, ExportError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "onnx" => Ok(ExportFormat::Onnx),
            "pt" | "pth" => Ok(ExportFormat::Pytorch),
            "safetensors" => Ok(ExportFormat::Safetensors),
            _ => Err(ExportError::UnknownExtension { path: path.to_path_buf() }),
        }
    }
}

/// The file `format` makes of `model` (a network in inference mode whose batch norms are
/// not folded, as [`crate::model::load::load_model`] returns it).
pub fn export_bytes(model: InceptionResnetV1, meta: &ModelMeta, format: ExportFormat) -> Result<Vec<u8>, ExportError> {
    match format {
        ExportFormat::Onnx => onnx::onnx_bytes(model, meta),
        ExportFormat::Pytorch => pytorch::pt_bytes(&pytorch::state_dict(&model)?),
        ExportFormat::Safetensors => safetensors::safetensors_bytes(&model, meta),
    }
}

/// Writes [`export_bytes`] to `out` atomically (a temporary file beside it, renamed once
/// complete). Returns the number of bytes written.
pub fn write_export(model: InceptionResnetV1, meta: &ModelMeta, format: ExportFormat, out: &Path) -> Result<usize, ExportError> {
    let bytes = export_bytes(model, meta, format)?;
    write_atomic(out, &bytes).map_err(|source| ExportError::Write { path: out.to_path_buf(), source })?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_names_and_extensions() {
        assert_eq!(ExportFormat::from_path(Path::new("a/m.ONNX")).unwrap(), ExportFormat::Onnx);
        assert_eq!(ExportFormat::from_path(Path::new("m.pth")).unwrap(), ExportFormat::Pytorch);
        assert_eq!(ExportFormat::from_path(Path::new("m.safetensors")).unwrap(), ExportFormat::Safetensors);
        let e = ExportFormat::from_path(Path::new("out/m.h5")).unwrap_err().to_string();
        assert!(e.contains("out/m.h5") && e.contains("--format"), "{e}");
        assert!(ExportFormat::from_path(Path::new("model")).is_err());
        assert_eq!(ExportFormat::from_name("PyTorch").unwrap(), ExportFormat::Pytorch);
        assert!(ExportFormat::from_name("tflite").unwrap_err().to_string().contains("tflite"));
    }
}
