//! Model files on disk, and loading a network from them.
//!
//! A checkpoint folder (written by `facenet train`) holds the network:
//!
//! ```text
//! ckpt-000007/
//!   model.safetensors               weights (burn names = facenet-pytorch keys, BN gamma/beta)
//!   model.json                      ModelMeta + network config + epoch/step
//! ```
//!
//! [`load_inference_model`] turns any of: a run's models folder (latest checkpoint), one
//! checkpoint folder or its `model.safetensors`, a single `.safetensors` that carries its
//! `model.json` in its `__metadata__` (what `facenet export` writes), or a facenet-pytorch
//! `InceptionResnetV1` state dict (`.pt`/`.pth`, 512-d) into a network in inference mode
//! ([`load_model`]: the same, batch norms not folded); [`load_pretrained`] loads the same
//! files into a training network (`--pretrained_model`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burn::module::Module;
use burn::store::{ApplyResult, ModuleSnapshot, PytorchStore, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Config, MAX_IMAGE_SIZE};
use super::registry::{canonical_name, config_from_def, ModelOptions};
use super::tf::{self, find_tf_model, TfModelPath};
use crate::data::preprocess::Standardization;

/// Weights file of a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// Meta + config file of a checkpoint.
pub const MODEL_JSON: &str = "model.json";
/// The `format` field of `model.json`.
pub const FORMAT: &str = "facenet-checkpoint-1";
/// Checkpoint folders are `ckpt-<epoch, 6 digits>`.
pub const CKPT_PREFIX: &str = "ckpt-";

/// What a user of a trained network needs to feed it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Canonical `--model_def` name (`inception_resnet_v1`, `inception_resnet_v1_small`).
    pub model_def: String,
    /// Embedding width.
    pub embedding_size: usize,
    /// Input side in pixels the network was trained on (training crop size).
    pub image_size: u32,
    /// Pixel standardisation of its input.
    pub standardization: Standardization,
    /// Classes of the training Logits layer (0 when it had none). Models returned by
    /// [`load_inference_model`] leave that layer out.
    pub num_classes: usize,
}

impl ModelMeta {
    /// Whether the network takes `size x size` input (`1..=MAX_IMAGE_SIZE`, and not too small
    /// for the layers its `model_def` pads `VALID`): an `--image_size` given for this model.
    pub fn check_image_size(&self, size: u32) -> Result<()> {
        if !(1..=MAX_IMAGE_SIZE).contains(&size) {
            bail!("--image_size must be in 1..={MAX_IMAGE_SIZE}, got {size}");
        }
        let options = ModelOptions { embedding_size: self.embedding_size, ..ModelOptions::default() };
        let config = config_from_def(&self.model_def, &options)?;
        config.cost(size as usize).map_err(|e| anyhow!("--image_size {size}: {e} ({})", self.model_def))?;
        Ok(())
    }
}

/// `model.json` of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    pub format: String,
    pub meta: ModelMeta,
    /// The exact network configuration (architecture, BN settings, classes).
    pub config: InceptionResnetV1Config,
    pub epoch: usize,
    pub global_step: u64,
}

impl ModelFile {
    /// Checks every field read from a `model.json` (the file is input like any other): the
    /// network's numbers ([`InceptionResnetV1Config::validate`], whose limits keep building it
    /// bounded) and the meta's agreement with them.
    pub fn check(&self) -> Result<(), String> {
        self.config.validate().map_err(|e| format!("invalid network configuration: {e}"))?;
        let m = &self.meta;
        if canonical_name(&m.model_def).is_none() {
            return Err(format!("unknown model_def '{}'", m.model_def));
        }
        if m.embedding_size != self.config.embedding_size {
            return Err(format!("meta.embedding_size {} differs from the network's {}", m.embedding_size, self.config.embedding_size));
        }
        if m.num_classes != self.config.num_classes {
            return Err(format!("meta.num_classes {} differs from the network's {}", m.num_classes, self.config.num_classes));
        }
        if !(1..=MAX_IMAGE_SIZE).contains(&m.image_size) {
            return Err(format!("meta.image_size must be in 1..={MAX_IMAGE_SIZE}, got {}", m.image_size));
        }
        self.config.cost(m.image_size as usize).map(|_| ())
    }
}

/// The complete checkpoints of a models folder, oldest first, with their epochs.
pub fn checkpoint_dirs(model_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(model_dir).with_context(|| format!("cannot read {}", model_dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(num) = name.strip_prefix(CKPT_PREFIX) {
            if let Ok(epoch) = num.parse::<usize>() {
                let p = entry.path();
                if p.join(MODEL_FILE).is_file() && p.join(MODEL_JSON).is_file() {
                    out.push((epoch, p));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint of a models folder, if any.
pub fn latest_checkpoint(model_dir: &Path) -> Result<Option<PathBuf>> {
    Ok(checkpoint_dirs(model_dir)?.pop().map(|(_, p)| p))
}

/// The checkpoint folder `path` designates: a checkpoint folder, its `model.safetensors`, or
/// a run's models folder (its newest checkpoint).
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new("."));
        if dir.join(MODEL_JSON).is_file() {
            return Ok(dir.to_path_buf());
        }
        bail!("{}: no {MODEL_JSON} beside this weights file", path.display());
    }
    if !path.exists() {
        bail!("{}: no such model file or folder", path.display());
    }
    if path.join(MODEL_JSON).is_file() && path.join(MODEL_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    match latest_checkpoint(path)? {
        Some(p) => Ok(p),
        None => bail!(
            "{}: not a model: expected a checkpoint folder ({MODEL_FILE} + {MODEL_JSON}), a run's models folder with {CKPT_PREFIX}* checkpoints, a facenet-pytorch .pt state dict, or the reference's TensorFlow model (a folder with its checkpoint or .pb, a checkpoint prefix, a .pb file)",
            path.display()
        ),
    }
}

/// Reads `model.json` of a checkpoint folder.
pub fn read_model_file(ckpt_dir: &Path) -> Result<ModelFile> {
    let p = ckpt_dir.join(MODEL_JSON);
    let text = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let mf: ModelFile = serde_json::from_str(&text).with_context(|| format!("{}: not a facenet model description", p.display()))?;
    if mf.format != FORMAT {
        bail!("{}: unknown checkpoint format '{}' (expected {FORMAT})", p.display(), mf.format);
    }
    mf.check().map_err(|e| anyhow!("{}: {e}", p.display()))?;
    // the network it describes must fit in its weights file (at 2 bytes a value at the least),
    // so that a wrong description is refused before the network is built, not after
    let weights = ckpt_dir.join(MODEL_FILE);
    if let Ok(len) = fs::metadata(&weights).map(|m| m.len()) {
        let values = mf.config.clone().with_num_classes(0).values();
        if values as u64 * 2 > len {
            bail!("{}: describes a network of {values} values, more than {} ({len} bytes) holds", p.display(), weights.display());
        }
    }
    Ok(mf)
}

fn not_logits(path: &str, _container: &str) -> bool {
    !path.starts_with("logits.")
}

fn check_applied(result: &ApplyResult, source: &Path) -> Result<()> {
    if !result.errors.is_empty() {
        let list: Vec<String> = result.errors.iter().take(5).map(|e| format!("{e}")).collect();
        bail!("{}: {} tensor(s) do not fit the network, e.g. {}", source.display(), result.errors.len(), list.join("; "));
    }
    let missing: Vec<&str> = result.missing.iter().map(|(p, _)| p.as_str()).filter(|p| !p.starts_with("logits.")).collect();
    if !missing.is_empty() {
        bail!(
            "{}: {} tensor(s) of the network are missing from the file, e.g. {}",
            source.display(),
            missing.len(),
            missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Loads a checkpoint's weights into `model` (any device). With `with_logits` false the
/// Logits layer is left as it is.
pub fn load_weights(model: &mut InceptionResnetV1, weights: &Path, with_logits: bool) -> Result<ApplyResult> {
    let mut store = SafetensorsStore::from_file(weights).allow_partial(!with_logits);
    if !with_logits {
        store = store.with_predicate(not_logits);
    }
    let result = model.load_from(&mut store).map_err(|e| anyhow!("{}: {e}", weights.display()))?;
    check_applied(&result, weights)?;
    Ok(result)
}

/// True for a PyTorch state dict file name (`.pt`, `.pth`).
pub fn is_pytorch_file(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("pt") || e.eq_ignore_ascii_case("pth"))
}

/// Loads a facenet-pytorch `InceptionResnetV1` state dict into `model` (its Logits layer
/// is not loaded).
pub fn load_pytorch_weights(model: &mut InceptionResnetV1, path: &Path) -> Result<ApplyResult> {
    let mut store = PytorchStore::from_file(path).allow_partial(true).with_predicate(not_logits);
    let result = model.load_from(&mut store).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    check_applied(&result, path)?;
    Ok(result)
}

/// The meta of a facenet-pytorch `InceptionResnetV1` (VGGFace2 / CASIA-WebFace weights).
pub fn facenet_pytorch_meta() -> ModelMeta {
    ModelMeta {
        model_def: "inception_resnet_v1".into(),
        embedding_size: 512,
        image_size: 160,
        standardization: Standardization::Fixed,
        num_classes: 0,
    }
}

/// Loads a network for inference from (a) a run's models folder (newest checkpoint), (b) one
/// checkpoint folder or its `model.safetensors`, (c) a single `.safetensors` with its
/// `model.json` in the header ([`SAFETENSORS_MODEL_KEY`]), or (d) a facenet-pytorch
/// `InceptionResnetV1` state dict (`.pt`/`.pth`: 512-d, fixed standardisation, 160x160).
/// The network comes back in inference mode (`valid()`: BN running statistics, no dropout)
/// on `device`, without its Logits layer, with its batch norms folded into the convolutions
/// ([`InceptionResnetV1::fold_batch_norm`]).
pub fn load_inference_model(path: &Path, device: &Device) -> Result<(InceptionResnetV1, ModelMeta)> {
    let (model, meta) = load_model(path, device)?;
    Ok((model.fold_batch_norm(), meta))
}

/// [`load_inference_model`] without folding the batch norms: the weights exactly as the file
/// holds them (`facenet export` writes them out again).
pub fn load_model(path: &Path, device: &Device) -> Result<(InceptionResnetV1, ModelMeta)> {
    if is_pytorch_file(path) && path.is_file() {
        let meta = facenet_pytorch_meta();
        let mut model = InceptionResnetV1Config::new().with_embedding_size(512).with_num_classes(0).init(device);
        load_pytorch_weights(&mut model, path)?;
        return Ok((model.valid(), meta));
    }
    if let Some(tf) = find_tf_model(path) {
        return load_tf_model(&tf, device);
    }
    if path.is_file() && !path.parent().unwrap_or(Path::new(".")).join(MODEL_JSON).is_file() {
        if let Some(mf) = read_safetensors_model_file(path)? {
            let mut model = mf.config.clone().with_num_classes(0).init(device);
            load_weights(&mut model, path, false)?;
            return Ok((model.valid(), mf.meta));
        }
    }
    let dir = resolve_checkpoint(path)?;
    let mf = read_model_file(&dir)?;
    let mut model = mf.config.clone().with_num_classes(0).init(device);
    load_weights(&mut model, &dir.join(MODEL_FILE), false)?;
    Ok((model.valid(), mf.meta))
}

/// The `__metadata__` key of a single-file `.safetensors` model that holds its `model.json`.
pub const SAFETENSORS_MODEL_KEY: &str = "facenet.model_json";

/// The `model.json` a `.safetensors` file carries under [`SAFETENSORS_MODEL_KEY`] (checked
/// like a checkpoint's), `None` for a file that is not safetensors or has no such entry.
/// Reads the header only (a u64 length, then that much JSON), so a large file that is not
/// a model costs nothing.
pub fn read_safetensors_model_file(path: &Path) -> Result<Option<ModelFile>> {
    use std::io::Read;
    let mut f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut n = [0u8; 8];
    if f.read_exact(&mut n).is_err() {
        return Ok(None);
    }
    let n = u64::from_le_bytes(n);
    // safetensors' own limit on a header is 100 MB
    if n > 100_000_000 || n > len.saturating_sub(8) {
        return Ok(None);
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).with_context(|| format!("cannot read {}", path.display()))?;
    let Ok(header) = serde_json::from_slice::<serde_json::Value>(&header) else { return Ok(None) };
    let Some(text) = header.get("__metadata__").and_then(|m| m.get(SAFETENSORS_MODEL_KEY)).and_then(|v| v.as_str()) else {
        return Ok(None);
    };
    let mf: ModelFile = serde_json::from_str(text)
        .with_context(|| format!("{}: {SAFETENSORS_MODEL_KEY}: not a facenet model description", path.display()))?;
    if mf.format != FORMAT {
        bail!("{}: unknown model format '{}' (expected {FORMAT})", path.display(), mf.format);
    }
    mf.check().map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let values = mf.config.clone().with_num_classes(0).values();
    if values as u64 * 2 > len {
        bail!("{}: describes a network of {values} values, more than the file ({len} bytes) holds", path.display());
    }
    Ok(Some(mf))
}

/// `--pretrained_model`: loads weights into a training network. Accepts what
/// [`load_inference_model`] accepts; the Logits layer is loaded only from one of our
/// checkpoints with the same number of classes. Returns a one-line description.
pub fn load_pretrained(model: &mut InceptionResnetV1, path: &Path) -> Result<String> {
    if is_pytorch_file(path) && path.is_file() {
        if model.embedding_size() != 512 {
            bail!(
                "{}: facenet-pytorch weights have a 512-d embedding; train with --embedding_size 512 --model_def inception_resnet_v1",
                path.display()
            );
        }
        load_pytorch_weights(model, path)?;
        return Ok(format!("facenet-pytorch weights {} (Logits layer initialised fresh)", path.display()));
    }
    if let Some(tf) = find_tf_model(path) {
        return load_tf_pretrained(model, &tf);
    }
    let dir = resolve_checkpoint(path)?;
    let mf = read_model_file(&dir)?;
    if mf.meta.embedding_size != model.embedding_size() {
        bail!("{}: embedding size {} differs from --embedding_size {}", dir.display(), mf.meta.embedding_size, model.embedding_size());
    }
    let with_logits = mf.config.num_classes == model.num_classes();
    load_weights(model, &dir.join(MODEL_FILE), with_logits)?;
    Ok(format!(
        "{} (epoch {}, {}){}",
        dir.display(),
        mf.epoch,
        mf.meta.model_def,
        if with_logits { "" } else { "; Logits layer initialised fresh (different number of classes)" }
    ))
}

/// The meta of a TensorFlow model of the reference: input 160 x 160 and per-image
/// standardisation, the defaults of the reference's `validate_on_lfw.py` (its 2018 models were
/// trained with `--use_fixed_image_standardization`: pass that flag, as with the reference).
pub fn tf_meta(config: &InceptionResnetV1Config) -> ModelMeta {
    ModelMeta {
        model_def: "inception_resnet_v1".into(),
        embedding_size: config.embedding_size,
        image_size: 160,
        standardization: Standardization::PerImage,
        num_classes: config.num_classes,
    }
}

/// Loads the reference's TensorFlow checkpoint or frozen graph (see [`tf`]) for inference
/// (not folded, without Logits layer).
pub fn load_tf_model(model: &TfModelPath, device: &Device) -> Result<(InceptionResnetV1, ModelMeta)> {
    let src = tf::open(model)?;
    let config = tf::infer_config(src.as_ref())?;
    let meta = tf_meta(&config);
    let mut net = config.with_num_classes(0).init(device);
    tf::load_tf_weights(&mut net, src.as_ref(), false)?;
    Ok((net.valid(), meta))
}

/// `--pretrained_model` from the reference's TensorFlow checkpoint or frozen graph: the
/// network of `--model_def inception_resnet_v1` with the same embedding size; its Logits layer
/// too when the numbers of classes agree.
pub fn load_tf_pretrained(model: &mut InceptionResnetV1, tf_model: &TfModelPath) -> Result<String> {
    let src = tf::open(tf_model)?;
    let config = tf::infer_config(src.as_ref())?;
    let path = src.path().display().to_string();
    if config.embedding_size != model.embedding_size() {
        bail!("{path}: embedding size {} differs from --embedding_size {}", config.embedding_size, model.embedding_size());
    }
    let with_logits = config.num_classes > 0 && config.num_classes == model.num_classes();
    tf::load_tf_weights(model, src.as_ref(), with_logits)
        .with_context(|| format!("{path} does not fit the network of --model_def (the reference's is inception_resnet_v1)"))?;
    Ok(format!(
        "TensorFlow {} {path}{}",
        if matches!(tf_model, TfModelPath::Frozen(_)) { "frozen graph" } else { "checkpoint" },
        if with_logits { "" } else { " (Logits layer initialised fresh)" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tensor};

    fn small(classes: usize) -> InceptionResnetV1Config {
        InceptionResnetV1Config::small(16, 1.0, classes)
    }

    /// Writes a PyTorch (>= 1.6, zip) `torch.save(state_dict)` file by hand: `archive/data.pkl`
    /// (an `OrderedDict` of `torch._utils._rebuild_tensor_v2` calls on persistent storages)
    /// and one `archive/data/<k>` entry per tensor.
    /// One state-dict entry: name, shape, float or integer values.
    type Entry = (String, Vec<usize>, Result<Vec<f32>, Vec<i64>>);

    fn write_torch_state_dict(path: &Path, entries: &[Entry]) {
        use std::io::Write;
        fn s(out: &mut Vec<u8>, v: &str) {
            out.push(b'X');
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        fn int(out: &mut Vec<u8>, v: usize) {
            out.push(b'J');
            out.extend_from_slice(&(v as i32).to_le_bytes());
        }
        fn tuple(out: &mut Vec<u8>, v: &[usize]) {
            out.push(b'(');
            v.iter().for_each(|&x| int(out, x));
            out.push(b't');
        }
        let ordered_dict = |out: &mut Vec<u8>| {
            out.extend_from_slice(b"ccollections\nOrderedDict\n)R");
        };
        let mut pkl = vec![0x80, 2];
        ordered_dict(&mut pkl);
        pkl.push(b'(');
        let file = fs::File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let opt = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (k, (name, shape, data)) in entries.iter().enumerate() {
            let numel: usize = shape.iter().product();
            let mut stride = vec![1usize; shape.len()];
            for i in (0..shape.len().saturating_sub(1)).rev() {
                stride[i] = stride[i + 1] * shape[i + 1];
            }
            s(&mut pkl, name);
            pkl.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            pkl.push(b'(');
            s(&mut pkl, "storage");
            let storage = if data.is_ok() { "FloatStorage" } else { "LongStorage" };
            pkl.extend_from_slice(format!("ctorch\n{storage}\n").as_bytes());
            s(&mut pkl, &k.to_string());
            s(&mut pkl, "cpu");
            int(&mut pkl, numel);
            pkl.extend_from_slice(b"tQ");
            int(&mut pkl, 0);
            tuple(&mut pkl, shape);
            tuple(&mut pkl, &stride);
            pkl.push(0x89); // False
            ordered_dict(&mut pkl);
            pkl.extend_from_slice(b"tR");
            let bytes: Vec<u8> = match data {
                Ok(f) => f.iter().flat_map(|v| v.to_le_bytes()).collect(),
                Err(i) => i.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            zip.start_file(format!("archive/data/{k}"), opt).unwrap();
            zip.write_all(&bytes).unwrap();
        }
        pkl.extend_from_slice(b"u.");
        zip.start_file("archive/data.pkl", opt).unwrap();
        zip.write_all(&pkl).unwrap();
        zip.start_file("archive/version", opt).unwrap();
        zip.write_all(b"3\n").unwrap();
        zip.start_file("archive/byteorder", opt).unwrap();
        zip.write_all(b"little").unwrap();
        zip.finish().unwrap();
    }

    /// The state dict facenet-pytorch would hold for `model`: BN `weight`/`bias` (burn's
    /// gamma/beta), `num_batches_tracked`, Linear weights as `[out, in]`, plus a Logits layer
    /// of another size.
    fn pytorch_state_dict(model: &InceptionResnetV1) -> Vec<Entry> {
        use burn::module::{ModuleVisitor, Param};
        struct V(Vec<String>, Vec<Entry>);
        impl ModuleVisitor for V {
            fn enter_module(&mut self, name: &str, _: &str) {
                self.0.push(name.to_string());
            }
            fn exit_module(&mut self, _: &str, _: &str) {
                self.0.pop();
            }
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let mut path = self.0.clone();
                let t = p.val();
                let mut shape = t.dims().to_vec();
                let mut values: Vec<f32> = t.clone().try_into_vec_as::<f32>().unwrap();
                let parent = path[path.len() - 2].clone();
                let last = path.last_mut().unwrap();
                if parent.ends_with("bn") {
                    match last.as_str() {
                        "gamma" => *last = "weight".into(),
                        "beta" => *last = "bias".into(),
                        "running_var" => {
                            let mut n = path.clone();
                            *n.last_mut().unwrap() = "num_batches_tracked".into();
                            self.1.push((n.join("."), vec![], Err(vec![7])));
                        }
                        _ => {}
                    }
                }
                if D == 2 {
                    let (i, o) = (shape[0], shape[1]);
                    values = (0..o).flat_map(|r| (0..i).map(move |c| (r, c))).map(|(r, c)| values[c * o + r]).collect();
                    shape = vec![o, i];
                }
                self.1.push((path.join("."), shape, Ok(values)));
            }
        }
        let mut v = V(Vec::new(), Vec::new());
        model.visit(&mut v);
        let dim = model.embedding_size();
        v.1.push(("logits.weight".into(), vec![5, dim], Ok(vec![0.5; 5 * dim])));
        v.1.push(("logits.bias".into(), vec![5], Ok(vec![0.0; 5])));
        v.1
    }

    #[test]
    fn loads_a_pytorch_state_dict() {
        let ad = Device::flex().autodiff();
        let model = small(0).init(&ad);
        let _ = model.forward(Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.3, 1.5), &ad));
        let model = model.valid();
        let d = tempfile::tempdir().unwrap();
        let pt = d.path().join("small.pt");
        write_torch_state_dict(&pt, &pytorch_state_dict(&model));
        let plain = Device::flex();
        let mut fresh = small(0).init(&plain);
        let result = load_pytorch_weights(&mut fresh, &pt).unwrap();
        assert!(result.unused.iter().any(|u| u.ends_with("num_batches_tracked")), "{:?}", result.unused);
        let probe = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &plain);
        let want: Vec<f32> = model.forward(probe.clone()).prelogits.try_into_vec_as::<f32>().unwrap();
        let got: Vec<f32> = fresh.valid().forward(probe).prelogits.try_into_vec_as::<f32>().unwrap();
        assert_eq!(got, want);
        // the inference loader expects the full 512-d network: a clear error here
        let e = load_inference_model(&pt, &plain).unwrap_err().to_string();
        assert!(e.contains("small.pt"), "{e}");
    }

    #[test]
    fn model_files_are_checked() {
        let meta = |embedding_size, image_size, num_classes| ModelMeta {
            model_def: "inception_resnet_v1".into(),
            embedding_size,
            image_size,
            standardization: Standardization::Fixed,
            num_classes,
        };
        let file = |meta: ModelMeta| {
            let config = InceptionResnetV1Config::new().with_embedding_size(meta.embedding_size).with_num_classes(meta.num_classes);
            ModelFile { format: FORMAT.into(), meta, config, epoch: 1, global_step: 1 }
        };
        // the full network with facenet-pytorch's VGGFace2 head is well within the limits
        let vggface2 = file(meta(512, 160, 8631));
        assert_eq!(vggface2.check(), Ok(()));
        let values = vggface2.config.values();
        assert!(values > 23_482_624 + 513 * 8631 && values < 30_000_000, "{values}");
        let bad = |f: ModelFile| f.check().unwrap_err();
        assert!(bad(file(meta(0, 160, 0))).contains("embedding_size"));
        assert!(bad(file(meta(128, 0, 0))).contains("image_size"));
        assert!(bad(file(meta(128, 74, 0))).contains("too small"));
        assert!(bad(file(meta(128, 160, 100_000_000))).contains("num_classes"));
        let mut f = file(meta(128, 160, 0));
        f.config.arch.block17_repeats = 1 << 40;
        assert!(bad(f).contains("repeats"));
        let mut f = file(meta(128, 160, 0));
        f.config.arch.block8_width = 8000;
        f.config.arch.block8_repeats = 1000;
        assert!(bad(f).contains("more than"));
        // an --image_size for a loaded model
        assert!(meta(512, 160, 0).check_image_size(74).is_err());
        assert!(meta(512, 160, 0).check_image_size(75).is_ok());
        assert!(meta(512, 160, 0).check_image_size(100_000).is_err());
    }

    #[test]
    fn errors_name_the_path() {
        let d = tempfile::tempdir().unwrap();
        let e = load_inference_model(d.path(), &Device::flex()).unwrap_err().to_string();
        assert!(e.contains("not a model"), "{e}");
        let e = load_inference_model(&d.path().join("nope"), &Device::flex()).unwrap_err().to_string();
        assert!(e.contains("no such model"), "{e}");
        // a half-written checkpoint (no model.json) is ignored
        fs::create_dir_all(d.path().join("ckpt-000002")).unwrap();
        fs::write(d.path().join("ckpt-000002").join(MODEL_FILE), b"x").unwrap();
        assert!(latest_checkpoint(d.path()).unwrap().is_none());
    }
}
