//! The phases of `facenet train` before its first epoch, in the order they run:
//!
//! 1. [`resolve_options`]: the command line, or the saved options of the run `--resume` names;
//! 2. [`TrainData::load`]: the dataset, its validation split, the LFW pairs, the learning rates;
//! 3. [`RunState::build`]: network, optimiser and centres (fresh, pretrained or from the
//!    latest checkpoint), the position in the index stream, the run's folders;
//! 4. [`RunLogs::open`]: `arguments.txt`, `revision_info.txt`, `options.json`, the CSV logs,
//!    the TensorBoard event file;
//! 5. [`print_header`]: what the run is about to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;

use super::center_loss::CenterLoss;
use super::checkpoint::{latest_good_checkpoint, read_train_state, PartialEpoch, OPTIONS_JSON};
use super::evaluate::LfwSet;
use super::loss::LossWeights;
use super::loss_scale::LossScale;
use super::optim::Tf1Optimizer;
use super::options::TrainOptions;
use super::run_dir::RunDirs;
use super::schedule::{LearningRatePolicy, RateSource, Schedule};
use super::stats::{CsvLog, EPOCH_COLUMNS, STEP_COLUMNS};
use super::step::TrainStep;
use super::summary::Console;
use super::tensorboard::TrainEvents;
use crate::data::dataset::{expand_tilde, Dataset};
use crate::data::loader::{paths_and_labels, split_dataset, IndexStream, SplitMode};
use crate::model::inception_resnet_v1::{InceptionResnetV1, InceptionResnetV1Config};
use crate::model::load::{load_pretrained, load_weights, read_model_file, ModelMeta, MODEL_FILE};
use crate::model::registry::{canonical_name, config_from_def, ModelOptions};
use crate::util::atomic::write_atomic;
use crate::util::precision::describe_products;

/// Phase 1: the options of this run (those saved in the `--resume` folder, overridden by the
/// flags given now), checked; and the folder to resume from, if any.
pub fn resolve_options(opts: &TrainOptions) -> Result<(TrainOptions, Option<PathBuf>)> {
    let resume_dir = opts.resume.as_deref().map(expand_tilde);
    let opts = match &resume_dir {
        Some(dir) => {
            let p = dir.join(OPTIONS_JSON);
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("--resume: cannot read {} (is this a run's models folder?)", p.display()))?;
            let saved: TrainOptions = serde_json::from_str(&text).with_context(|| format!("{}: bad options", p.display()))?;
            // every field checked where it is read, the error naming the file
            saved.validate().with_context(|| format!("{}: bad options", p.display()))?;
            opts.overriding(&saved)?
        }
        None => opts.clone(),
    };
    opts.validate()?;
    canonical_name(&opts.model_def).ok_or_else(|| anyhow!("unknown --model_def '{}'", opts.model_def))?;
    Ok((opts, resume_dir))
}

/// Phase 2: everything the run reads besides the network.
pub struct TrainData {
    pub train_paths: Arc<Vec<PathBuf>>,
    pub train_labels: Arc<Vec<usize>>,
    pub val_paths: Arc<Vec<PathBuf>>,
    pub val_labels: Arc<Vec<usize>>,
    /// Classes of the training split (the Logits layer's width).
    pub num_classes: usize,
    /// Classes with validation images.
    pub val_classes: usize,
    /// The `--lfw_dir` pairs, if given.
    pub lfw: Option<LfwSet>,
    /// Learning rate per epoch and step.
    pub policy: LearningRatePolicy,
}

impl TrainData {
    pub fn load(opts: &TrainOptions) -> Result<Self> {
        let dataset = Dataset::open(&opts.data_dir).with_context(|| "reading --data_dir".to_string())?;
        if !dataset.warnings.is_empty() {
            eprintln!("warning: {} file(s)/folder(s) in --data_dir skipped, e.g. {}", dataset.warnings.len(), dataset.warnings[0]);
        }
        let (train_set, val_set) = split_dataset(
            &dataset.classes,
            opts.validation_set_split_ratio,
            opts.min_nrof_val_images_per_class,
            SplitMode::Images,
            opts.seed,
        );
        if train_set.is_empty() {
            bail!("no class left for training after the validation split (lower --min_nrof_val_images_per_class)");
        }
        let (train_paths, train_labels) = paths_and_labels(&train_set);
        let (val_paths, val_labels) = paths_and_labels(&val_set);
        let lfw = match opts.lfw_dir_path() {
            Some(dir) => Some(LfwSet::load(&dir, &expand_tilde(&opts.lfw_pairs))?),
            None => None,
        };
        let policy = LearningRatePolicy {
            source: if opts.learning_rate > 0.0 {
                RateSource::Fixed(opts.learning_rate)
            } else {
                RateSource::File(Schedule::read(&expand_tilde(&opts.learning_rate_schedule_file))?)
            },
            decay_epochs: opts.learning_rate_decay_epochs,
            decay_factor: opts.learning_rate_decay_factor,
            epoch_size: opts.epoch_size,
        };
        Ok(TrainData {
            num_classes: train_set.len(),
            val_classes: val_set.len(),
            train_paths: Arc::new(train_paths),
            train_labels: Arc::new(train_labels),
            val_paths: Arc::new(val_paths),
            val_labels: Arc::new(val_labels),
            lfw,
            policy,
        })
    }
}

/// Phase 3: where the run stands before its next epoch.
pub struct RunState {
    /// Network, optimiser and centres.
    pub step: TrainStep,
    /// The autodiff device the network and its inputs live on (dropout is seeded on it).
    pub ad: Device,
    /// The shuffled index stream over the training images, at its position.
    pub stream: IndexStream,
    pub global_step: u64,
    pub start_epoch: usize,
    /// Set when the checkpoint resumed from was written inside epoch `start_epoch` (a
    /// stopped run); the stream is then at that epoch's start.
    pub partial: Option<PartialEpoch>,
    /// Multiplies the scheduled learning rate (lowered by rollbacks after non-finite steps).
    pub lr_factor: f64,
    pub dirs: RunDirs,
    /// The checkpoint resumed from.
    pub checkpoint: Option<PathBuf>,
    pub config: InceptionResnetV1Config,
    pub meta: ModelMeta,
}

impl RunState {
    /// A fresh run (weights from the seed, or `--pretrained_model`), or the latest checkpoint
    /// of the `resume_dir` run.
    pub fn build(opts: &TrainOptions, data: &TrainData, resume_dir: Option<&Path>, device: &Device, console: Console) -> Result<Self> {
        let model_def = canonical_name(&opts.model_def).ok_or_else(|| anyhow!("unknown --model_def '{}'", opts.model_def))?.to_string();
        let ad = device.clone().autodiff();
        let checkpoint = match resume_dir {
            Some(dir) => latest_good_checkpoint(dir)?,
            None => None,
        };
        let mut optimizer = Tf1Optimizer::new(opts.optimizer);
        let num_classes = data.num_classes;
        let mut config = config_from_def(
            &model_def,
            &ModelOptions { embedding_size: opts.embedding_size, keep_probability: opts.keep_probability, num_classes },
        )?;
        config.cost(opts.image_size as usize).map_err(|e| anyhow!("--image_size {}: {e}", opts.image_size))?;
        ad.seed(opts.seed);
        let model: InceptionResnetV1;
        let centers: CenterLoss;
        let stream: IndexStream;
        let mut global_step: u64 = 0;
        let mut start_epoch = 1;
        let mut partial = None;
        let mut lr_factor = 1.0;
        let mut loss_scale = LossScale::for_precision(opts.precision);
        let dirs: RunDirs;
        let n_train = data.train_paths.len();
        if let Some(ckpt) = &checkpoint {
            let mf = read_model_file(ckpt)?;
            let st = read_train_state(ckpt)?;
            if mf.config.num_classes != num_classes {
                bail!("{}: the checkpoint has {} classes but --data_dir now gives {num_classes}", ckpt.display(), mf.config.num_classes);
            }
            if st.state.num_train_images != n_train {
                bail!(
                    "{}: the run trained on {} images but --data_dir now gives {n_train} (the data changed; start a new run with --pretrained_model instead)",
                    ckpt.display(),
                    st.state.num_train_images,
                );
            }
            if st.state.optimizer != opts.optimizer {
                bail!("--optimizer cannot change when resuming ({} in the checkpoint)", st.state.optimizer.name());
            }
            config = mf.config.clone();
            let mut m = config.init(&ad);
            load_weights(&mut m, &ckpt.join(MODEL_FILE), true)?;
            model = m;
            optimizer.load_state(&st.optimizer, st.state.optimizer_steps, device)?;
            centers = CenterLoss::from_values(st.centers.1, num_classes, config.embedding_size, opts.center_loss_alfa, device)?;
            stream = match &st.state.partial_epoch {
                Some(p) => IndexStream::from_state(n_train, opts.seed, p.stream_pass, p.stream_pos),
                None => IndexStream::from_state(n_train, opts.seed, st.state.index_stream_pass, st.state.index_stream_pos),
            };
            global_step = st.state.global_step;
            start_epoch = st.state.epoch + 1;
            partial = st.state.partial_epoch.clone();
            lr_factor = st.state.learning_rate_factor;
            if loss_scale.is_some() {
                // a run resumed in f16 continues with its scale
                loss_scale = Some(st.state.loss_scale.unwrap_or_default());
            }
            dirs = RunDirs::existing(resume_dir.unwrap_or(Path::new(".")), &st.state.log_dir)?;
        } else {
            let mut m = config.init(&ad);
            if let Some(p) = &opts.pretrained_model {
                let msg = load_pretrained(&mut m, &expand_tilde(p))?;
                console.say(format_args!("Pre-trained model: {msg}"));
            }
            model = m;
            centers = CenterLoss::new(num_classes, config.embedding_size, opts.center_loss_alfa, device);
            stream = IndexStream::new(n_train, opts.seed);
            dirs = match resume_dir {
                // resumed before the first checkpoint: start over in the same folders
                Some(dir) => {
                    let stamp = dir.file_name().map(|s| s.to_owned()).unwrap_or_default();
                    RunDirs::existing(dir, &expand_tilde(&opts.logs_base_dir).join(stamp))?
                }
                None => RunDirs::create(&opts.logs_base_dir, &opts.models_base_dir)?,
            };
        }
        let meta = ModelMeta {
            model_def,
            embedding_size: config.embedding_size,
            image_size: opts.image_size,
            standardization: opts.standardization(),
            num_classes,
        };
        let step = TrainStep::new(model, optimizer, centers, LossWeights::from_options(opts), device)
            .with_replicas(opts.replicas())
            .with_loss_scale(loss_scale);
        Ok(RunState { step, ad, stream, global_step, start_epoch, partial, lr_factor, dirs, checkpoint, config, meta })
    }
}

/// Phase 4: the run's statistics files, open for appending.
pub struct RunLogs {
    /// `steps.csv`: one row per optimiser step.
    pub steps: CsvLog,
    /// `epochs.csv`: one row per epoch.
    pub epochs: CsvLog,
    /// `events.out.tfevents.*`: the same values for TensorBoard.
    pub events: TrainEvents,
}

impl RunLogs {
    /// Writes the run's descriptions (`arguments.txt`, `revision_info.txt`, `options.json`)
    /// and opens the CSV logs and a new event file; a resumed run drops what was logged after
    /// its checkpoint.
    pub fn open(opts: &TrainOptions, state: &RunState) -> Result<Self> {
        let dirs = &state.dirs;
        dirs.write_arguments(opts)?;
        let command_line = std::env::args().collect::<Vec<_>>().join(" ");
        dirs.write_revision_info(&command_line)?;
        let p = dirs.model_dir.join(OPTIONS_JSON);
        write_atomic(&p, serde_json::to_string_pretty(opts)?.as_bytes()).with_context(|| format!("cannot write {}", p.display()))?;
        Self::continue_from(state)
    }

    /// Opens the CSV logs and a new event file for a run at `state`: a resumed (or rolled
    /// back) run drops what was logged after its checkpoint.
    pub fn continue_from(state: &RunState) -> Result<Self> {
        let dirs = &state.dirs;
        let (steps_path, epochs_path) = (dirs.log_dir.join("steps.csv"), dirs.log_dir.join("epochs.csv"));
        let (steps, epochs) = if state.checkpoint.is_some() {
            // drop what the killed run wrote after its last checkpoint (steps by step number:
            // a checkpoint can be inside an epoch)
            let last_done = state.start_epoch - 1;
            let last_step = usize::try_from(state.global_step).unwrap_or(usize::MAX);
            (CsvLog::resume(&steps_path, STEP_COLUMNS, 0, last_step)?, CsvLog::resume(&epochs_path, EPOCH_COLUMNS, 0, last_done)?)
        } else {
            (CsvLog::create(&steps_path, STEP_COLUMNS)?, CsvLog::create(&epochs_path, EPOCH_COLUMNS)?)
        };
        // after the CSV logs: a resumed run's loss averages continue from the trimmed steps.csv
        let events = TrainEvents::open(&dirs.log_dir, state.global_step);
        Ok(RunLogs { steps, epochs, events })
    }
}

/// Phase 5: the run's folders, data and recipe, before the first step.
pub fn print_header(console: Console, opts: &TrainOptions, data: &TrainData, state: &RunState, device: &str) {
    let say = |line: std::fmt::Arguments| console.say(line);
    say(format_args!("Device: {device}, {}", describe_products()));
    if let Some(list) = &opts.devices {
        let (n, r) = (opts.batch_size, list.replicas());
        say(format_args!("Devices: {list} ({r} replicas, {} to {} of the {n} images of a batch each)", n / r, n.div_ceil(r)));
    }
    say(format_args!("Model directory: {}", state.dirs.model_dir.display()));
    say(format_args!("Log directory: {}", state.dirs.log_dir.display()));
    if let Some(c) = &state.checkpoint {
        say(format_args!("Resuming from {} (epoch {}, step {})", c.display(), state.start_epoch - 1, state.global_step));
    }
    let meta = &state.meta;
    say(format_args!(
        "Network: {}, embedding {}, {} classes; input {}x{} ({:?} standardisation)",
        meta.model_def, meta.embedding_size, data.num_classes, opts.image_size, opts.image_size, meta.standardization
    ));
    say(format_args!("Number of classes in training set: {}", data.num_classes));
    say(format_args!("Number of examples in training set: {}", data.train_paths.len()));
    say(format_args!("Number of classes in validation set: {}", data.val_classes));
    say(format_args!("Number of examples in validation set: {}", data.val_paths.len()));
    if let Some(l) = &data.lfw {
        say(format_args!("LFW pairs: {} ({} dropped for missing images)", l.issame.len(), l.dropped));
    }
    say(format_args!(
        "Optimizer {}, learning rate {}; {} epochs of {} batches of {}",
        opts.optimizer.name(),
        data.policy,
        opts.max_nrof_epochs,
        opts.epoch_size,
        opts.batch_size
    ));
}
