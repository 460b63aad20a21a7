//! The `facenet` command line: one options struct per subcommand, passed whole.
//!
//! Every long flag is accepted both in kebab-case (`--data-dir`) and in the reference's
//! snake_case (`--data_dir`): [`crate::util::args::normalize_args`] rewrites the latter before parsing, so a
//! user's old command line runs unchanged.

mod align;
mod bench;
mod compare;
mod demo;
mod detect;
mod embed;
mod export;
mod fetch_weights;
mod limits;
mod synth;
mod train;
mod validate;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::util::args::normalize_args;

#[derive(Parser, Debug)]
#[command(
    name = "facenet",
    version,
    about = "Face recognition training toolkit: MTCNN alignment, Inception-ResNet-v1 training, LFW verification",
    long_about = "Face recognition training toolkit: MTCNN alignment, Inception-ResNet-v1 classifier \
training (softmax + center loss), LFW-protocol verification.\n\nEvery flag also accepts the \
reference's snake_case spelling (--data_dir as well as --data-dir)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// parsed once per process: the size of the largest variant (train's options) costs nothing
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Detect and align every face of a class-per-folder dataset into crops (MTCNN)
    Align(align::AlignArgs),
    /// Detect faces in photos and print boxes, probabilities and landmarks
    Detect(detect::DetectArgs),
    /// Download the MTCNN weights into the cache ($FACENET_HOME)
    FetchWeights(fetch_weights::FetchWeightsArgs),
    /// Train Inception-ResNet-v1 as a classifier (softmax + center loss)
    Train(train::TrainArgs),
    /// Evaluate embeddings on the LFW pairs protocol (accuracy, VAL@FAR, AUC, EER)
    Validate(validate::ValidateArgs),
    /// Compute embeddings of images with a trained model
    Embed(embed::EmbedArgs),
    /// Align photos and print their pairwise embedding distances
    Compare(compare::CompareArgs),
    /// Write a model as ONNX, a facenet-pytorch state dict (.pt) or one .safetensors file
    Export(export::ExportArgs),
    /// Render a dataset of synthetic identities with LFW-style pairs
    Synth(synth::SynthArgs),
    /// Run the whole workflow on built-in data and write a report
    Demo(demo::DemoArgs),
    /// Measure the speed of alignment, training and embedding
    Bench(bench::BenchArgs),
}

/// Parses `args` (program name first) and runs the command; errors are printed with their
/// causes and give exit code 1 (2 for usage errors).
pub fn main_with_args(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_args(args)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let result = match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Validate(a) => validate::run(a),
        Command::Align(a) => align::run(a),
        Command::Detect(a) => detect::run(a),
        Command::FetchWeights(a) => fetch_weights::run(a),
        Command::Train(a) => train::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Export(a) => export::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn both_spellings_parse() {
        for flag in ["--images_per_identity", "--images-per-identity"] {
            let cli = Cli::try_parse_from(normalize_args(os(&["facenet", "synth", "/tmp/x", flag, "7"]))).unwrap();
            match cli.command {
                Command::Synth(a) => assert_eq!(a.images_per_identity, 7),
                other => panic!("{other:?}"),
            }
        }
    }
}
