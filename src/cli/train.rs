//! `facenet train`: classifier training of Inception-ResNet-v1 (the reference's
//! `train_softmax.py`; every one of its flags is accepted, in snake_case or kebab-case).

use anyhow::{Context, Result};
use clap::Args;

use crate::train::{train, TrainOptions};

/// As with the reference's argparse, a flag given twice takes its last value (so a stored
/// command line can be rerun with a few flags appended).
#[derive(Args, Debug)]
#[command(args_override_self = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub options: TrainOptions,
}

pub fn run(a: TrainArgs) -> Result<()> {
    // SIGINT / SIGTERM: finish the step, write a checkpoint, exit 0 (a second one: at once)
    crate::util::stop::install().context("cannot install the SIGINT/SIGTERM handlers")?;
    train(&a.options, &mut ())?;
    Ok(())
}
