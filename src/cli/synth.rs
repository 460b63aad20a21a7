//! `facenet synth OUT_DIR`: render synthetic identities and LFW-style pairs.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::eval::baseline::{pixel_baseline, MAX_PAIRS};
use crate::synth::{generate, SynthConfig};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (gets train/, pairs/, pairs.txt, synth.json)
    pub out_dir: PathBuf,
    /// Number of training identities
    #[arg(long, default_value_t = 200)]
    pub identities: usize,
    /// Images per training identity
    #[arg(long, default_value_t = 20)]
    pub images_per_identity: usize,
    /// Image side in pixels
    #[arg(long, default_value_t = 182)]
    pub image_size: u32,
    /// Random seed: the same seed gives byte-identical files
    #[arg(long, default_value_t = 666)]
    pub seed: u64,
    /// Held-out identities for the pairs (disjoint from the training ones)
    #[arg(long, default_value_t = 50)]
    pub pairs_identities: usize,
    /// Images per held-out identity [default: same as --images_per_identity]
    #[arg(long)]
    pub pairs_images_per_identity: Option<usize>,
    /// Folds in pairs.txt (0 = no pairs)
    #[arg(long, default_value_t = 10)]
    pub pairs_folds: usize,
    /// Same-person pairs (and as many different-person pairs) per fold
    #[arg(long, default_value_t = 30)]
    pub pairs_per_fold: usize,
    /// Skip the raw-pixel baseline on the pairs
    #[arg(long)]
    pub no_baseline: bool,
    /// Worker threads (default: all cores)
    #[arg(long, value_parser = super::limits::threads())]
    pub threads: Option<usize>,
}

pub fn run(a: SynthArgs) -> Result<()> {
    if let Some(t) = a.threads {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(t).build_global();
    }
    let cfg = SynthConfig {
        identities: a.identities,
        images_per_identity: a.images_per_identity,
        image_size: a.image_size,
        seed: a.seed,
        pairs_identities: a.pairs_identities,
        pairs_images_per_identity: a.pairs_images_per_identity.unwrap_or(a.images_per_identity),
        pairs_folds: a.pairs_folds,
        pairs_per_fold: a.pairs_per_fold,
    };
    let s = generate(&a.out_dir, &cfg, true)?;
    let total = s.train_images + s.pairs_images;
    println!(
        "facenet synth: {} images in {:.1} s ({:.0} images/s, seed {})",
        total,
        s.seconds,
        total as f64 / s.seconds.max(1e-9),
        cfg.seed
    );
    println!("  training  {:>6} images of {} identities  {}", s.train_images, cfg.identities, s.train_dir.display());
    if s.pairs > 0 {
        println!("  held out  {:>6} images of {} identities  {}", s.pairs_images, cfg.pairs_identities, s.pairs_dir.display());
        println!(
            "  pairs     {:>6} ({} folds x {} same + {} different)  {}",
            s.pairs,
            cfg.pairs_folds,
            cfg.pairs_per_fold,
            cfg.pairs_per_fold,
            s.pairs_file.display()
        );
        if !a.no_baseline && s.pairs > MAX_PAIRS {
            println!("  raw-pixel baseline skipped: more than {MAX_PAIRS} pairs");
        } else if !a.no_baseline && cfg.pairs_per_fold * 2 * cfg.pairs_folds >= cfg.pairs_folds {
            let b = pixel_baseline(&s.pairs_dir, &s.pairs_file, cfg.pairs_folds)?;
            println!(
                "  raw-pixel baseline on the pairs: accuracy {:.4}+-{:.4}, AUC {:.3} ({} pairs, centre crop, squared L2)",
                b.evaluation.accuracy_mean, b.evaluation.accuracy_std, b.evaluation.auc, b.pairs
            );
        }
    }
    Ok(())
}
