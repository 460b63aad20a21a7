//! `facenet demo`: the whole workflow on built-in data.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::demo::{run_demo, DemoOptions};
use crate::util::device::DeviceArg;
use crate::util::precision::PrecisionArg;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output folder
    #[arg(long, default_value = "demo-output")]
    pub out_dir: PathBuf,
    /// A tiny run (seconds): for tests and a first smoke check
    #[arg(long)]
    pub quick: bool,
    /// Skip the real photos (needs neither the MTCNN weights nor the sample photos)
    #[arg(long)]
    pub skip_photos: bool,
    /// Training epochs [default: 12; 2 with --quick]
    #[arg(long, value_parser = super::limits::usize_in(1, super::limits::MAX_EPOCHS))]
    pub epochs: Option<usize>,
    /// Synthetic training identities [default: 150; 12 with --quick]
    #[arg(long, value_parser = super::limits::count())]
    pub identities: Option<usize>,
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub precision: PrecisionArg,
}

pub fn run(a: DemoArgs) -> Result<()> {
    let mut o = DemoOptions {
        out_dir: a.out_dir,
        skip_photos: a.skip_photos,
        device: a.device.device,
        precision: a.precision.precision,
        ..DemoOptions::default()
    };
    if a.quick {
        o = DemoOptions {
            identities: 12,
            images_per_identity: 6,
            synth_size: 40,
            train_size: 32,
            epochs: 2,
            epoch_size: 3,
            batch_size: 16,
            pairs_identities: 10,
            pairs_per_fold: 3,
            ..o
        };
    }
    if let Some(e) = a.epochs {
        o.epochs = e;
    }
    if let Some(i) = a.identities {
        o.identities = i;
    }
    let started = std::time::Instant::now();
    let r = run_demo(&o)?;
    let e = &r.verification.evaluation;
    println!("\nfacenet demo finished in {:.0} s", started.elapsed().as_secs_f64());
    let faces: usize = r.photos.iter().map(|p| p.faces.len()).sum();
    if r.photos.is_empty() {
        println!("  photos     {}", r.photo_note.as_deref().unwrap_or("none"));
    } else {
        println!("  photos     {} faces in {} photos, crops in {}", faces, r.photos.len(), o.out_dir.join("aligned").display());
    }
    println!("  training   {} epochs, statistics {}", r.training.epochs_completed, r.training.log_dir.join("epochs.csv").display());
    println!("  model      {}", r.training.model_dir.display());
    println!(
        "  held-out   accuracy {:.4}+-{:.4}, VAL {:.4} @ FAR={:.4}, AUC {:.4}, EER {:.4}",
        e.accuracy_mean, e.accuracy_std, e.val_mean, e.far_mean, e.auc, e.eer
    );
    println!("  report     {}  (open it in a browser)", r.report.display());
    Ok(())
}
