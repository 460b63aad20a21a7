//! One epoch of training: `epoch_size` batches from the shuffled index stream, loaded and
//! augmented by the loader threads, each one [`TrainStep`](super::step::TrainStep) at the
//! scheduled learning rate, logged to `steps.csv` and the TensorBoard event file, shown on a
//! progress bar.
//!
//! Two things end an epoch early: a stop request (SIGINT / SIGTERM, [`crate::util::stop`]),
//! checked before each batch, so the step in progress always completes; and too many
//! consecutive refused steps ([`super::guard::NonFinitePolicy`]).
//!
//! Dropout is reseeded before every batch from (seed, epoch, batch), so that a run stopped
//! between two steps resumes exactly (the first batch keeps the epoch's seed).

use std::time::Instant;

use anyhow::{bail, Result};
use burn::tensor::{Tensor, TensorData};

use super::checkpoint::{EpochSums, PartialEpoch};
use super::guard::NonFiniteAction;
use super::loss::LossValues;
use super::stats::{EpochRecord, StepRecord};
use super::step::StepError;
use super::step_window::{Settled, StepWindow};
use super::trainer::{TrainObserver, Training};
use crate::data::augment::mix64;
use crate::data::loader::{plans_from_indices, BatchLoader};
use crate::util::{progress, stop};
use indicatif::ProgressBar;

/// How an epoch ended.
#[derive(Debug)]
pub enum EpochEnd {
    /// All its batches ran: its statistics (the evaluation fields still empty).
    Done(EpochRecord),
    /// A stop was requested: where the epoch stands, to checkpoint.
    Interrupted(PartialEpoch),
    /// Too many consecutive non-finite steps: go back to the last checkpoint with the
    /// learning rate multiplied by this factor.
    Rollback(f64),
}

/// A batch on the device, stepped or waiting in the window.
struct Queued {
    x: Tensor<4>,
    labels: Vec<i64>,
    /// Batch index within the epoch (0-based).
    index: usize,
    /// Dropout seed of this batch.
    seed: u64,
    /// Images that were skipped when loading it.
    skipped: usize,
}

impl Queued {
    /// Images the progress bar advances by when the batch is done.
    fn done(&self) -> u64 {
        (self.labels.len() + self.skipped) as u64
    }
}

/// An epoch in progress: what its steps add to.
struct EpochProgress {
    epoch: usize,
    base_rate: f64,
    sums: EpochSums,
    bar: ProgressBar,
}

impl Training<'_> {
    /// Trains epoch `epoch` at base learning rate `base_rate` (continuing it where a stopped
    /// run left it, when the run was resumed from such a checkpoint).
    ///
    /// With `--sync_every N` > 1 the steps are applied a window of N at a time and their loss
    /// values read back together ([`StepWindow`]); a window holding a non-finite step is undone
    /// and its batches run again one step at a time, so the run is the same as with N = 1.
    pub fn train_epoch(&mut self, epoch: usize, base_rate: f64, observer: &mut dyn TrainObserver) -> Result<EpochEnd> {
        let opts = self.opts;
        let epoch_seed = mix64(opts.seed ^ mix64(epoch as u64 ^ 0x64726F70));
        let per_epoch = opts.batch_size * opts.epoch_size;
        let resumed = self.state.partial.take();
        let (stream_pass, stream_pos) = self.state.stream.state();
        let start_step = resumed.as_ref().map_or(self.state.global_step, |p| p.start_step);
        let first_serial = start_step * opts.batch_size as u64;
        let mut plans = plans_from_indices(&self.state.stream.take(per_epoch), opts.batch_size, first_serial);
        let skip = resumed.as_ref().map_or(0, |p| p.batches_done.min(plans.len()));
        let skipped_images: usize = plans[..skip].iter().map(|p| p.samples.len()).sum();
        plans.drain(..skip);
        let sums = resumed.map(|p| p.sums).unwrap_or_default();
        let loader =
            BatchLoader::start(self.data.train_paths.clone(), self.data.train_labels.clone(), plans, self.loader, self.bad.clone());
        let bar = progress::bar(per_epoch as u64, "img");
        bar.inc(skipped_images as u64);
        if self.console.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let mut p = EpochProgress { epoch, base_rate, sums, bar };
        let size = opts.image_size as usize;
        let sync_every = opts.sync_every.unwrap_or(1).max(1);
        let mut window = StepWindow::new();
        let mut queue: Vec<Queued> = Vec::new();
        let t_epoch = Instant::now();
        let mut t_window = Instant::now();
        for batch in loader {
            let index = skip + batch.number;
            if stop::requested() {
                if let Some(end) = self.settle(&mut window, &mut queue, t_window, &mut p, observer)? {
                    return Ok(end);
                }
                p.bar.finish_and_clear();
                let mut sums = p.sums;
                sums.seconds += t_epoch.elapsed().as_secs_f64();
                return Ok(EpochEnd::Interrupted(PartialEpoch { start_step, stream_pass, stream_pos, batches_done: index, sums }));
            }
            p.sums.skipped += batch.skipped;
            let n = batch.len();
            if n == 0 {
                p.bar.inc(batch.skipped as u64);
                continue;
            }
            let seed = if index == 0 { epoch_seed } else { mix64(epoch_seed ^ index as u64) };
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &self.state.ad);
            let q = Queued { x, labels: batch.labels, index, seed, skipped: batch.skipped };
            if sync_every == 1 {
                if let Some(end) = self.step_now(&q, &mut p, observer)? {
                    return Ok(end);
                }
                continue;
            }
            if window.is_empty() {
                t_window = Instant::now();
            }
            self.state.ad.seed(seed);
            let lr = self.lr_at(&p, self.state.global_step + queue.len() as u64);
            window.push(&mut self.state.step, q.x.clone(), &q.labels, lr)?;
            queue.push(q);
            if window.len() >= sync_every {
                if let Some(end) = self.settle(&mut window, &mut queue, t_window, &mut p, observer)? {
                    return Ok(end);
                }
            }
        }
        if let Some(end) = self.settle(&mut window, &mut queue, t_window, &mut p, observer)? {
            return Ok(end);
        }
        p.bar.finish_and_clear();
        let sums = p.sums;
        let time_train = sums.seconds + t_epoch.elapsed().as_secs_f64();
        let k = sums.steps.max(1) as f64;
        Ok(EpochEnd::Done(EpochRecord {
            epoch,
            loss: sums.total / k,
            xent: sums.xent / k,
            accuracy: sums.accuracy / k,
            lr: self.lr,
            reg_loss: sums.reg / k,
            center_loss: sums.center / k,
            prelogits_norm: sums.prelogits_norm / k,
            step: self.state.global_step,
            images: sums.images,
            skipped_images: sums.skipped,
            images_per_s: sums.images as f64 / time_train.max(1e-9),
            time_train,
            ..Default::default()
        }))
    }

    /// The learning rate of global step `global_step` + 1.
    fn lr_at(&self, p: &EpochProgress, global_step: u64) -> f64 {
        self.data.policy.decayed(p.base_rate, global_step) * self.state.lr_factor
    }

    /// Reads the window's steps back: logs them when all were finite, else runs its batches
    /// again one step at a time. `Some` when the epoch must end.
    fn settle(
        &mut self,
        window: &mut StepWindow,
        queue: &mut Vec<Queued>,
        started: Instant,
        p: &mut EpochProgress,
        observer: &mut dyn TrainObserver,
    ) -> Result<Option<EpochEnd>> {
        if queue.is_empty() {
            return Ok(None);
        }
        match window.settle(&mut self.state.step) {
            Settled::Applied(values) => {
                let seconds = started.elapsed().as_secs_f64() / queue.len() as f64;
                for (q, v) in queue.drain(..).zip(values) {
                    let lr = self.lr_at(p, self.state.global_step);
                    self.record(&q, v, lr, seconds, p, observer)?;
                }
            }
            Settled::Undone => {
                for q in std::mem::take(queue) {
                    if let Some(end) = self.step_now(&q, p, observer)? {
                        return Ok(Some(end));
                    }
                }
            }
        }
        Ok(None)
    }

    /// One step, its values read back at once; a refused step is reported and counted
    /// (`--max_nonfinite_steps`). `Some` when the epoch must end.
    fn step_now(&mut self, q: &Queued, p: &mut EpochProgress, observer: &mut dyn TrainObserver) -> Result<Option<EpochEnd>> {
        let opts = self.opts;
        let epoch = p.epoch;
        self.state.ad.seed(q.seed);
        let lr = self.lr_at(p, self.state.global_step);
        self.lr = lr;
        let t_step = Instant::now();
        let values = match self.state.step.run(q.x.clone(), &q.labels, lr) {
            Ok(v) => v,
            Err(StepError::NonFinite { values, kinds }) => {
                let state = &self.state;
                p.bar.suspend(|| {
                    eprintln!(
                        "warning: step {} (epoch {epoch}, batch {}, learning rate {lr:e}) not applied: non-finite {} (loss {}, cross-entropy {}, regularisation {}, center loss {}); {} in a row (--max_nonfinite_steps {})",
                        state.global_step + 1,
                        q.index + 1,
                        kinds.join(", "),
                        values.total,
                        values.xent,
                        values.reg,
                        values.center,
                        self.nonfinite.consecutive + 1,
                        opts.max_nonfinite_steps,
                    )
                });
                p.bar.inc(q.done());
                return match self.nonfinite.bad(self.last_checkpoint.is_some()) {
                    NonFiniteAction::Continue => Ok(None),
                    NonFiniteAction::Rollback(f) => {
                        p.bar.finish_and_clear();
                        Ok(Some(EpochEnd::Rollback(f)))
                    }
                    NonFiniteAction::Stop => {
                        p.bar.finish_and_clear();
                        let model_dir = self.state.dirs.model_dir.display();
                        match &self.last_checkpoint {
                            Some(c) => bail!(
                                "stopping: {} consecutive steps had non-finite values (last: step {}, epoch {epoch}; {} rollback(s) done). Nothing non-finite was saved; the newest checkpoint is {}. Continue with a lower learning rate: facenet train --resume {model_dir} --learning_rate <lower>",
                                opts.max_nonfinite_steps,
                                self.state.global_step + 1,
                                self.nonfinite.rollbacks,
                                c.display()
                            ),
                            None => bail!(
                                "stopping: {} consecutive steps had non-finite values (last: step {}, epoch {epoch}) before the first checkpoint; the learning rate ({lr:e}) is probably too high: start again with a lower --learning_rate",
                                opts.max_nonfinite_steps,
                                self.state.global_step + 1
                            ),
                        }
                    }
                };
            }
            Err(e @ StepError::Overflow { .. }) => {
                // f16: the loss scale halved; not a non-finite step (see crate::train::loss_scale)
                let step = self.state.global_step + 1;
                p.bar.suspend(|| eprintln!("note: step {step} (epoch {epoch}, batch {}): {e}", q.index + 1));
                p.bar.inc(q.done());
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        self.record(q, values, lr, t_step.elapsed().as_secs_f64(), p, observer)?;
        Ok(None)
    }

    /// A step that was kept: counted, logged to `steps.csv` and TensorBoard, shown.
    fn record(
        &mut self,
        q: &Queued,
        values: LossValues,
        lr: f64,
        seconds: f64,
        p: &mut EpochProgress,
        observer: &mut dyn TrainObserver,
    ) -> Result<()> {
        self.lr = lr;
        self.nonfinite.good();
        self.state.global_step += 1;
        let n = q.labels.len();
        add(&mut p.sums, &values, n);
        let rec = StepRecord {
            step: self.state.global_step,
            epoch: p.epoch,
            batch: q.index + 1,
            values,
            lr,
            images: n,
            skipped: q.skipped,
            seconds,
        };
        self.logs.steps.write(&rec.fields())?;
        self.logs.events.step(&rec);
        p.bar.set_message(format!(
            "epoch {}/{} loss {:.3} acc {:.3} lr {lr:.3e}",
            p.epoch, self.opts.max_nrof_epochs, values.total, values.accuracy
        ));
        p.bar.inc(q.done());
        observer.on_step(&rec);
        Ok(())
    }
}

fn add(sums: &mut EpochSums, v: &LossValues, images: usize) {
    sums.total += v.total;
    sums.xent += v.xent;
    sums.reg += v.reg;
    sums.center += v.center;
    sums.prelogits_norm += v.prelogits_norm;
    sums.accuracy += v.accuracy;
    sums.steps += 1;
    sums.images += images;
}
