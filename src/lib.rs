//! facenet: a face-recognition training toolkit.
//!
//! The modules follow the pipeline of the reference workflow:
//! - [`data`]: class-per-folder datasets, LFW pairs files, robust image loading;
//! - [`synth`]: built-in synthetic identities (a dataset that needs no download);
//! - [`model`]: the networks (Inception-ResNet-v1 and its small variant);
//! - [`eval`]: LFW-protocol verification metrics and baselines;
//! - [`train`]: classifier training (softmax + center loss), checkpoints, model loading;
//! - [`report`]: HTML reports with charts;
//! - [`cli`]: the `facenet` subcommands;
//! - [`util`]: atomic file output, progress bars.

pub mod align;
pub mod cli;
pub mod data;
pub mod demo;
pub mod eval;
pub mod model;
pub mod report;
pub mod synth;
pub mod train;
pub mod util;
