//! `facenet fetch-weights`: put the MTCNN weights into the cache (`$FACENET_HOME/mtcnn`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::align::weights::{fetch_weights, weights_dir, weights_present, PACKAGE, WEIGHT_FILES};

#[derive(Args, Debug)]
pub struct FetchWeightsArgs {
    /// Take the weights from this facenet-pytorch 2.6.0 wheel, or from a folder holding the
    /// wheel or pnet.pt, rnet.pt and onet.pt, instead of downloading the wheel with pip
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// Fetch again even if the weights are already there
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: FetchWeightsArgs) -> Result<()> {
    let dir = weights_dir();
    if weights_present(&dir) && !a.force {
        println!("MTCNN weights already in {} (use --force to fetch again)", dir.display());
        return Ok(());
    }
    match &a.from {
        Some(p) => println!("Installing MTCNN weights from {} ...", p.display()),
        None => println!("Downloading {PACKAGE} with pip to extract the MTCNN weights ..."),
    }
    fetch_weights(&dir, a.from.as_deref())?;
    for (name, size) in WEIGHT_FILES {
        println!("  {} ({size} bytes)", dir.join(name).display());
    }
    println!("MTCNN weights ready in {}", dir.display());
    Ok(())
}
