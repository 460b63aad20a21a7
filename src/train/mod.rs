//! `facenet train`: Inception-ResNet-v1 trained as a classifier (softmax + center loss), as
//! the reference's `train_softmax.py` does, so that its prelogits become a face embedding.
//!
//! One job per file:
//! - [`options`]: every flag of `train_softmax.py` ([`TrainOptions`]), serialised into the run;
//! - [`trainer`]: the loop ([`train`]), per-epoch evaluation and checkpointing;
//! - [`loss`]: cross-entropy + weight decay + center loss + prelogits norm;
//! - [`center_loss`]: the class centres and their gradient-free update;
//! - [`optim`]: ADAGRAD, ADADELTA, ADAM, RMSPROP, MOM with TF1 semantics;
//! - [`schedule`]: fixed / decayed learning rates and schedule files;
//! - [`evaluate`]: LFW protocol and validation-set loss per epoch;
//! - [`checkpoint`]: checkpoint folders, [`load_inference_model`], `--pretrained_model`;
//! - [`tensor_file`]: the safetensors container of optimizer state and centres;
//! - [`stats`]: `steps.csv` / `epochs.csv`;
//! - [`run_dir`]: the run's log and model folders.
//!
//! The data side (augmentation, loader threads, validation split) is in
//! [`crate::data::augment`] and [`crate::data::loader`].

pub mod center_loss;
pub mod checkpoint;
pub mod evaluate;
pub mod loss;
pub mod optim;
pub mod options;
pub mod run_dir;
pub mod schedule;
pub mod stats;
pub mod tensor_file;
pub mod trainer;

pub use checkpoint::{load_inference_model, ModelMeta};
pub use options::{OptimizerKind, TrainOptions};
pub use stats::{EpochRecord, StepRecord};
pub use trainer::{train, train_with_console, Console, StopReason, TrainObserver, TrainSummary};
