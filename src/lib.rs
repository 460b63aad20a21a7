//! facenet: a face-recognition training toolkit.
//!
//! The modules follow the pipeline of the reference workflow. Layers point down only (checked
//! by `tests/layers.rs`): a module uses modules of lower layers, never one above it.
//!
//! | layer | module | what it holds |
//! |---|---|---|
//! | 7 | [`cli`] | the `facenet` subcommands: parse options, pick the device, print |
//! | 6 | [`demo`] | the whole workflow on built-in data, with its report |
//! | 5 | [`train`] | classifier training (softmax + center loss): the step, the loop, checkpoints |
//! | 5 | [`report`] | HTML reports with charts |
//! | 4 | [`eval`] | LFW-protocol metrics, embedding, verification of a model |
//! | 3 | [`align`] | MTCNN detection and alignment |
//! | 2 | [`model`] | the networks (Inception-ResNet-v1, small variant), model files and loading |
//! | 2 | [`synth`] | built-in synthetic identities (a dataset that needs no download) |
//! | 1 | [`data`] | class-per-folder datasets, pairs files, image loading, resampling, loader |
//! | 0 | [`util`] | arguments, atomic file output, the cache folder, progress bars |

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
