//! The training loop of `facenet train` (the reference's `train_softmax.py`), as a sequence
//! of named phases:
//!
//! ```text
//! resolve_options -> TrainData::load -> RunState::build -> RunLogs::open -> print_header   (start.rs)
//! per epoch: Training::train_epoch (epoch.rs)                 epoch_size steps of TrainStep (step.rs)
//!            Training::evaluate    (end_of_epoch.rs)          validation set, LFW protocol
//!            Training::finish_epoch (end_of_epoch.rs)         epochs.csv row, checkpoint
//! ```
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
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use super::epoch::EpochEnd;
use super::guard::NonFinitePolicy;
use super::memory;
use super::options::TrainOptions;
use super::schedule::ScheduledRate;
use super::start::{print_header, resolve_options, RunLogs, RunState, TrainData};
use super::stats::{EpochRecord, StepRecord};
use super::summary::{print_summary, Console, StopReason, TrainSummary};
use crate::data::augment::Augment;
use crate::data::loader::{BadImages, LoaderConfig};
use crate::model::load::read_model_file;
use crate::util::precision::set_precision;
use crate::util::stop;

/// `--sync_every` when not given: 1 on the CPU (a read-back costs nothing on the CPU backend,
/// which computes as the step is built), a read-back every 10 steps on a GPU.
pub fn default_sync_every(is_cpu: bool) -> usize {
    if is_cpu {
        1
    } else {
        10
    }
}

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

/// A run between its start and its end: what the epoch phases read and advance.
pub struct Training<'a> {
    pub opts: &'a TrainOptions,
    pub data: &'a TrainData,
    pub state: RunState,
    pub logs: RunLogs,
    pub loader: LoaderConfig,
    /// Unreadable images, reported once each.
    pub bad: Arc<BadImages>,
    pub console: Console,
    /// The learning rate of the last step.
    pub lr: f64,
    /// The newest checkpoint written or resumed from.
    pub last_checkpoint: Option<std::path::PathBuf>,
    /// Consecutive refused steps and rollbacks.
    pub nonfinite: NonFinitePolicy,
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
    let (mut opts, resume_dir) = resolve_options(opts)?;
    // the one place the run's device is chosen; arguments.txt records it resolved
    if let Some(list) = &opts.devices {
        // the replicas' device (all CPU replicas share the CPU)
        opts.device = super::data_parallel::check_devices(list)?;
    }
    let device = opts.device.open()?;
    opts.device = device.spec;
    opts.sync_every = Some(opts.sync_every.unwrap_or(default_sync_every(device.is_cpu())));
    set_precision(opts.precision, &device)?;
    let data = TrainData::load(&opts)?;
    let state = RunState::build(&opts, &data, resume_dir.as_deref(), &device.device, console)?;
    let memory = memory::check_training(&opts, &state.config, device.is_cpu())?;
    let logs = RunLogs::open(&opts, &state)?;
    print_header(console, &opts, &data, &state, &device.description);
    console.say(memory);

    let mut run = Training::new(&opts, &data, state, logs, console);
    let mut history = Vec::new();
    let mut stop_reason = StopReason::MaxEpochs;
    let mut epoch = run.state.start_epoch;
    while epoch <= opts.max_nrof_epochs {
        let base_rate = match data.policy.base_rate(epoch)? {
            ScheduledRate::Rate(r) => r,
            ScheduledRate::Stop => {
                console.say(format_args!("Learning rate schedule stops training at epoch {epoch}"));
                stop_reason = StopReason::Schedule { epoch };
                break;
            }
        };
        let mut rec = match run.train_epoch(epoch, base_rate, observer)? {
            EpochEnd::Done(rec) => rec,
            EpochEnd::Interrupted(partial) => {
                run.save_checkpoint(epoch - 1, Some(partial))?;
                stop_reason = StopReason::Signal;
                break;
            }
            EpochEnd::Rollback(factor) => {
                run.rollback(factor, &device.device)?;
                epoch = run.state.start_epoch;
                continue;
            }
        };
        run.evaluate(&mut rec)?;
        run.finish_epoch(&rec)?;
        history.push(rec.clone());
        if stop::requested() {
            stop_reason = StopReason::Signal;
            break;
        }
        if observer.on_epoch(&rec).is_break() {
            stop_reason = StopReason::Observer;
            break;
        }
        epoch += 1;
    }
    if stop_reason == StopReason::Signal {
        // always said, even when quiet: where the run stands and how to continue it
        let ckpt = run.last_checkpoint.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
        eprintln!(
            "Stopped by a signal after step {}; checkpoint {ckpt}. To continue: facenet train --resume {}",
            run.state.global_step,
            run.state.dirs.model_dir.display()
        );
    }

    let summary = TrainSummary {
        epochs_completed: run.last_checkpoint.as_deref().and_then(|c| read_model_file(c).ok()).map(|m| m.epoch).unwrap_or(0),
        final_lfw: history.iter().rev().find_map(|r| r.lfw.clone()),
        log_dir: run.state.dirs.log_dir.clone(),
        model_dir: run.state.dirs.model_dir.clone(),
        last_checkpoint: run.last_checkpoint,
        global_step: run.state.global_step,
        history,
        stop_reason,
        meta: run.state.meta,
        device: device.description.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    if !console.quiet {
        print_summary(&summary);
    }
    Ok(summary)
}

impl<'a> Training<'a> {
    fn new(opts: &'a TrainOptions, data: &'a TrainData, state: RunState, logs: RunLogs, console: Console) -> Self {
        let loader = LoaderConfig {
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
        let last_checkpoint = state.checkpoint.clone();
        let nonfinite = NonFinitePolicy::new(opts.max_nonfinite_steps, opts.nonfinite_lr_factor);
        Training { opts, data, state, logs, loader, bad: Arc::new(BadImages::new()), console, lr: 0.0, last_checkpoint, nonfinite }
    }

    /// Goes back to the newest checkpoint (after too many non-finite steps) with the
    /// learning rate multiplied by `factor` from then on: network, optimiser, centres and
    /// position as `--resume` reads them, the logs trimmed to it.
    fn rollback(&mut self, factor: f64, device: &burn::tensor::Device) -> Result<()> {
        let dir = self.state.dirs.model_dir.clone();
        let quiet = Console { quiet: true };
        let mut state = RunState::build(self.opts, self.data, Some(&dir), device, quiet)?;
        state.lr_factor *= factor;
        eprintln!(
            "warning: rolling back to {} (epoch {}, step {}); learning rate multiplied by {} from now on (rollback {} of at most {})",
            state.checkpoint.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            state.start_epoch - 1,
            state.global_step,
            state.lr_factor,
            self.nonfinite.rollbacks,
            super::guard::MAX_ROLLBACKS,
        );
        // the logs of the abandoned steps go: CSV rows and event files are trimmed to the
        // checkpoint (everything up to it was flushed when it was written) and reopened
        self.state = state;
        self.logs = RunLogs::continue_from(&self.state)?;
        self.last_checkpoint = self.state.checkpoint.clone();
        Ok(())
    }
}
