//! One epoch of training: `epoch_size` batches from the shuffled index stream, loaded and
//! augmented by the loader threads, each one [`TrainStep`](super::step::TrainStep) at the
//! scheduled learning rate, logged to `steps.csv` and the TensorBoard event file, shown on a
//! progress bar.

use std::time::Instant;

use anyhow::{bail, Result};
use burn::tensor::{Tensor, TensorData};

use super::loss::LossValues;
use super::stats::{EpochRecord, StepRecord};
use super::step::StepError;
use super::trainer::{TrainObserver, Training};
use crate::data::augment::mix64;
use crate::data::loader::{plans_from_indices, BatchLoader};
use crate::util::progress;

impl Training<'_> {
    /// Trains epoch `epoch` at base learning rate `base_rate` and returns its statistics
    /// (the evaluation fields still empty).
    pub fn train_epoch(&mut self, epoch: usize, base_rate: f64, observer: &mut dyn TrainObserver) -> Result<EpochRecord> {
        let (opts, state) = (self.opts, &mut self.state);
        state.ad.seed(mix64(opts.seed ^ mix64(epoch as u64 ^ 0x64726F70)));
        let per_epoch = opts.batch_size * opts.epoch_size;
        let first_serial = state.global_step * opts.batch_size as u64;
        let plans = plans_from_indices(&state.stream.take(per_epoch), opts.batch_size, first_serial);
        let loader =
            BatchLoader::start(self.data.train_paths.clone(), self.data.train_labels.clone(), plans, self.loader, self.bad.clone());
        let bar = progress::bar(per_epoch as u64, "img");
        if self.console.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let size = opts.image_size as usize;
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
            let lr = self.data.policy.decayed(base_rate, state.global_step);
            self.lr = lr;
            let t_step = Instant::now();
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, [n, 3, size, size]), &state.ad);
            let values = match state.step.run(x, &batch.labels, lr) {
                Ok(v) => v,
                Err(StepError::NonFiniteLoss(v)) => bail!(
                    "the loss became {} at step {} (epoch {epoch}); the learning rate ({lr}) is probably too high",
                    v.total,
                    state.global_step + 1
                ),
                Err(e) => return Err(e.into()),
            };
            state.global_step += 1;
            n_steps += 1;
            n_images += n;
            sums.total += values.total;
            sums.xent += values.xent;
            sums.reg += values.reg;
            sums.center += values.center;
            sums.prelogits_norm += values.prelogits_norm;
            sums.accuracy += values.accuracy;
            let rec = StepRecord {
                step: state.global_step,
                epoch,
                batch: batch.number + 1,
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
        let time_train = t_epoch.elapsed().as_secs_f64();
        let k = n_steps.max(1) as f64;
        Ok(EpochRecord {
            epoch,
            loss: sums.total / k,
            xent: sums.xent / k,
            accuracy: sums.accuracy / k,
            lr: self.lr,
            reg_loss: sums.reg / k,
            center_loss: sums.center / k,
            prelogits_norm: sums.prelogits_norm / k,
            step: state.global_step,
            images: n_images,
            skipped_images: n_skipped,
            images_per_s: n_images as f64 / time_train.max(1e-9),
            time_train,
            ..Default::default()
        })
    }
}
