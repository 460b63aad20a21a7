//! The reference's TensorFlow models, read in Rust: checkpoints (`model-*.ckpt-*.index` +
//! `.data-*` shards, [`bundle`]) and frozen graphs (`.pb`, [`graph`]), their variables mapped
//! onto our Inception-ResNet-v1 ([`names`]).
//!
//! What a model path may be (as the reference's `facenet.load_model` takes them):
//! - a frozen graph file (`20180402-114759.pb`);
//! - a checkpoint prefix (`.../model-20180402-114759.ckpt-275`, the files are the prefix plus
//!   `.index` and `.data-00000-of-00001`), or its `.index` file;
//! - a model folder: the checkpoint its `checkpoint` file names (the file name only, as the
//!   reference takes it: the path in it is the training machine's), else the
//!   `model-*.ckpt-<step>` of the highest step, else its single `.pb`.
//!
//! The `.meta` file (the MetaGraphDef) is not needed: the weights are in the bundle and the
//! network is ours.

pub mod bundle;
pub mod graph;
pub mod names;
pub mod proto;
pub mod table;

use std::io;
use std::path::{Path, PathBuf};

pub use names::{infer_config, load_tf_weights};

/// Errors of the TensorFlow readers, each naming the file (and the tensor).
#[derive(Debug, thiserror::Error)]
pub enum TfError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a {what}: {reason}", path.display())]
    Format { path: PathBuf, what: &'static str, reason: String },
    #[error("{}: tensor {name}: {reason}", path.display())]
    Tensor { path: PathBuf, name: String, reason: String },
    #[error("{}: not the reference's Inception-ResNet-v1: {count} of its tensors are missing: {list}{more}", path.display())]
    Missing { path: PathBuf, count: usize, list: String, more: String },
    #[error("{}: {reason}", path.display())]
    NotAModel { path: PathBuf, reason: String },
}

impl TfError {
    fn io(path: &Path, source: io::Error) -> TfError {
        TfError::Io { path: path.to_path_buf(), source }
    }
}

/// Named tensors of a TensorFlow model file: a checkpoint or a frozen graph.
pub trait TensorSource {
    /// The file errors name (the checkpoint's `.index`, the `.pb`).
    fn path(&self) -> &Path;
    /// Every tensor name, in order.
    fn names(&self) -> Vec<&str>;
    /// The shape of a tensor, if it is there (float32 tensors only for a frozen graph).
    fn shape(&self, name: &str) -> Option<&[usize]>;
    /// The values of a float32 tensor (row-major, TensorFlow's layout).
    fn read_f32(&self, name: &str) -> Result<Vec<f32>, TfError>;
    /// How many values the file really holds (its shards' bytes / 4, the graph's stored
    /// values), whatever its shapes claim: a network is built only if the file can fill it.
    fn stored_values(&self) -> u64;
}

/// True for a file name ending in `.pb`.
fn is_pb(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("pb"))
}

/// What a TensorFlow model path designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TfModelPath {
    /// A checkpoint prefix (the files are the prefix + `.index` / `.data-*`).
    Checkpoint(PathBuf),
    /// A frozen graph file.
    Frozen(PathBuf),
}

/// The highest `<step>` of a `model-<name>.ckpt-<step>.index` file name.
fn step_of(index_name: &str) -> Option<u64> {
    let stem = index_name.strip_suffix(".index")?;
    let (_, step) = stem.rsplit_once(".ckpt-")?;
    step.parse().ok()
}

/// The TensorFlow model at `path`, if it is one (see the module's documentation); `None`
/// for anything else (our checkpoints, `.pt` files, missing paths).
pub fn find_tf_model(path: &Path) -> Option<TfModelPath> {
    if path.is_file() {
        if is_pb(path) {
            return Some(TfModelPath::Frozen(path.to_path_buf()));
        }
        let name = path.file_name()?.to_str()?;
        if let Some(prefix) = name.strip_suffix(".index") {
            return Some(TfModelPath::Checkpoint(path.with_file_name(prefix)));
        }
        return None;
    }
    if !path.exists() && bundle::with_suffix(path, ".index").is_file() {
        return Some(TfModelPath::Checkpoint(path.to_path_buf()));
    }
    if !path.is_dir() {
        return None;
    }
    // the `checkpoint` file (text proto): model_checkpoint_path: "<path>"
    if let Ok(text) = std::fs::read_to_string(path.join("checkpoint")) {
        let named = text.lines().find_map(|l| l.trim().strip_prefix("model_checkpoint_path:")).map(|v| v.trim().trim_matches('"'));
        if let Some(file) = named.and_then(|v| Path::new(v).file_name()) {
            let prefix = path.join(file);
            if bundle::with_suffix(&prefix, ".index").is_file() {
                return Some(TfModelPath::Checkpoint(prefix));
            }
        }
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path).ok()?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    let name = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let newest = files.iter().filter_map(|p| step_of(&name(p)).map(|s| (s, p))).max_by_key(|(s, _)| *s);
    if let Some((_, index)) = newest {
        return Some(TfModelPath::Checkpoint(index.with_file_name(name(index).trim_end_matches(".index"))));
    }
    let indexes: Vec<&PathBuf> = files.iter().filter(|p| name(p).ends_with(".index")).collect();
    if let [index] = indexes.as_slice() {
        return Some(TfModelPath::Checkpoint(index.with_file_name(name(index).trim_end_matches(".index"))));
    }
    let graphs: Vec<&PathBuf> = files.iter().filter(|p| is_pb(p)).collect();
    if let [pb] = graphs.as_slice() {
        return Some(TfModelPath::Frozen(pb.to_path_buf()));
    }
    None
}

/// Opens the tensors of a TensorFlow model.
pub fn open(model: &TfModelPath) -> Result<Box<dyn TensorSource>, TfError> {
    Ok(match model {
        TfModelPath::Checkpoint(prefix) => Box::new(bundle::Bundle::open(prefix)?),
        TfModelPath::Frozen(pb) => Box::new(graph::FrozenGraph::open(pb)?),
    })
}
