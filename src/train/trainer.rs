//! The training loop of `facenet train` (the reference's `train_softmax.py`): per epoch,
//! `epoch_size` batches from the shuffled index stream, each a forward pass, the loss
//! (cross-entropy + weight decay + center loss + prelogits norm), a backward pass, a TF1
//! optimizer step and the centre update; then validation (every `validate_every_n_epochs`),
//! the LFW protocol (when `--lfw_dir` is given), one `epochs.csv` row and a checkpoint.
//!
//! Order per epoch: train, validate, LFW, `epochs.csv` row, checkpoint (the reference saves
//! before its LFW evaluation; saving last means a checkpoint always has its epoch's
//! statistics on disk, which is what `--resume` relies on).
//!
//! Determinism: with a fixed `--seed` a run is a function of its options and data: weights
//! are initialised from the seed, the index stream and the augmentation of every sample are
//! derived from it (see [`crate::data::loader`]), and dropout is reseeded from (seed, epoch)
//! at every epoch start. A run resumed from a checkpoint therefore continues exactly as the
//! uninterrupted run would.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::center_loss::CenterLoss;
use super::checkpoint::{
    latest_checkpoint, load_pretrained, load_weights, read_model_file, read_train_state, save_checkpoint, Checkpoint, ModelFile, ModelMeta,
    TrainState, KEEP_CHECKPOINTS, MODEL_FILE, OPTIONS_JSON,
};
use super::evaluate::{evaluate_lfw, validate, LfwMetrics, LfwSet, ValidationInput};
use super::loss::{loss_terms, LossValues, LossWeights};
use super::optim::Tf1Optimizer;
use super::options::TrainOptions;
use super::run_dir::RunDirs;
use super::schedule::{LearningRatePolicy, RateSource, Schedule, ScheduledRate};
use super::stats::{CsvLog, EpochRecord, StepRecord, EPOCH_COLUMNS, STEP_COLUMNS};
use crate::data::augment::{mix64, Augment};
use crate::data::dataset::{expand_tilde, Dataset};
use crate::data::loader::{
    paths_and_labels, plans_from_indices, split_dataset, BadImages, BatchLoader, IndexStream, LoaderConfig, SplitMode,
};
use crate::eval::embed::EmbedOptions;
use crate::eval::metrics::EvalOptions;
use crate::model::inception_resnet_v1::InceptionResnetV1;
use crate::model::registry::{canonical_name, config_from_def, ModelOptions};
use crate::util::atomic::write_atomic;
use crate::util::progress;

/// Receives progress from [`train`]; every method has a no-op default (`&mut ()` observes
/// nothing).
pub trait TrainObserver {
    /// After every optimizer step.
    fn on_step(&mut self, _step: &StepRecord) {}
    /// After every epoch (statistics written, checkpoint saved); `Break` stops training.
    fn on_epoch(&mut self, _epoch: &EpochRecord) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

impl TrainObserver for () {}

/// Why training ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// `--max_nrof_epochs` epochs are done.
    MaxEpochs,
    /// The learning rate schedule said stop at this epoch.
    Schedule { epoch: usize },
    /// The observer asked to stop.
    Observer,
}

/// What a finished (or stopped) run produced.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub log_dir: PathBuf,
    pub model_dir: PathBuf,
    /// The newest checkpoint (None if no epoch completed).
    pub last_checkpoint: Option<PathBuf>,
    /// Last completed epoch.
    pub epochs_completed: usize,
    pub global_step: u64,
    /// The last LFW evaluation of this call, if any.
    pub final_lfw: Option<LfwMetrics>,
    /// The epochs run by this call.
    pub history: Vec<EpochRecord>,
    pub stop_reason: StopReason,
    pub meta: ModelMeta,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
}

/// Prints what a run does to stdout/stderr; `quiet` leaves only warnings and errors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console {
    pub quiet: bool,
}

macro_rules! say {
    ($c:expr, $($t:tt)*) => { if !$c.quiet { println!($($t)*); } };
}

/// Trains as `opts` say (or continues the run `opts.resume` names) and returns where the
/// results are. Statistics and checkpoints are written as training goes; `observer` sees
/// every step and epoch.
pub fn train(opts: &TrainOptions, observer: &mut dyn TrainObserver) -> Result<TrainSummary> {
    train_with_console(opts, observer, Console::default())
}

/// [`train`] with control over console output.
pub fn train_with_console(opts: &TrainOptions, observer: &mut dyn TrainObserver, console: Console) -> Result<TrainSummary> {
    let started = Instant::now();
    // ---- options, resume -------------------------------------------------------------
    let resume_dir = opts.resume.as_deref().map(expand_tilde);
    let opts = match &resume_dir {
        Some(dir) => {
            let p = dir.join(OPTIONS_JSON);
            let text = std::fs::read_to_string(&p)
                .with_context(|| format!("--resume: cannot read {} (is this a run's models folder?)", p.display()))?;
            let saved: TrainOptions = serde_json::from_str(&text).with_context(|| format!("{}: bad options", p.display()))?;
            opts.overriding(&saved)?
        }
        None => opts.clone(),
    };
    opts.validate()?;
    let model_def = canonical_name(&opts.model_def).ok_or_else(|| anyhow!("unknown --model_def '{}'", opts.model_def))?.to_string();

    // ---- data --------------------------------------------------------------------------
    let dataset = Dataset::open(&opts.data_dir).with_context(|| "reading --data_dir".to_string())?;
    if !dataset.warnings.is_empty() {
        eprintln!("warning: {} file(s)/folder(s) in --data_dir skipped, e.g. {}", dataset.warnings.len(), dataset.warnings[0]);
    }
    let (train_set, val_set) =
        split_dataset(&dataset.classes, opts.validation_set_split_ratio, opts.min_nrof_val_images_per_class, SplitMode::Images, opts.seed);
    if train_set.is_empty() {
        bail!("no class left for training after the validation split (lower --min_nrof_val_images_per_class)");
    }
    let num_classes = train_set.len();
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

    // ---- network, optimizer, centres, position ------------------------------------------
    let device = Device::default();
    let ad = device.clone().autodiff();
    let checkpoint = match &resume_dir {
        Some(dir) => latest_checkpoint(dir)?,
        None => None,
    };
    let mut optimizer = Tf1Optimizer::new(opts.optimizer);
    let mut config = config_from_def(
        &model_def,
        &ModelOptions { embedding_size: opts.embedding_size, keep_probability: opts.keep_probability, num_classes },
    )?;
    config.cost(opts.image_size as usize).map_err(|e| anyhow!("--image_size {}: {e}", opts.image_size))?;
    ad.seed(opts.seed);
    let mut model: InceptionResnetV1;
    let mut centers: CenterLoss;
    let mut stream: IndexStream;
    let mut global_step: u64 = 0;
    let mut start_epoch = 1;
    let dirs: RunDirs;
    if let Some(ckpt) = &checkpoint {
        let mf = read_model_file(ckpt)?;
        let st = read_train_state(ckpt)?;
        if mf.config.num_classes != num_classes {
            bail!("{}: the checkpoint has {} classes but --data_dir now gives {num_classes}", ckpt.display(), mf.config.num_classes);
        }
        if st.state.num_train_images != train_paths.len() {
            bail!(
                "{}: the run trained on {} images but --data_dir now gives {} (the data changed; start a new run with --pretrained_model instead)",
                ckpt.display(),
                st.state.num_train_images,
                train_paths.len()
            );
        }
        if st.state.optimizer != opts.optimizer {
            bail!("--optimizer cannot change when resuming ({} in the checkpoint)", st.state.optimizer.name());
        }
        config = mf.config.clone();
        model = config.init(&ad);
        load_weights(&mut model, &ckpt.join(MODEL_FILE), true)?;
        optimizer.load_state(&st.optimizer, st.state.optimizer_steps, &device)?;
        centers = CenterLoss::from_values(st.centers.1, num_classes, config.embedding_size, opts.center_loss_alfa, &device)?;
        stream = IndexStream::from_state(train_paths.len(), opts.seed, st.state.index_stream_pass, st.state.index_stream_pos);
        global_step = st.state.global_step;
        start_epoch = st.state.epoch + 1;
        dirs = RunDirs::existing(resume_dir.as_deref().unwrap_or(Path::new(".")), &st.state.log_dir)?;
    } else {
        model = config.init(&ad);
        if let Some(p) = &opts.pretrained_model {
            let msg = load_pretrained(&mut model, &expand_tilde(p))?;
            say!(console, "Pre-trained model: {msg}");
        }
        centers = CenterLoss::new(num_classes, config.embedding_size, opts.center_loss_alfa, &device);
        stream = IndexStream::new(train_paths.len(), opts.seed);
        dirs = match &resume_dir {
            // resumed before the first checkpoint: start over in the same folders
            Some(dir) => {
                let stamp = dir.file_name().map(|s| s.to_owned()).unwrap_or_default();
                RunDirs::existing(dir, &expand_tilde(&opts.logs_base_dir).join(stamp))?
            }
            None => RunDirs::create(&opts.logs_base_dir, &opts.models_base_dir)?,
        };
    }
    let meta = ModelMeta {
        model_def: model_def.clone(),
        embedding_size: config.embedding_size,
        image_size: opts.image_size,
        standardization: opts.standardization(),
        num_classes,
    };

    // ---- run folders -------------------------------------------------------------------
    dirs.write_arguments(&opts)?;
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    dirs.write_revision_info(&command_line)?;
    write_atomic(&dirs.model_dir.join(OPTIONS_JSON), serde_json::to_string_pretty(&opts)?.as_bytes())?;
    let (steps_path, epochs_path) = (dirs.log_dir.join("steps.csv"), dirs.log_dir.join("epochs.csv"));
    let (mut steps_log, mut epochs_log) = if checkpoint.is_some() {
        // drop what the killed run wrote after its last checkpoint
        let last_done = start_epoch - 1;
        (CsvLog::resume(&steps_path, STEP_COLUMNS, 1, last_done)?, CsvLog::resume(&epochs_path, EPOCH_COLUMNS, 0, last_done)?)
    } else {
        (CsvLog::create(&steps_path, STEP_COLUMNS)?, CsvLog::create(&epochs_path, EPOCH_COLUMNS)?)
    };

    say!(console, "Model directory: {}", dirs.model_dir.display());
    say!(console, "Log directory: {}", dirs.log_dir.display());
    if let Some(c) = &checkpoint {
        say!(console, "Resuming from {} (epoch {}, step {global_step})", c.display(), start_epoch - 1);
    }
    say!(
        console,
        "Network: {model_def}, embedding {}, {} classes; input {}x{} ({:?} standardisation)",
        config.embedding_size,
        num_classes,
        opts.image_size,
        opts.image_size,
        meta.standardization
    );
    say!(console, "Number of classes in training set: {num_classes}");
    say!(console, "Number of examples in training set: {}", train_paths.len());
    say!(console, "Number of classes in validation set: {}", val_set.len());
    say!(console, "Number of examples in validation set: {}", val_paths.len());
    if let Some(l) = &lfw {
        say!(console, "LFW pairs: {} ({} dropped for missing images)", l.issame.len(), l.dropped);
    }
    say!(
        console,
        "Optimizer {}, learning rate {policy}; {} epochs of {} batches of {}",
        opts.optimizer.name(),
        opts.max_nrof_epochs,
        opts.epoch_size,
        opts.batch_size
    );

    // ---- loop --------------------------------------------------------------------------
    let weights = LossWeights {
        weight_decay: opts.weight_decay,
        center_loss_factor: opts.center_loss_factor,
        prelogits_norm_loss_factor: opts.prelogits_norm_loss_factor,
        prelogits_norm_p: opts.prelogits_norm_p,
    };
    let loader_cfg = LoaderConfig {
        augment: Augment {
            image_size: opts.image_size,
            random_rotate: opts.random_rotate,
            random_crop: opts.random_crop,
            random_flip: opts.random_flip,
        },
        standardization: opts.standardization(),
        threads: opts.nrof_preprocess_threads.max(1),
        seed: opts.seed,
    };
    let train_paths = Arc::new(train_paths);
    let train_labels = Arc::new(train_labels);
    let val_paths = Arc::new(val_paths);
    let val_labels = Arc::new(val_labels);
    let bad = Arc::new(BadImages::new());
    let embed_opts = EmbedOptions {
        image_size: opts.image_size,
        batch_size: opts.lfw_batch_size,
        standardization: opts.standardization(),
        use_flipped_images: opts.lfw_use_flipped_images,
    };
    let eval_opts = EvalOptions {
        nrof_folds: opts.lfw_nrof_folds,
        distance_metric: opts.distance_metric()?,
        subtract_mean: opts.lfw_subtract_mean,
        ..EvalOptions::default()
    };
    let size = opts.image_size as usize;
    let per_epoch = opts.batch_size * opts.epoch_size;

    let mut history = Vec::new();
    let mut last_checkpoint = checkpoint.clone();
    let mut final_lfw = None;
    let mut stop_reason = StopReason::MaxEpochs;
    let mut lr = 0.0;
    for epoch in start_epoch..=opts.max_nrof_epochs {
        let base = match policy.base_rate(epoch)? {
            ScheduledRate::Rate(r) => r,
            ScheduledRate::Stop => {
                say!(console, "Learning rate schedule stops training at epoch {epoch}");
                stop_reason = StopReason::Schedule { epoch };
                break;
            }
        };
        ad.seed(mix64(opts.seed ^ mix64(epoch as u64 ^ 0x64726F70)));
        let first_serial = global_step * opts.batch_size as u64;
        let plans = plans_from_indices(&stream.take(per_epoch), opts.batch_size, first_serial);
        let loader = BatchLoader::start(train_paths.clone(), train_labels.clone(), plans, loader_cfg, bad.clone());
        let bar = progress::bar(per_epoch as u64, "img");
        if console.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let t_epoch = Instant::now();
        let mut sums = LossValues::default();
        let (mut n_steps, mut n_images, mut n_skipped) = (0usize, 0usize, 0usize);
        for batch in loader {
            n_skipped += batch.skipped;
            let n = batch.len();
            let done = (n + batch.skipped) as u64;
            if n == 0 {
                bar.inc(done);
                continue;
            }
            lr = policy.decayed(base, global_step);
            let t_step = Instant::now();
            let labels: Vec<i64> = batch.labels;
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &ad);
            let labels_plain = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), &device);
            let labels_ad = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), &ad);
            let out = model.forward(x);
            let logits = out.logits.ok_or_else(|| anyhow!("the training network has no Logits layer"))?;
            let batch_centers = centers.batch_centers(&labels_plain);
            let terms = loss_terms(&model, out.prelogits.clone(), logits, labels_ad, &batch_centers, &weights);
            let values = terms.values(&weights);
            if !values.total.is_finite() {
                bail!(
                    "the loss became {} at step {} (epoch {epoch}); the learning rate ({lr}) is probably too high",
                    values.total,
                    global_step + 1
                );
            }
            let prelogits = out.prelogits.detach().inner();
            let grads = GradientsParams::from_grads(terms.total.backward(), &model);
            model = optimizer.step(lr, model, grads);
            centers.update(&labels_plain, prelogits, batch_centers);
            global_step += 1;
            n_steps += 1;
            n_images += n;
            sums.total += values.total;
            sums.xent += values.xent;
            sums.reg += values.reg;
            sums.center += values.center;
            sums.prelogits_norm += values.prelogits_norm;
            sums.accuracy += values.accuracy;
            let rec = StepRecord {
                step: global_step,
                epoch,
                batch: batch.number + 1,
                values,
                lr,
                images: n,
                skipped: batch.skipped,
                seconds: t_step.elapsed().as_secs_f64(),
            };
            steps_log.write(&rec.fields())?;
            bar.set_message(format!(
                "epoch {epoch}/{} loss {:.3} acc {:.3} lr {lr:.3e}",
                opts.max_nrof_epochs, values.total, values.accuracy
            ));
            bar.inc(done);
            observer.on_step(&rec);
        }
        bar.finish_and_clear();
        let time_train = t_epoch.elapsed().as_secs_f64();
        let k = n_steps.max(1) as f64;
        let mut rec = EpochRecord {
            epoch,
            loss: sums.total / k,
            xent: sums.xent / k,
            accuracy: sums.accuracy / k,
            lr,
            reg_loss: sums.reg / k,
            center_loss: sums.center / k,
            prelogits_norm: sums.prelogits_norm / k,
            step: global_step,
            images: n_images,
            skipped_images: n_skipped,
            images_per_s: n_images as f64 / time_train.max(1e-9),
            time_train,
            ..Default::default()
        };

        let inference = model.valid();
        let every = opts.validate_every_n_epochs;
        if !val_paths.is_empty() && ((epoch - 1) % every == every - 1 || epoch == opts.max_nrof_epochs) {
            let input = ValidationInput {
                paths: val_paths.clone(),
                labels: val_labels.clone(),
                image_size: opts.image_size,
                standardization: opts.standardization(),
                batch_size: opts.lfw_batch_size,
                threads: loader_cfg.threads,
                centers: &centers,
                weights,
                bad: bad.clone(),
            };
            let v = validate(&inference, &input, &device);
            rec.time_validate = v.seconds;
            rec.val = Some(v);
        }
        if let Some(set) = &lfw {
            let m = evaluate_lfw(&inference, set, &embed_opts, &eval_opts, &device)?;
            rec.time_evaluate = m.seconds;
            append_lfw_result(&dirs.log_dir, global_step, &m)?;
            final_lfw = Some(m.clone());
            rec.lfw = Some(m);
        }
        drop(inference);
        epochs_log.write(&rec.fields())?;
        say!(console, "{}", epoch_line(&rec, opts.max_nrof_epochs));

        let (pass, pos) = stream.state();
        let ckpt = Checkpoint {
            model: &model,
            model_file: ModelFile { format: "facenet-checkpoint-1".into(), meta: meta.clone(), config: config.clone(), epoch, global_step },
            state: TrainState {
                epoch,
                global_step,
                optimizer: opts.optimizer,
                optimizer_steps: optimizer.steps(),
                seed: opts.seed,
                index_stream_pass: pass,
                index_stream_pos: pos,
                num_train_images: train_paths.len(),
                log_dir: dirs.log_dir.clone(),
                learning_rate: lr,
            },
            optimizer: optimizer.state_tensors()?,
            centers: (vec![num_classes, config.embedding_size], centers.values()?),
        };
        last_checkpoint = Some(save_checkpoint(&dirs.model_dir, &ckpt, KEEP_CHECKPOINTS)?);
        history.push(rec.clone());
        if observer.on_epoch(&rec).is_break() {
            stop_reason = StopReason::Observer;
            break;
        }
    }

    let epochs_completed = last_checkpoint.as_deref().and_then(|c| read_model_file(c).ok()).map(|m| m.epoch).unwrap_or(0);
    let summary = TrainSummary {
        log_dir: dirs.log_dir.clone(),
        model_dir: dirs.model_dir.clone(),
        last_checkpoint,
        epochs_completed,
        global_step,
        final_lfw,
        history,
        stop_reason,
        meta,
        seconds: started.elapsed().as_secs_f64(),
    };
    if !console.quiet {
        print_summary(&summary);
    }
    Ok(summary)
}

/// `lfw_result.txt` as the reference writes it: `step<TAB>accuracy<TAB>val` per evaluation.
fn append_lfw_result(log_dir: &Path, step: u64, m: &LfwMetrics) -> Result<()> {
    use std::io::Write;
    let p = log_dir.join("lfw_result.txt");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&p).with_context(|| format!("cannot write {}", p.display()))?;
    writeln!(f, "{step}\t{:.5}\t{:.5}", m.accuracy, m.val)?;
    Ok(())
}

/// The one-line summary of an epoch.
pub fn epoch_line(r: &EpochRecord, max_epochs: usize) -> String {
    let mut s = format!(
        "Epoch {}/{max_epochs}: loss {:.3} xent {:.3} reg {:.3} acc {:.3} lr {:.3e} | {:.1} img/s, {:.1} s",
        r.epoch, r.loss, r.xent, r.reg_loss, r.accuracy, r.lr, r.images_per_s, r.time_train
    );
    if let Some(v) = &r.val {
        s.push_str(&format!(" | validation loss {:.3} acc {:.3}", v.loss, v.accuracy));
    }
    if let Some(l) = &r.lfw {
        s.push_str(&format!(" | LFW accuracy {:.4}+-{:.4} VAL {:.4}@FAR={:.4}", l.accuracy, l.accuracy_std, l.val, l.far));
    }
    if r.skipped_images > 0 {
        s.push_str(&format!(" | {} unreadable image(s) skipped", r.skipped_images));
    }
    s
}

/// The closing lines of a run.
pub fn print_summary(s: &TrainSummary) {
    let why = match &s.stop_reason {
        StopReason::MaxEpochs => "max_nrof_epochs reached".to_string(),
        StopReason::Schedule { epoch } => format!("the schedule stops at epoch {epoch}"),
        StopReason::Observer => "stopped by the caller".to_string(),
    };
    println!("Training finished ({why}): {} epoch(s) done, {} steps, {:.1} min", s.epochs_completed, s.global_step, s.seconds / 60.0);
    if let Some(c) = &s.last_checkpoint {
        println!("  checkpoint  {}", c.display());
    }
    println!("  statistics  {}", s.log_dir.join("epochs.csv").display());
    if let Some(l) = &s.final_lfw {
        println!(
            "  LFW (last epoch): accuracy {:.5}+-{:.5}, VAL {:.5}+-{:.5} @ FAR={:.5}, AUC {:.3}",
            l.accuracy, l.accuracy_std, l.val, l.val_std, l.far, l.auc
        );
    }
}
