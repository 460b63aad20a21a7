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
use super::stats::{EpochRecord, StepRecord};
use super::step::StepError;
use super::trainer::{TrainObserver, Training};
use crate::data::augment::mix64;
use crate::data::loader::{plans_from_indices, BatchLoader};
use crate::util::{progress, stop};

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

impl Training<'_> {
    /// Trains epoch `epoch` at base learning rate `base_rate` (continuing it where a stopped
    /// run left it, when the run was resumed from such a checkpoint).
    pub fn train_epoch(&mut self, epoch: usize, base_rate: f64, observer: &mut dyn TrainObserver) -> Result<EpochEnd> {
        let (opts, state) = (self.opts, &mut self.state);
        let epoch_seed = mix64(opts.seed ^ mix64(epoch as u64 ^ 0x64726F70));
        let per_epoch = opts.batch_size * opts.epoch_size;
        let resumed = state.partial.take();
        let (stream_pass, stream_pos) = state.stream.state();
        let start_step = resumed.as_ref().map_or(state.global_step, |p| p.start_step);
        let first_serial = start_step * opts.batch_size as u64;
        let mut plans = plans_from_indices(&state.stream.take(per_epoch), opts.batch_size, first_serial);
        let skip = resumed.as_ref().map_or(0, |p| p.batches_done.min(plans.len()));
        let skipped_images: usize = plans[..skip].iter().map(|p| p.samples.len()).sum();
        plans.drain(..skip);
        let mut sums = resumed.map(|p| p.sums).unwrap_or_default();
        let loader =
            BatchLoader::start(self.data.train_paths.clone(), self.data.train_labels.clone(), plans, self.loader, self.bad.clone());
        let bar = progress::bar(per_epoch as u64, "img");
        bar.inc(skipped_images as u64);
        if self.console.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let size = opts.image_size as usize;
        let t_epoch = Instant::now();
        for batch in loader {
            let index = skip + batch.number;
            if stop::requested() {
                bar.finish_and_clear();
                sums.seconds += t_epoch.elapsed().as_secs_f64();
                return Ok(EpochEnd::Interrupted(PartialEpoch { start_step, stream_pass, stream_pos, batches_done: index, sums }));
            }
            sums.skipped += batch.skipped;
            let n = batch.len();
            let done = (n + batch.skipped) as u64;
            if n == 0 {
                bar.inc(done);
                continue;
            }
            state.ad.seed(if index == 0 { epoch_seed } else { mix64(epoch_seed ^ index as u64) });
            let lr = self.data.policy.decayed(base_rate, state.global_step) * state.lr_factor;
            self.lr = lr;
            let t_step = Instant::now();
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &state.ad);
            let values = match state.step.run(x, &batch.labels, lr) {
                Ok(v) => v,
                Err(StepError::NonFinite { values, kinds }) => {
                    bar.suspend(|| {
                        eprintln!(
                            "warning: step {} (epoch {epoch}, batch {}, learning rate {lr:e}) not applied: non-finite {} (loss {}, cross-entropy {}, regularisation {}, center loss {}); {} in a row (--max_nonfinite_steps {})",
                            state.global_step + 1,
                            index + 1,
                            kinds.join(", "),
                            values.total,
                            values.xent,
                            values.reg,
                            values.center,
                            self.nonfinite.consecutive + 1,
                            opts.max_nonfinite_steps,
                        )
                    });
                    bar.inc(done);
                    match self.nonfinite.bad(self.last_checkpoint.is_some()) {
                        NonFiniteAction::Continue => continue,
                        NonFiniteAction::Rollback(f) => {
                            bar.finish_and_clear();
                            return Ok(EpochEnd::Rollback(f));
                        }
                        NonFiniteAction::Stop => {
                            bar.finish_and_clear();
                            let model_dir = state.dirs.model_dir.display();
                            match &self.last_checkpoint {
                                Some(c) => bail!(
                                    "stopping: {} consecutive steps had non-finite values (last: step {}, epoch {epoch}; {} rollback(s) done). Nothing non-finite was saved; the newest checkpoint is {}. Continue with a lower learning rate: facenet train --resume {model_dir} --learning_rate <lower>",
                                    opts.max_nonfinite_steps,
                                    state.global_step + 1,
                                    self.nonfinite.rollbacks,
                                    c.display()
                                ),
                                None => bail!(
                                    "stopping: {} consecutive steps had non-finite values (last: step {}, epoch {epoch}) before the first checkpoint; the learning rate ({lr:e}) is probably too high: start again with a lower --learning_rate",
                                    opts.max_nonfinite_steps,
                                    state.global_step + 1
                                ),
                            }
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            };
            self.nonfinite.good();
            state.global_step += 1;
            add(&mut sums, &values, n);
            let rec = StepRecord {
                step: state.global_step,
                epoch,
                batch: index + 1,
                values,
                lr,
                images: n,
                skipped: batch.skipped,
                seconds: t_step.elapsed().as_secs_f64(),
            };
            self.logs.steps.write(&rec.fields())?;
            self.logs.events.step(&rec);
            bar.set_message(format!(
                "epoch {epoch}/{} loss {:.3} acc {:.3} lr {lr:.3e}",
                opts.max_nrof_epochs, values.total, values.accuracy
            ));
            bar.inc(done);
            observer.on_step(&rec);
        }
        bar.finish_and_clear();
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
            step: state.global_step,
            images: sums.images,
            skipped_images: sums.skipped,
            images_per_s: sums.images as f64 / time_train.max(1e-9),
            time_train,
            ..Default::default()
        }))
    }
}

fn add(sums: &mut EpochSums, v: &super::loss::LossValues, images: usize) {
    sums.total += v.total;
    sums.xent += v.xent;
    sums.reg += v.reg;
    sums.center += v.center;
    sums.prelogits_norm += v.prelogits_norm;
    sums.accuracy += v.accuracy;
    sums.steps += 1;
    sums.images += images;
}
