//! The end of an epoch: evaluation (validation-set loss every `validate_every_n_epochs`, the
//! LFW protocol when `--lfw_dir` is given), the `epochs.csv` row, TensorBoard events and
//! console line, and the checkpoint that `--resume` continues from.

use anyhow::Result;

use super::checkpoint::{save_checkpoint, Checkpoint, PartialEpoch, TrainState, KEEP_CHECKPOINTS};
use super::evaluate::{evaluate_lfw, validate, ValidationInput};
use super::stats::{append_lfw_result, EpochRecord};
use super::summary::epoch_line;
use super::trainer::Training;
use crate::eval::embed::EmbedOptions;
use crate::eval::metrics::EvalOptions;
use crate::model::load::{ModelFile, FORMAT};

impl Training<'_> {
    /// Fills the evaluation fields of `rec`: validation loss and accuracy (when due) and the
    /// LFW protocol (appended to `lfw_result.txt` as the reference does).
    pub fn evaluate(&self, rec: &mut EpochRecord) -> Result<()> {
        let (opts, data, state) = (self.opts, self.data, &self.state);
        let device = state.step.device();
        let every = opts.validate_every_n_epochs;
        let epoch = rec.epoch;
        if !data.val_paths.is_empty() && ((epoch - 1) % every == every - 1 || epoch == opts.max_nrof_epochs) {
            let input = ValidationInput {
                paths: data.val_paths.clone(),
                labels: data.val_labels.clone(),
                image_size: opts.image_size,
                standardization: opts.standardization(),
                batch_size: opts.lfw_batch_size,
                threads: self.loader.threads,
                centers: state.step.centers(),
                weights: state.step.loss_weights(),
                bad: self.bad.clone(),
            };
            // unfolded: the loss's weight-decay term is the penalty of the trained weights
            let v = validate(&state.step.inference_model(), &input, device);
            rec.time_validate = v.seconds;
            rec.val = Some(v);
        }
        if let Some(set) = &data.lfw {
            let embed = EmbedOptions {
                image_size: opts.image_size,
                batch_size: opts.lfw_batch_size,
                standardization: opts.standardization(),
                use_flipped_images: opts.lfw_use_flipped_images,
            };
            let eval = EvalOptions {
                nrof_folds: opts.lfw_nrof_folds,
                distance_metric: opts.distance_metric()?,
                subtract_mean: opts.lfw_subtract_mean,
                ..EvalOptions::default()
            };
            // embeddings only: batch norms folded, as `facenet validate` runs a model
            let m = evaluate_lfw(&state.step.inference_model().fold_batch_norm(), set, &embed, &eval, device)?;
            rec.time_evaluate = m.seconds;
            append_lfw_result(&state.dirs.log_dir, state.global_step, &m)?;
            rec.lfw = Some(m);
        }
        Ok(())
    }

    /// Writes the epoch's `epochs.csv` row, events (flushed) and console line, then its
    /// checkpoint (keeping the newest [`KEEP_CHECKPOINTS`]).
    pub fn finish_epoch(&mut self, rec: &EpochRecord) -> Result<()> {
        self.logs.epochs.write(&rec.fields())?;
        self.logs.events.epoch(rec);
        self.log_histograms(rec.step);
        self.console.say(epoch_line(rec, self.opts.max_nrof_epochs));
        self.save_checkpoint(rec.epoch, None)
    }

    /// Writes a checkpoint of where training stands: after epoch `completed` and, when
    /// `partial` is given, inside the next one (a stopped run). Refused (nothing written)
    /// when a weight, batch-norm statistic, optimiser slot or centre is not finite.
    pub fn save_checkpoint(&mut self, completed: usize, partial: Option<PartialEpoch>) -> Result<()> {
        let (opts, state) = (self.opts, &self.state);
        let (pass, pos) = state.stream.state();
        let ckpt = Checkpoint {
            model: state.step.model(),
            model_file: ModelFile {
                format: FORMAT.into(),
                meta: state.meta.clone(),
                config: state.config.clone(),
                epoch: completed,
                global_step: state.global_step,
            },
            state: TrainState {
                epoch: completed,
                global_step: state.global_step,
                optimizer: opts.optimizer,
                optimizer_steps: state.step.optimizer().steps(),
                seed: opts.seed,
                index_stream_pass: pass,
                index_stream_pos: pos,
                num_train_images: self.data.train_paths.len(),
                log_dir: state.dirs.log_dir.clone(),
                learning_rate: self.lr,
                learning_rate_factor: state.lr_factor,
                partial_epoch: partial,
                loss_scale: state.step.loss_scale(),
            },
            optimizer: state.step.optimizer().state_tensors()?,
            centers: (vec![self.data.num_classes, state.config.embedding_size], state.step.centers().values()?),
        };
        self.last_checkpoint = Some(save_checkpoint(&state.dirs.model_dir, &ckpt, KEEP_CHECKPOINTS)?);
        Ok(())
    }
}
