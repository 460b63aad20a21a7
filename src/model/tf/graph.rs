//! Frozen TensorFlow graphs (`.pb`, a serialised `GraphDef`, as the reference's
//! `freeze_graph.py` writes them): the variables are `Const` nodes of the same names whose
//! `value` attribute holds the tensor (`tensor_content` as raw little-endian bytes, or
//! `float_val` for a constant filled with one value).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::{GraphDef, TensorProto, DT_FLOAT};
use super::{TensorSource, TfError};

/// The float constants of a frozen graph.
#[derive(Debug)]
pub struct FrozenGraph {
    path: PathBuf,
    consts: BTreeMap<String, (Vec<usize>, TensorProto)>,
}

impl FrozenGraph {
    /// Reads the graph at `path` and keeps its float `Const` nodes.
    pub fn open(path: &Path) -> Result<FrozenGraph, TfError> {
        let bytes = std::fs::read(path).map_err(|e| TfError::io(path, e))?;
        let bad = |reason: String| TfError::Format { path: path.to_path_buf(), what: "TensorFlow GraphDef", reason };
        let graph = GraphDef::decode(bytes.as_slice()).map_err(|e| bad(format!("{e}")))?;
        drop(bytes);
        if graph.node.is_empty() {
            return Err(bad("no nodes".into()));
        }
        let mut consts = BTreeMap::new();
        for mut node in graph.node {
            if node.op != "Const" {
                continue;
            }
            let Some(tensor) = node.attr.remove("value").and_then(|v| v.tensor) else { continue };
            if tensor.dtype != DT_FLOAT {
                continue;
            }
            let shape = tensor.tensor_shape.as_ref().map_or(Ok(Vec::new()), |s| s.dims());
            let shape =
                shape.map_err(|e| TfError::Tensor { path: path.to_path_buf(), name: node.name.clone(), reason: format!("shape: {e}") })?;
            consts.insert(node.name, (shape, tensor));
        }
        Ok(FrozenGraph { path: path.to_path_buf(), consts })
    }
}

/// Most values of a constant filled from fewer stored values (`float_val`): freezing stores
/// weights as `tensor_content`; a fill of more is refused rather than allocated.
pub const MAX_FILL: usize = 1 << 20;

impl TensorSource for FrozenGraph {
    fn path(&self) -> &Path {
        &self.path
    }

    fn stored_values(&self) -> u64 {
        self.consts.values().map(|(_, t)| t.tensor_content.len() as u64 / 4 + t.float_val.len() as u64).sum()
    }

    fn names(&self) -> Vec<&str> {
        self.consts.keys().map(String::as_str).collect()
    }

    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.consts.get(name).map(|(s, _)| s.as_slice())
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>, TfError> {
        let err = |reason: String| TfError::Tensor { path: self.path.clone(), name: name.to_string(), reason };
        let (shape, t) = self.consts.get(name).ok_or_else(|| err("no float Const node of this name".into()))?;
        let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| err(format!("shape {shape:?} too large")))?;
        if !t.tensor_content.is_empty() {
            if t.tensor_content.len() as u64 != count as u64 * 4 {
                return Err(err(format!("{} bytes of content for shape {shape:?} ({count} floats)", t.tensor_content.len())));
            }
            return Ok(t.tensor_content.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect());
        }
        // TensorFlow's rule: fewer values than the shape holds repeat the last one
        match t.float_val.last() {
            Some(_) if t.float_val.len() < count && count > MAX_FILL => {
                Err(err(format!("{count} values filled from {} (more than {MAX_FILL} are refused)", t.float_val.len())))
            }
            Some(&last) if t.float_val.len() <= count => {
                Ok(t.float_val.iter().copied().chain(std::iter::repeat_n(last, count - t.float_val.len())).collect())
            }
            None if count == 0 => Ok(Vec::new()),
            Some(_) => Err(err(format!("{} values for shape {shape:?}", t.float_val.len()))),
            None => Err(err("no values".into())),
        }
    }
}
