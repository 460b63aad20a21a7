//! `facenet train`: Inception-ResNet-v1 trained as a classifier (softmax + center loss), as
//! the reference's `train_softmax.py` does, so that its prelogits become a face embedding.
//!
//! One job per file:
//! - [`options`]: every flag of `train_softmax.py` ([`TrainOptions`]), serialised into the run;
//! - [`trainer`]: the loop ([`train`]) as a sequence of phases:
//!   - [`start`]: options / resume, data, network and position, run folders, header;
//!   - [`epoch`]: one epoch of steps;
//!   - [`end_of_epoch`]: evaluation, statistics, checkpoint;
//! - [`step`]: one optimisation step ([`TrainStep`]: forward, loss, backward, update,
//!   centres), shared by the loop, `facenet bench train` and the tests;
//! - [`step_window`]: steps read back from the device a window at a time (`--sync_every`);
//! - [`guard`]: the non-finite guard of a step (probes, undo) and what the loop does after
//!   refused steps;
//! - [`data_parallel`]: `--devices`: replicas on shards of the batch, gradients combined;
//! - [`summary`]: console output and what a run returns ([`TrainSummary`]);
//! - [`loss`]: cross-entropy + weight decay + center loss + prelogits norm;
//! - [`loss_scale`]: f16 training's dynamic loss scale;
//! - [`memory`]: the expected peak memory, stated and checked before the first step;
//! - [`center_loss`]: the class centres and their gradient-free update;
//! - [`optim`]: ADAGRAD, ADADELTA, ADAM, RMSPROP, MOM with TF1 semantics;
//! - [`schedule`]: fixed / decayed learning rates and schedule files;
//! - [`evaluate`]: LFW protocol and validation-set loss per epoch;
//! - [`checkpoint`]: writing checkpoint folders, reading their training state (the model
//!   files and loading networks are in [`crate::model::load`]);
//! - [`tensor_file`]: the safetensors container of optimizer state and centres;
//! - [`stats`]: `steps.csv` / `epochs.csv`;
//! - [`tensorboard`]: TensorBoard event files beside them; [`histogram`]: their histograms
//!   (`--log_histograms`);
//! - [`run_dir`]: the run's log and model folders.
//!
//! The data side (augmentation, loader threads, validation split) is in
//! [`crate::data::augment`] and [`crate::data::loader`].

pub mod center_loss;
pub mod checkpoint;
pub mod data_parallel;
pub mod end_of_epoch;
pub mod epoch;
pub mod epoch_histograms;
pub mod evaluate;
pub mod guard;
pub mod histogram;
pub mod loss;
pub mod loss_scale;
pub mod memory;
pub mod optim;
pub mod options;
pub mod parity;
pub mod run_dir;
pub mod schedule;
pub mod start;
pub mod stats;
pub mod step;
pub mod step_window;
pub mod summary;
pub mod tensor_file;
pub mod tensorboard;
pub mod trainer;

pub use options::{OptimizerKind, TrainOptions};
pub use stats::{EpochRecord, StepRecord};
pub use step::{StepError, TrainStep};
pub use summary::{Console, StopReason, TrainSummary};
pub use trainer::{train, train_with_console, TrainObserver};
