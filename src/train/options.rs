//! The options of `facenet train`: every flag of the reference's `train_softmax.py`, with its
//! defaults, plus `--resume`. Parsed by clap, serialised into the run folders
//! (`arguments.txt`, `options.json`) and passed whole to [`crate::train::train`].

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::data::dataset::expand_tilde;
use crate::data::preprocess::Standardization;
use crate::eval::metrics::DistanceMetric;
use crate::model::inception_resnet_v1::{MAX_EMBEDDING_SIZE, MAX_IMAGE_SIZE};
use crate::util::device::DeviceSpec;
use crate::util::devices::DeviceList;
use crate::util::precision::Precision;

// Range limits of the options (checked by [`TrainOptions::validate`]; the network's own,
// image size and embedding width, are the model's: `crate::model::inception_resnet_v1`).
// Generous for real runs (the reference: batch 90, epoch 1000 batches, 500 epochs), small
// enough that no value makes an allocation abort or a count overflow.

/// Most images per batch (`--batch_size`, `--lfw_batch_size`).
pub const MAX_BATCH_SIZE: usize = 4096;
/// Most batches per epoch.
pub const MAX_EPOCH_SIZE: usize = 100_000_000;
/// Most epochs (also the largest `--learning_rate_decay_epochs`, `--validate_every_n_epochs`).
pub const MAX_EPOCHS: usize = 1_000_000;
/// Most worker threads (`--nrof_preprocess_threads`, `--threads`).
pub const MAX_THREADS: usize = 1024;
/// Most cross-validation folds.
pub const MAX_FOLDS: usize = 1000;

/// The optimisers of the reference, with its fixed hyper-parameters (TF1 semantics; see
/// [`crate::train::optim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum OptimizerKind {
    /// Adagrad, initial accumulator 0.1.
    #[serde(rename = "ADAGRAD")]
    Adagrad,
    /// Adadelta, rho 0.9, epsilon 1e-6.
    #[serde(rename = "ADADELTA")]
    Adadelta,
    /// Adam, beta1 0.9, beta2 0.999, epsilon 0.1.
    #[serde(rename = "ADAM")]
    Adam,
    /// RMSProp, decay 0.9, momentum 0.9, epsilon 1.0 (inside the root), mean square starts at 1.
    #[serde(rename = "RMSPROP")]
    Rmsprop,
    /// Nesterov momentum 0.9.
    #[serde(rename = "MOM")]
    Mom,
}

impl OptimizerKind {
    /// The reference's name (`RMSPROP`, ...).
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Adagrad => "ADAGRAD",
            OptimizerKind::Adadelta => "ADADELTA",
            OptimizerKind::Adam => "ADAM",
            OptimizerKind::Rmsprop => "RMSPROP",
            OptimizerKind::Mom => "MOM",
        }
    }
}

/// Everything `facenet train` is told. Field names and defaults are those of the reference's
/// `train_softmax.py` (`--data_dir` and `--data-dir` both work).
#[derive(Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    /// Folder under which a log folder <YYYYmmdd-HHMMSS> is created (arguments, statistics)
    #[arg(long, default_value = "~/logs/facenet")]
    pub logs_base_dir: String,
    /// Folder under which a model folder <YYYYmmdd-HHMMSS> is created (checkpoints)
    #[arg(long, default_value = "~/models/facenet")]
    pub models_base_dir: String,
    /// Accepted for compatibility (no effect)
    #[arg(long, default_value_t = 1.0)]
    pub gpu_memory_fraction: f64,
    /// Start from these weights: a run's models folder, one checkpoint, a facenet-pytorch
    /// InceptionResnetV1 state dict (.pt), or the reference's TensorFlow model (its folder, a
    /// checkpoint prefix or .index, a frozen .pb)
    #[arg(long)]
    pub pretrained_model: Option<String>,
    /// Aligned face crops, one folder per identity; several folders joined with ':'
    #[arg(long, default_value = "~/datasets/casia/casia_maxpy_mtcnnalign_182_160")]
    pub data_dir: String,
    /// Network: inception_resnet_v1 or inception_resnet_v1_small (also as models.<name>)
    #[arg(long, default_value = "models.inception_resnet_v1")]
    pub model_def: String,
    /// Number of epochs to run
    #[arg(long, default_value_t = 500)]
    pub max_nrof_epochs: usize,
    /// Images per batch
    #[arg(long, default_value_t = 90)]
    pub batch_size: usize,
    /// Side of the (square) network input in pixels
    #[arg(long, default_value_t = 160)]
    pub image_size: u32,
    /// Batches per epoch
    #[arg(long, default_value_t = 1000)]
    pub epoch_size: usize,
    /// Dimensionality of the embedding
    #[arg(long, default_value_t = 128)]
    pub embedding_size: usize,
    /// Random crop of image_size pixels from the training images (else the centre crop)
    #[arg(long)]
    pub random_crop: bool,
    /// Random horizontal flip of training images
    #[arg(long)]
    pub random_flip: bool,
    /// Random rotation of training images in [-10, 10] degrees (bicubic)
    #[arg(long)]
    pub random_rotate: bool,
    /// Standardise pixels as (x - 127.5) / 128 instead of per image
    #[arg(long)]
    pub use_fixed_image_standardization: bool,
    /// Keep probability of the dropout before the bottleneck layer
    #[arg(long, default_value_t = 1.0)]
    pub keep_probability: f64,
    /// L2 weight decay of conv and fully connected weights
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Weight of the center loss
    #[arg(long, default_value_t = 0.0)]
    pub center_loss_factor: f64,
    /// Center update rate: centres move by (1 - alfa) toward the batch's prelogits
    #[arg(long, default_value_t = 0.95)]
    pub center_loss_alfa: f64,
    /// Weight of the prelogits norm loss
    #[arg(long, default_value_t = 0.0)]
    pub prelogits_norm_loss_factor: f64,
    /// Norm (p) of the prelogits norm loss
    #[arg(long, default_value_t = 1.0)]
    pub prelogits_norm_p: f64,
    /// Upper end of the prelogits histogram (accepted; statistics record the mean norm)
    #[arg(long, default_value_t = 10.0)]
    pub prelogits_hist_max: f64,
    /// Optimiser
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adagrad, ignore_case = true)]
    pub optimizer: OptimizerKind,
    /// Initial learning rate; <= 0 (e.g. -1) reads it per epoch from --learning_rate_schedule_file
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub learning_rate: f64,
    /// Epochs between learning rate decays
    #[arg(long, default_value_t = 100)]
    pub learning_rate_decay_epochs: usize,
    /// Learning rate decay factor (1 = no decay)
    #[arg(long, default_value_t = 1.0)]
    pub learning_rate_decay_factor: f64,
    /// Accepted for compatibility: the reference tracks moving averages of the weights but
    /// saves the raw weights, as this tool does
    #[arg(long, default_value_t = 0.9999)]
    pub moving_average_decay: f64,
    /// Random seed (weights, shuffling, augmentation, dropout, validation split)
    #[arg(long, default_value_t = 666)]
    pub seed: u64,
    /// Threads decoding and augmenting training images
    #[arg(long, default_value_t = 4)]
    pub nrof_preprocess_threads: usize,
    /// Histograms of the trained weights and of the prelogits in the TensorBoard events, at
    /// the end of each epoch
    #[arg(long)]
    pub log_histograms: bool,
    /// Learning rate schedule (`epoch: rate` lines) used when --learning_rate is negative
    #[arg(long, default_value = "data/learning_rate_schedule.txt")]
    pub learning_rate_schedule_file: String,
    /// Dataset filtering by distance to class centre (not supported: must stay empty)
    #[arg(long, default_value = "")]
    pub filter_filename: String,
    /// Accepted for compatibility (dataset filtering is not supported)
    #[arg(long, default_value_t = 100.0)]
    pub filter_percentile: f64,
    /// Accepted for compatibility (dataset filtering is not supported)
    #[arg(long, default_value_t = 0)]
    pub filter_min_nrof_images_per_class: usize,
    /// Epochs between evaluations of the validation set (and the last epoch)
    #[arg(long, default_value_t = 5)]
    pub validate_every_n_epochs: usize,
    /// Fraction of each class's images held out for validation (0 = none)
    #[arg(long, default_value_t = 0.0)]
    pub validation_set_split_ratio: f64,
    /// Classes with fewer training images than this are dropped when splitting
    #[arg(long, default_value_t = 0.0)]
    pub min_nrof_val_images_per_class: f64,
    /// LFW-style pairs file for the per-epoch evaluation
    #[arg(long, default_value = "data/pairs.txt")]
    pub lfw_pairs: String,
    /// Aligned LFW-style folder; when given, every epoch is evaluated on the pairs
    #[arg(long, default_value = "")]
    pub lfw_dir: String,
    /// Images per batch when embedding the LFW and validation images
    #[arg(long, default_value_t = 100)]
    pub lfw_batch_size: usize,
    /// Cross-validation folds of the LFW evaluation
    #[arg(long, default_value_t = 10)]
    pub lfw_nrof_folds: usize,
    /// LFW distance: 0 = squared Euclidean, 1 = arccos of cosine similarity / pi
    #[arg(long, default_value_t = 0)]
    pub lfw_distance_metric: u32,
    /// Concatenate each LFW embedding with that of the flipped image
    #[arg(long)]
    pub lfw_use_flipped_images: bool,
    /// Subtract the training folds' mean embedding before computing LFW distances
    #[arg(long)]
    pub lfw_subtract_mean: bool,
    /// Continue a killed run: its models folder (models_base_dir/<stamp>). The run's saved
    /// options apply; flags given here that differ from their defaults override them (e.g.
    /// --max_nrof_epochs to extend a run)
    #[arg(long)]
    pub resume: Option<String>,
    /// Consecutive steps with a non-finite loss, gradient, weight, batch-norm statistic,
    /// optimiser slot or centre (each refused: not applied, reported) after which the run
    /// rolls back to its last checkpoint (see --nonfinite_lr_factor) or stops
    #[arg(long, default_value_t = 5)]
    pub max_nonfinite_steps: usize,
    /// After --max_nonfinite_steps refused steps in a row, roll back to the last checkpoint and
    /// multiply the learning rate by this factor from then on (kept by --resume; at most 5
    /// rollbacks per process); 0: stop instead
    #[arg(long, default_value_t = 0.5)]
    pub nonfinite_lr_factor: f64,
    /// Data-parallel training: one model replica per device of this list (cpu:0,cpu:1 for
    /// CPU replicas taking turns on the CPU; cuda:0,cuda:1,...), each on its share of the global
    /// --batch_size, gradients combined before one optimiser step; replaces --device. Not a
    /// property of the run: a resumed run may use another list (see crate::train::data_parallel)
    #[arg(long)]
    pub devices: Option<DeviceList>,
    /// Where to train: auto (the first GPU an enabled GPU backend finds, else the CPU), cpu,
    /// vulkan[:N|:cpu], wgpu[:N|:cpu], cuda[:N], tch[:N|:cpu] (as built; also $FACENET_DEVICE).
    /// Not a property of the run: a resumed run trains where this says
    #[arg(long, default_value = "auto", env = "FACENET_DEVICE")]
    pub device: DeviceSpec,
    /// Start even when the batch is not expected to fit into the available memory (the
    /// estimate stated before the first step; see crate::train::memory). Not a property of the
    /// run: a resumed run checks again unless this is given
    #[arg(long)]
    pub no_memory_check: bool,
    /// Read the steps' loss values back from the device every N steps: one wait for the device
    /// per N steps instead of one per step. A window holding a non-finite step is undone and
    /// run again one step at a time, so N never changes the result (see
    /// crate::train::step_window). Default: 1 on the CPU (nothing to gain), 10 on a GPU. Not a
    /// property of the run
    #[arg(long)]
    pub sync_every: Option<usize>,
    /// What the matrix products (convolutions, fully connected layers) compute with: f32, or
    /// bf16 (inputs rounded to bfloat16, f32 accumulation; weights, optimiser state and
    /// everything else f32; CPU backend on CPUs with AVX-512 BF16). A property of the run:
    /// `--resume` keeps it
    #[arg(long, default_value = "f32")]
    pub precision: Precision,
}

/// A command line with only the `train` options, for computing defaults and parsing stored
/// command lines (as with `facenet train`, a flag given twice takes its last value).
#[derive(Parser)]
#[command(no_binary_name = true, args_override_self = true)]
struct DefaultsParser {
    #[command(flatten)]
    options: TrainOptions,
}

impl Default for TrainOptions {
    fn default() -> Self {
        DefaultsParser::try_parse_from(Vec::<String>::new()).expect("train options have defaults").options
    }
}

impl TrainOptions {
    /// Parses `train` flags (without the program and subcommand names), e.g.
    /// `["--data_dir", "x", "--max_nrof_epochs", "3"]`, with the snake_case rewriting of the CLI.
    pub fn parse_from<I, S>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let args = crate::util::args::normalize_args(args.into_iter().map(Into::into).collect());
        Ok(DefaultsParser::try_parse_from(args)?.options)
    }

    /// Model replicas the batch is shared among (`--devices`; 1 without it).
    pub fn replicas(&self) -> usize {
        self.devices.as_ref().map_or(1, DeviceList::replicas)
    }

    /// Checks ranges and combinations that would fail later (or silently do the wrong thing).
    pub fn validate(&self) -> Result<()> {
        let counts: [(&str, usize, usize, usize); 9] = [
            ("batch_size", self.batch_size, 1, MAX_BATCH_SIZE),
            ("epoch_size", self.epoch_size, 1, MAX_EPOCH_SIZE),
            ("max_nrof_epochs", self.max_nrof_epochs, 0, MAX_EPOCHS),
            ("image_size", self.image_size as usize, 1, MAX_IMAGE_SIZE as usize),
            ("embedding_size", self.embedding_size, 1, MAX_EMBEDDING_SIZE),
            ("learning_rate_decay_epochs", self.learning_rate_decay_epochs, 1, MAX_EPOCHS),
            ("nrof_preprocess_threads", self.nrof_preprocess_threads, 0, MAX_THREADS),
            ("validate_every_n_epochs", self.validate_every_n_epochs, 1, MAX_EPOCHS),
            ("lfw_batch_size", self.lfw_batch_size, 1, MAX_BATCH_SIZE),
        ];
        for (name, value, low, high) in counts {
            if !(low..=high).contains(&value) {
                bail!("--{name} must be in {low}..={high}, got {value}");
            }
        }
        let finite = [
            ("weight_decay", self.weight_decay),
            ("center_loss_factor", self.center_loss_factor),
            ("prelogits_norm_loss_factor", self.prelogits_norm_loss_factor),
            ("learning_rate_decay_factor", self.learning_rate_decay_factor),
            ("prelogits_norm_p", self.prelogits_norm_p),
            ("prelogits_hist_max", self.prelogits_hist_max),
            ("min_nrof_val_images_per_class", self.min_nrof_val_images_per_class),
        ];
        for (name, value) in finite {
            if !value.is_finite() {
                bail!("--{name} must be a finite number, got {value}");
            }
        }
        if let Some(d) = &self.devices {
            if d.replicas() > self.batch_size {
                let (r, b) = (d.replicas(), self.batch_size);
                bail!("--devices {d}: {r} replicas need a --batch_size of at least {r} (it is the global batch), got {b}");
            }
        }
        if self.sync_every == Some(0) {
            bail!("--sync_every must be at least 1 (1: read every step's values at once)");
        }
        if !(1..=1_000_000).contains(&self.max_nonfinite_steps) {
            bail!("--max_nonfinite_steps must be in 1..=1000000, got {}", self.max_nonfinite_steps);
        }
        if !(0.0..=1.0).contains(&self.nonfinite_lr_factor) {
            bail!("--nonfinite_lr_factor must be in [0, 1] (0: stop instead of rolling back), got {}", self.nonfinite_lr_factor);
        }
        if !(self.keep_probability > 0.0 && self.keep_probability <= 1.0) {
            bail!("--keep_probability must be in (0, 1], got {}", self.keep_probability);
        }
        if !self.learning_rate.is_finite() {
            bail!("--learning_rate must be a number (> 0: fixed; <= 0: read from --learning_rate_schedule_file)");
        }
        if self.learning_rate_decay_epochs == 0 {
            bail!("--learning_rate_decay_epochs must be at least 1");
        }
        if !(self.learning_rate_decay_factor > 0.0) {
            bail!("--learning_rate_decay_factor must be > 0, got {}", self.learning_rate_decay_factor);
        }
        if !(self.prelogits_norm_p > 0.0) {
            bail!("--prelogits_norm_p must be > 0, got {}", self.prelogits_norm_p);
        }
        if !(0.0..=1.0).contains(&self.center_loss_alfa) {
            bail!("--center_loss_alfa must be in [0, 1], got {}", self.center_loss_alfa);
        }
        if self.min_nrof_val_images_per_class < 0.0 {
            bail!("--min_nrof_val_images_per_class must be >= 0, got {}", self.min_nrof_val_images_per_class);
        }
        if self.weight_decay < 0.0 || self.center_loss_factor < 0.0 || self.prelogits_norm_loss_factor < 0.0 {
            bail!("--weight_decay, --center_loss_factor and --prelogits_norm_loss_factor must be >= 0");
        }
        if !(0.0..1.0).contains(&self.validation_set_split_ratio) {
            bail!("--validation_set_split_ratio must be in [0, 1), got {}", self.validation_set_split_ratio);
        }
        if !self.lfw_dir.is_empty() && !(2..=MAX_FOLDS).contains(&self.lfw_nrof_folds) {
            bail!("--lfw_nrof_folds must be in 2..={MAX_FOLDS}, got {}", self.lfw_nrof_folds);
        }
        DistanceMetric::from_index(self.lfw_distance_metric)?;
        if !self.filter_filename.is_empty() {
            bail!(
                "--filter_filename (dataset filtering by an HDF5 file of distances to class centres) is not \
                 supported; filter the dataset folder instead"
            );
        }
        Ok(())
    }

    /// Pixel standardisation of the network input.
    pub fn standardization(&self) -> Standardization {
        Standardization::from_flag(self.use_fixed_image_standardization)
    }

    /// The LFW distance metric.
    pub fn distance_metric(&self) -> Result<DistanceMetric> {
        Ok(DistanceMetric::from_index(self.lfw_distance_metric)?)
    }

    /// `--lfw_dir` with `~` expanded, or `None` when not given.
    pub fn lfw_dir_path(&self) -> Option<PathBuf> {
        (!self.lfw_dir.trim().is_empty()).then(|| expand_tilde(self.lfw_dir.trim()))
    }

    /// `arguments.txt`: one `name: value` line per option, sorted by name (the reference
    /// writes `vars(args)` the same way).
    pub fn arguments_text(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut out = String::new();
        if let serde_json::Value::Object(map) = value {
            let mut keys: Vec<_> = map.keys().cloned().collect();
            keys.sort();
            for k in keys {
                let v = match &map[&k] {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "None".to_string(),
                    other => other.to_string(),
                };
                out.push_str(&format!("{k}: {v}\n"));
            }
        }
        out
    }

    /// For `--resume`: `saved` (the run's options) with every option of `self` that differs
    /// from its default applied on top. `resume` itself is kept from `self`.
    pub fn overriding(&self, saved: &TrainOptions) -> Result<TrainOptions> {
        let defaults = serde_json::to_value(TrainOptions::default())?;
        let given = serde_json::to_value(self)?;
        let mut merged = serde_json::to_value(saved)?;
        let mut changed = Vec::new();
        if let (Some(d), Some(g), Some(m)) = (defaults.as_object(), given.as_object(), merged.as_object_mut()) {
            for (k, v) in g {
                if k == "resume" || k == "device" || k == "no_memory_check" || k == "sync_every" {
                    continue;
                }
                if d.get(k) != Some(v) && m.get(k) != Some(v) {
                    changed.push(k.clone());
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        let mut out: TrainOptions = serde_json::from_value(merged)?;
        out.resume = self.resume.clone();
        out.devices = self.devices.clone();
        out.device = self.device;
        out.no_memory_check = self.no_memory_check;
        out.sync_every = self.sync_every;
        for fixed in ["model_def", "embedding_size"] {
            if changed.iter().any(|c| c == fixed) {
                bail!("--{fixed} cannot change when resuming a run (the checkpoint fixes the network)");
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_ones() {
        let o = TrainOptions::default();
        assert_eq!(o.model_def, "models.inception_resnet_v1");
        assert_eq!(o.max_nrof_epochs, 500);
        assert_eq!(o.batch_size, 90);
        assert_eq!(o.image_size, 160);
        assert_eq!(o.epoch_size, 1000);
        assert_eq!(o.embedding_size, 128);
        assert_eq!(o.optimizer, OptimizerKind::Adagrad);
        assert_eq!(o.learning_rate, 0.1);
        assert_eq!(o.center_loss_alfa, 0.95);
        assert_eq!(o.seed, 666);
        assert_eq!(o.validate_every_n_epochs, 5);
        assert_eq!(o.lfw_batch_size, 100);
        assert_eq!(o.learning_rate_schedule_file, "data/learning_rate_schedule.txt");
        assert!(!o.random_crop && !o.random_flip && !o.random_rotate);
        assert!(o.validate().is_ok());
    }

    #[test]
    fn parses_the_seed_command_line() {
        let args = "--logs_base_dir ~/logs/facenet/ --models_base_dir ~/models/facenet/ --data_dir ~/datasets/casia/casia_maxpy_mtcnnalign_182 --image_size 160 --model_def models.inception_resnet_v1 --lfw_dir ~/datasets/lfw/lfw_mtcnnalign_160 --optimizer RMSPROP --learning_rate -1 --max_nrof_epochs 80 --keep_probability 0.8 --random_crop --random_flip --learning_rate_schedule_file data/learning_rate_schedule_classifier_casia.txt --weight_decay 5e-5 --center_loss_factor 1e-2 --center_loss_alfa 0.9";
        let o = TrainOptions::parse_from(args.split_whitespace()).unwrap();
        assert_eq!(o.optimizer, OptimizerKind::Rmsprop);
        assert_eq!(o.learning_rate, -1.0);
        assert_eq!(o.max_nrof_epochs, 80);
        assert_eq!(o.keep_probability, 0.8);
        assert!(o.random_crop && o.random_flip && !o.random_rotate);
        assert_eq!(o.weight_decay, 5e-5);
        assert_eq!(o.center_loss_factor, 1e-2);
        assert_eq!(o.center_loss_alfa, 0.9);
        assert!(o.validate().is_ok());
        let o = TrainOptions::parse_from(["--optimizer", "adam"]).unwrap();
        assert_eq!(o.optimizer, OptimizerKind::Adam);
        assert!(TrainOptions::parse_from(["--optimizer", "SGD"]).is_err());
    }

    #[test]
    fn json_and_arguments_round_trip() {
        let o = TrainOptions::parse_from(["--optimizer", "MOM", "--pretrained_model", "/m"]).unwrap();
        let back: TrainOptions = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert_eq!(back, o);
        let text = o.arguments_text();
        assert!(text.contains("optimizer: MOM\n"), "{text}");
        assert!(text.contains("pretrained_model: /m\n"), "{text}");
        assert!(text.contains("resume: None\n"), "{text}");
        // missing keys (older files) take defaults
        let partial: TrainOptions = serde_json::from_str(r#"{"batch_size": 7}"#).unwrap();
        assert_eq!(partial.batch_size, 7);
        assert_eq!(partial.epoch_size, 1000);
    }

    #[test]
    fn resume_overrides_only_given_flags() {
        let saved =
            TrainOptions::parse_from(["--batch_size", "8", "--max_nrof_epochs", "2", "--model_def", "inception_resnet_v1_small"]).unwrap();
        let given = TrainOptions::parse_from(["--resume", "/m/x", "--max_nrof_epochs", "4"]).unwrap();
        let merged = given.overriding(&saved).unwrap();
        assert_eq!(merged.batch_size, 8);
        assert_eq!(merged.max_nrof_epochs, 4);
        assert_eq!(merged.model_def, "inception_resnet_v1_small");
        assert_eq!(merged.resume.as_deref(), Some("/m/x"));
        let bad = TrainOptions::parse_from(["--resume", "/m/x", "--embedding_size", "64"]).unwrap();
        assert!(bad.overriding(&saved).is_err());
    }

    #[test]
    fn validation_catches_bad_values() {
        for args in [
            vec!["--batch_size", "0"],
            vec!["--keep_probability", "0"],
            vec!["--learning_rate", "nan"],
            vec!["--lfw_distance_metric", "2"],
            vec!["--validation_set_split_ratio", "1.0"],
            vec!["--filter_filename", "x.h5"],
            vec!["--image_size", "0"],
            vec!["--image_size", "100000"],
            vec!["--image_size", "4294967295"],
            vec!["--batch_size", "1000000"],
            vec!["--embedding_size", "100000000"],
            vec!["--nrof_preprocess_threads", "100000"],
            vec!["--epoch_size", "0"],
            vec!["--max_nrof_epochs", "18446744073709551615"],
            vec!["--weight_decay", "nan"],
            vec!["--center_loss_factor", "inf"],
            vec!["--learning_rate_decay_factor", "inf"],
            vec!["--lfw_dir", "x", "--lfw_nrof_folds", "1000000"],
        ] {
            let o = TrainOptions::parse_from(args.clone()).unwrap();
            assert!(o.validate().is_err(), "{args:?}");
        }
    }
}
