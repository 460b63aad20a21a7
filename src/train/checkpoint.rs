//! Checkpoints: one folder per epoch under the run's models folder, written to a temporary
//! folder and renamed into place (a killed run never leaves a half-written checkpoint); the
//! last [`KEEP_CHECKPOINTS`] are kept.
//!
//! ```text
//! models_base_dir/<stamp>/
//!   options.json                      the run's TrainOptions
//!   ckpt-000007/
//!     model.safetensors               weights (burn names = facenet-pytorch keys, BN gamma/beta)
//!     model.json                      ModelMeta + network config + epoch/step
//!     train_state.safetensors         optimizer slots (<param path>/<slot>) + "centers"
//!     train_state.json                epoch, step, optimizer, RNG/index-stream position, log dir
//! ```
//!
//! The network part (`model.*`) and loading a network from a checkpoint are in
//! [`crate::model::load`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::guard::non_finite_in_model;
use super::loss_scale::LossScale;
use super::optim::StoredTensor;
use super::options::OptimizerKind;
use super::tensor_file;
use crate::model::inception_resnet_v1::InceptionResnetV1;
use crate::model::load::{checkpoint_dirs, ModelFile, CKPT_PREFIX, FORMAT, MODEL_FILE, MODEL_JSON};
use crate::util::atomic::write_atomic_durable;

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A value to be saved is NaN or infinite.
    #[error("refusing to write checkpoint {}: a {kind} is not finite", .path.display())]
    NonFinite { path: PathBuf, kind: &'static str },
}

/// Checkpoints kept per run (the reference's `max_to_keep=3`).
pub const KEEP_CHECKPOINTS: usize = 3;
/// Optimizer slots and centres.
pub const STATE_FILE: &str = "train_state.safetensors";
/// Training position.
pub const STATE_JSON: &str = "train_state.json";
/// CRC-32C of the other files, written last.
pub const CHECKSUMS_JSON: &str = "checksums.json";
/// The run's options, in its models folder.
pub const OPTIONS_JSON: &str = "options.json";

/// `train_state.json`: where training stands after a checkpoint's epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Last completed epoch (1-based).
    pub epoch: usize,
    /// Optimizer steps so far.
    pub global_step: u64,
    pub optimizer: OptimizerKind,
    /// Steps the optimizer has applied (Adam's bias correction).
    pub optimizer_steps: u64,
    /// The run's seed (augmentation and dropout are derived from it and the step/epoch).
    pub seed: u64,
    /// Position of the shuffled index stream: pass number and offset.
    pub index_stream_pass: u64,
    pub index_stream_pos: usize,
    /// Training images the stream runs over (a changed dataset is refused on resume).
    pub num_train_images: usize,
    /// The run's log folder (statistics continue there).
    pub log_dir: PathBuf,
    /// The learning rate of the last step.
    pub learning_rate: f64,
    /// The factor the scheduled learning rate is multiplied by: 1, times
    /// `--nonfinite_lr_factor` for every rollback after non-finite steps.
    #[serde(default = "one")]
    pub learning_rate_factor: f64,
    /// Set when the run was stopped inside epoch `epoch + 1` (SIGINT / SIGTERM): where that
    /// epoch stands, so that `--resume` continues it exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_epoch: Option<PartialEpoch>,
    /// f16 training's dynamic loss scale (see [`crate::train::loss_scale`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<LossScale>,
}

fn one() -> f64 {
    1.0
}

/// `f64` as the string `{:?}` writes (shortest round-trip form, `NaN`, `inf`), read back with
/// `str::parse` (correctly rounded).
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{x:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse::<f64>().map_err(|e| serde::de::Error::custom(format!("'{text}' is not a number: {e}")))
    }
}

/// An epoch stopped between two steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Global step when the epoch started (augmentation serials derive from it).
    pub start_step: u64,
    /// Index-stream position when the epoch started (its batches are taken from there).
    pub stream_pass: u64,
    pub stream_pos: usize,
    /// Batches of the epoch done (applied, refused or empty).
    pub batches_done: usize,
    /// Running sums of the epoch's statistics so far.
    pub sums: EpochSums,
}

/// Sums over an epoch's applied steps (the epoch's means divide them by `steps`). The sums
/// are stored as decimal strings, Rust's shortest exact form, and parsed back bit for bit
/// (serde_json's default float parsing can be one unit in the last place off, and the
/// resumed epoch's means must equal the uninterrupted run's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochSums {
    #[serde(with = "exact_f64")]
    pub total: f64,
    #[serde(with = "exact_f64")]
    pub xent: f64,
    #[serde(with = "exact_f64")]
    pub reg: f64,
    #[serde(with = "exact_f64")]
    pub center: f64,
    #[serde(with = "exact_f64")]
    pub prelogits_norm: f64,
    #[serde(with = "exact_f64")]
    pub accuracy: f64,
    pub steps: usize,
    pub images: usize,
    pub skipped: usize,
    pub seconds: f64,
}

/// Everything a checkpoint holds, ready to write.
pub struct Checkpoint<'a> {
    pub model: &'a InceptionResnetV1,
    pub model_file: ModelFile,
    pub state: TrainState,
    pub optimizer: BTreeMap<String, StoredTensor>,
    /// `[num_classes, embedding_size]` centres.
    pub centers: StoredTensor,
}

/// A checkpoint's training state, read back.
pub struct LoadedState {
    pub state: TrainState,
    pub optimizer: BTreeMap<String, StoredTensor>,
    pub centers: StoredTensor,
}

fn checkpoint_name(epoch: usize) -> String {
    format!("{CKPT_PREFIX}{epoch:06}")
}

impl TrainState {
    /// Checks the fields a resumed run relies on; the error names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_train_images == 0 {
            return Err("num_train_images is 0".into());
        }
        if self.index_stream_pos > self.num_train_images {
            return Err(format!("index_stream_pos {} is beyond num_train_images {}", self.index_stream_pos, self.num_train_images));
        }
        if !(self.learning_rate_factor.is_finite() && self.learning_rate_factor > 0.0 && self.learning_rate_factor <= 1.0) {
            return Err(format!("learning_rate_factor {} is not in (0, 1]", self.learning_rate_factor));
        }
        if !self.learning_rate.is_finite() {
            return Err(format!("learning_rate {} is not finite", self.learning_rate));
        }
        if let Some(s) = &self.loss_scale {
            if !(LossScale::MIN..=LossScale::MAX).contains(&s.scale) {
                return Err(format!("loss_scale {} is not in [{}, {}]", s.scale, LossScale::MIN, LossScale::MAX));
            }
        }
        if self.optimizer_steps > self.global_step {
            return Err(format!("optimizer_steps {} exceeds global_step {}", self.optimizer_steps, self.global_step));
        }
        if let Some(p) = &self.partial_epoch {
            if p.start_step > self.global_step || p.stream_pos > self.num_train_images || p.sums.steps as u64 > self.global_step {
                return Err("partial_epoch does not fit the checkpoint's position".into());
            }
            let sums = [p.sums.total, p.sums.xent, p.sums.reg, p.sums.center, p.sums.prelogits_norm, p.sums.accuracy, p.sums.seconds];
            if sums.iter().any(|x| !x.is_finite()) {
                return Err("partial_epoch sums are not finite".into());
            }
        }
        Ok(())
    }

    /// The number in the checkpoint's folder name: its epoch, or for a run stopped inside an
    /// epoch that epoch (replaced by the complete one once it ends).
    pub fn folder_epoch(&self) -> usize {
        self.epoch + usize::from(self.partial_epoch.is_some())
    }
}

/// Writes `ckpt` as `model_dir/ckpt-<epoch>` (atomically: built in a hidden temporary folder,
/// synced, renamed), then removes all but the newest `keep` checkpoints. Returns its folder.
pub fn save_checkpoint(model_dir: &Path, ckpt: &Checkpoint, keep: usize) -> Result<PathBuf> {
    let name = checkpoint_name(ckpt.state.folder_epoch());
    let final_dir = model_dir.join(&name);
    // `valid()` folds pending BN running-statistics updates into the values that are saved
    let model = ckpt.model.valid();
    // never a checkpoint that cannot be trained on: checked before anything is written
    let bad = non_finite_in_model(&model)
        .or_else(|| ckpt.optimizer.values().any(|(_, v)| v.iter().any(|x| !x.is_finite())).then_some("optimiser slot"))
        .or_else(|| ckpt.centers.1.iter().any(|x| !x.is_finite()).then_some("class centre"));
    if let Some(kind) = bad {
        return Err(CheckpointError::NonFinite { path: final_dir, kind }.into());
    }
    fs::create_dir_all(model_dir).with_context(|| format!("cannot create {}", model_dir.display()))?;
    let tmp = model_dir.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp)
        .with_context(|| format!("cannot write checkpoint {}: cannot create {}", final_dir.display(), tmp.display()))?;
    let written = (|| -> Result<()> {
        let put = |name: &str, bytes: &[u8]| {
            let p = tmp.join(name);
            write_atomic_durable(&p, bytes).with_context(|| format!("cannot write {}", p.display()))
        };
        model
            .clone()
            .save_into(&mut SafetensorsStore::from_file(tmp.join(MODEL_FILE)).overwrite(true))
            .map_err(|e| anyhow!("cannot write {}: {e}", tmp.join(MODEL_FILE).display()))?;
        put(MODEL_JSON, serde_json::to_string_pretty(&ckpt.model_file)?.as_bytes())?;
        let mut tensors = ckpt.optimizer.clone();
        tensors.insert("centers".into(), ckpt.centers.clone());
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("optimizer".to_string(), ckpt.state.optimizer.name().to_string());
        put(STATE_FILE, &tensor_file::encode(&tensors, &meta)?)?;
        put(STATE_JSON, serde_json::to_string_pretty(&ckpt.state)?.as_bytes())?;
        // last: the checksums of the files above, as they are on disk
        let mut sums = BTreeMap::new();
        for f in CHECKED_FILES {
            let bytes = fs::read(tmp.join(f)).with_context(|| format!("cannot read back {}", tmp.join(f).display()))?;
            sums.insert(f.to_string(), format!("{:08x}", crc32c::crc32c(&bytes)));
        }
        put(CHECKSUMS_JSON, serde_json::to_string_pretty(&sums)?.as_bytes())?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("cannot write checkpoint {}", final_dir.display())));
    }
    if final_dir.exists() {
        // the same epoch saved again (a resumed run): replace it
        let old = model_dir.join(format!(".{name}.old-{}", std::process::id()));
        fs::rename(&final_dir, &old).with_context(|| format!("cannot move {} aside", final_dir.display()))?;
        fs::rename(&tmp, &final_dir).with_context(|| format!("cannot move checkpoint into {}", final_dir.display()))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(&tmp, &final_dir).with_context(|| format!("cannot move checkpoint into {}", final_dir.display()))?;
    }
    if let Ok(d) = fs::File::open(model_dir) {
        let _ = d.sync_all();
    }
    prune(model_dir, keep)?;
    Ok(final_dir)
}

/// The files of a checkpoint that [`CHECKSUMS_JSON`] covers.
pub const CHECKED_FILES: [&str; 4] = [MODEL_FILE, MODEL_JSON, STATE_FILE, STATE_JSON];

/// Checks a checkpoint folder against its [`CHECKSUMS_JSON`] (CRC-32C of each file) and that
/// its training state reads; the error names the damaged file. A checkpoint written before
/// checksums existed (no such file) is only read.
pub fn verify_checkpoint(ckpt_dir: &Path) -> Result<()> {
    let p = ckpt_dir.join(CHECKSUMS_JSON);
    if p.exists() {
        let text = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let sums: BTreeMap<String, String> = serde_json::from_str(&text).with_context(|| format!("{}: bad checksum list", p.display()))?;
        for f in CHECKED_FILES {
            let file = ckpt_dir.join(f);
            let want = sums.get(f).ok_or_else(|| anyhow!("{}: no checksum of {f}", p.display()))?;
            let bytes = fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let got = format!("{:08x}", crc32c::crc32c(&bytes));
            if &got != want {
                bail!("{}: damaged (CRC-32C {got}, {} says {want})", file.display(), CHECKSUMS_JSON);
            }
        }
    }
    read_train_state(ckpt_dir)?;
    Ok(())
}

/// The newest checkpoint of `model_dir` that passes [`verify_checkpoint`]; each damaged newer
/// one gets a warning naming the file, and the previous one is taken.
/// None when there is no checkpoint at all; an error when there are some but every one is
/// damaged (a run is never silently started over).
pub fn latest_good_checkpoint(model_dir: &Path) -> Result<Option<PathBuf>> {
    let all = checkpoint_dirs(model_dir)?;
    for (_, dir) in all.iter().rev() {
        match verify_checkpoint(dir) {
            Ok(()) => return Ok(Some(dir.clone())),
            Err(e) => eprintln!("warning: skipping checkpoint {}: {e:#}; falling back to the previous one", dir.display()),
        }
    }
    if !all.is_empty() {
        bail!("{}: every checkpoint is damaged ({} checked; see the warnings above)", model_dir.display(), all.len());
    }
    Ok(None)
}

/// Removes all but the newest `keep` checkpoints and leftovers of killed saves.
fn prune(model_dir: &Path, keep: usize) -> Result<()> {
    let all = checkpoint_dirs(model_dir)?;
    if all.len() > keep {
        for (_, dir) in &all[..all.len() - keep] {
            fs::remove_dir_all(dir).with_context(|| format!("cannot remove old checkpoint {}", dir.display()))?;
        }
    }
    let me = format!(".tmp-{}", std::process::id());
    for entry in fs::read_dir(model_dir)?.flatten() {
        let n = entry.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!(".{CKPT_PREFIX}")) && (n.contains(".tmp-") || n.contains(".old-")) && !n.ends_with(&me) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Reads the training state of a checkpoint folder.
pub fn read_train_state(ckpt_dir: &Path) -> Result<LoadedState> {
    let p = ckpt_dir.join(STATE_JSON);
    let text = fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let state: TrainState = serde_json::from_str(&text).with_context(|| format!("{}: bad training state", p.display()))?;
    state.validate().map_err(|field| anyhow!("{}: bad training state: {field}", p.display()))?;
    let p = ckpt_dir.join(STATE_FILE);
    let bytes = fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let (mut tensors, _) = tensor_file::decode(&bytes).with_context(|| format!("{}", p.display()))?;
    let centers = tensors.remove("centers").ok_or_else(|| anyhow!("{}: no centers", p.display()))?;
    Ok(LoadedState { state, optimizer: tensors, centers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::Standardization;
    use crate::model::inception_resnet_v1::InceptionResnetV1Config;
    use crate::model::load::{latest_checkpoint, load_inference_model, load_pretrained, ModelMeta};
    use burn::tensor::{Device, Distribution, Tensor};

    fn small(classes: usize) -> InceptionResnetV1Config {
        InceptionResnetV1Config::small(16, 1.0, classes)
    }

    fn meta(classes: usize) -> ModelMeta {
        ModelMeta {
            model_def: "inception_resnet_v1_small".into(),
            embedding_size: 16,
            image_size: 32,
            standardization: Standardization::PerImage,
            num_classes: classes,
        }
    }

    fn state(epoch: usize) -> TrainState {
        TrainState {
            epoch,
            global_step: epoch as u64 * 10,
            optimizer: OptimizerKind::Adam,
            optimizer_steps: epoch as u64 * 10,
            seed: 1,
            index_stream_pass: 2,
            index_stream_pos: 3,
            num_train_images: 40,
            log_dir: PathBuf::from("/logs/x"),
            learning_rate: 0.01,
            learning_rate_factor: 1.0,
            partial_epoch: None,
            loss_scale: None,
        }
    }

    fn save(dir: &Path, model: &InceptionResnetV1, epoch: usize) -> PathBuf {
        let mut opt = BTreeMap::new();
        opt.insert("conv2d_1a.conv.weight/m".to_string(), (vec![2], vec![1.0f32, 2.0]));
        let ckpt = Checkpoint {
            model,
            model_file: ModelFile { format: FORMAT.into(), meta: meta(3), config: small(3), epoch, global_step: epoch as u64 * 10 },
            state: state(epoch),
            optimizer: opt,
            centers: (vec![3, 16], vec![0.5; 48]),
        };
        save_checkpoint(dir, &ckpt, KEEP_CHECKPOINTS).unwrap()
    }

    #[test]
    fn a_damaged_latest_checkpoint_falls_back_to_the_previous_one() {
        let ad = Device::flex().autodiff();
        let model = small(3).init(&ad);
        let _ = model.forward(Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &ad));
        let d = tempfile::tempdir().unwrap();
        let (c1, c2) = (save(d.path(), &model, 1), save(d.path(), &model, 2));
        assert!(c2.join(CHECKSUMS_JSON).is_file());
        verify_checkpoint(&c2).unwrap();
        assert_eq!(latest_good_checkpoint(d.path()).unwrap(), Some(c2.clone()));
        // one flipped bit in the newest weights
        let f = c2.join(MODEL_FILE);
        let mut bytes = fs::read(&f).unwrap();
        let k = bytes.len() - 7;
        bytes[k] ^= 0x10;
        fs::write(&f, bytes).unwrap();
        let e = verify_checkpoint(&c2).unwrap_err().to_string();
        assert!(e.contains("model.safetensors") && e.contains("damaged"), "{e}");
        assert_eq!(latest_good_checkpoint(d.path()).unwrap(), Some(c1.clone()));
        // a training state whose fields do not fit: named
        let p = c1.join(STATE_JSON);
        let text = fs::read_to_string(&p).unwrap().replace("\"num_train_images\": 40", "\"num_train_images\": 0");
        fs::write(&p, text).unwrap();
        fs::remove_file(c1.join(CHECKSUMS_JSON)).unwrap();
        let e = format!("{:#}", read_train_state(&c1).err().unwrap());
        assert!(e.contains("train_state.json") && e.contains("num_train_images"), "{e}");
        // nothing good left: an error, not a fresh start
        let e = latest_good_checkpoint(d.path()).unwrap_err().to_string();
        assert!(e.contains("every checkpoint is damaged"), "{e}");
    }

    #[test]
    fn a_non_finite_state_is_never_written() {
        let ad = Device::flex().autodiff();
        let model = small(3).init(&ad);
        // activations of 1e30: the batch variances overflow to infinity
        let _ = model.forward(Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1e30), &ad));
        let d = tempfile::tempdir().unwrap();
        let mut opt = BTreeMap::new();
        opt.insert("conv2d_1a.conv.weight/m".to_string(), (vec![1], vec![1.0f32]));
        let ckpt = Checkpoint {
            model: &model,
            model_file: ModelFile { format: FORMAT.into(), meta: meta(3), config: small(3), epoch: 1, global_step: 10 },
            state: state(1),
            optimizer: opt,
            centers: (vec![3, 16], vec![0.5; 48]),
        };
        let e = save_checkpoint(d.path(), &ckpt, KEEP_CHECKPOINTS).unwrap_err().to_string();
        assert!(e.contains("refusing to write checkpoint") && e.contains("batch-norm running statistic"), "{e}");
        assert_eq!(fs::read_dir(d.path()).map(|r| r.count()).unwrap_or(0), 0, "nothing written");
    }

    #[test]
    fn round_trip_keeps_last_three_and_loads_for_inference() {
        let ad = Device::flex().autodiff();
        let model = small(3).init(&ad);
        // move the BN statistics
        let _ = model.forward(Tensor::<4>::random([4, 3, 32, 32], Distribution::Normal(0.3, 1.5), &ad));
        let d = tempfile::tempdir().unwrap();
        for e in 1..=5 {
            save(d.path(), &model, e);
        }
        let dirs = checkpoint_dirs(d.path()).unwrap();
        assert_eq!(dirs.iter().map(|(e, _)| *e).collect::<Vec<_>>(), vec![3, 4, 5]);
        // nothing else left behind
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 3);
        let latest = latest_checkpoint(d.path()).unwrap().unwrap();
        assert!(latest.ends_with("ckpt-000005"));

        let loaded = read_train_state(&latest).unwrap();
        assert_eq!(loaded.state, state(5));
        assert_eq!(loaded.centers.1.len(), 48);
        assert_eq!(loaded.optimizer["conv2d_1a.conv.weight/m"].1, vec![1.0, 2.0]);

        let plain = Device::flex();
        let probe = Tensor::<4>::random([2, 3, 32, 32], Distribution::Normal(0.0, 1.0), &plain);
        let want: Vec<f32> = model.valid().fold_batch_norm().forward(probe.clone()).prelogits.try_into_vec_as::<f32>().unwrap();
        for p in [d.path().to_path_buf(), latest.clone(), latest.join(MODEL_FILE)] {
            let (m, mm) = load_inference_model(&p, &plain).unwrap();
            assert_eq!(mm, meta(3));
            assert_eq!(m.num_classes(), 0);
            let got: Vec<f32> = m.forward(probe.clone()).prelogits.try_into_vec_as::<f32>().unwrap();
            assert_eq!(got, want, "{}", p.display());
        }
        // pretrained into a training model with other classes: all but logits
        let mut other = small(7).init(&ad);
        let msg = load_pretrained(&mut other, d.path()).unwrap();
        assert!(msg.contains("Logits layer initialised fresh"), "{msg}");
        let got: Vec<f32> = other.valid().fold_batch_norm().forward(probe.clone()).prelogits.try_into_vec_as::<f32>().unwrap();
        assert_eq!(got, want);
        // same classes: logits too
        let mut same = small(3).init(&ad);
        load_pretrained(&mut same, &latest).unwrap();
        assert_eq!(same.logits.as_ref().unwrap().weight.val().to_data(), model.logits.as_ref().unwrap().weight.val().to_data());
        // wrong embedding size
        let mut wrong = InceptionResnetV1Config::small(8, 1.0, 3).init(&ad);
        assert!(load_pretrained(&mut wrong, d.path()).is_err());
    }
}
