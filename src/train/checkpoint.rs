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

use anyhow::{anyhow, Context, Result};
use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use super::guard::non_finite_in_model;
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
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let written = (|| -> Result<()> {
        model
            .clone()
            .save_into(&mut SafetensorsStore::from_file(tmp.join(MODEL_FILE)).overwrite(true))
            .map_err(|e| anyhow!("saving weights: {e}"))?;
        write_atomic_durable(&tmp.join(MODEL_JSON), serde_json::to_string_pretty(&ckpt.model_file)?.as_bytes())?;
        let mut tensors = ckpt.optimizer.clone();
        tensors.insert("centers".into(), ckpt.centers.clone());
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), FORMAT.to_string());
        meta.insert("optimizer".to_string(), ckpt.state.optimizer.name().to_string());
        write_atomic_durable(&tmp.join(STATE_FILE), &tensor_file::encode(&tensors, &meta)?)?;
        write_atomic_durable(&tmp.join(STATE_JSON), serde_json::to_string_pretty(&ckpt.state)?.as_bytes())?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("cannot write checkpoint {}", final_dir.display())));
    }
    if final_dir.exists() {
        // the same epoch saved again (a resumed run): replace it
        let old = model_dir.join(format!(".{name}.old-{}", std::process::id()));
        fs::rename(&final_dir, &old)?;
        fs::rename(&tmp, &final_dir)?;
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
