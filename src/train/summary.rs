//! What a training run tells its user: the console switch, the one-line summary of each
//! epoch and the closing lines of a run ([`TrainSummary`]).

use std::fmt::Display;
use std::path::PathBuf;

use super::evaluate::LfwMetrics;
use super::stats::EpochRecord;
use crate::model::load::ModelMeta;

/// Prints what a run does to stdout/stderr; `quiet` leaves only warnings and errors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Console {
    pub quiet: bool,
}

impl Console {
    /// Prints one line unless quiet.
    pub fn say(&self, line: impl Display) {
        if !self.quiet {
            println!("{line}");
        }
    }
}

/// Why training ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// `--max_nrof_epochs` epochs are done.
    MaxEpochs,
    /// The learning rate schedule said stop at this epoch.
    Schedule { epoch: usize },
    /// The observer asked to stop.
    Observer,
    /// SIGINT / SIGTERM: stopped between two steps, a checkpoint written.
    Signal,
}

/// What a finished (or stopped) run produced.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub log_dir: PathBuf,
    pub model_dir: PathBuf,
    /// The newest checkpoint (None if no epoch completed).
    pub last_checkpoint: Option<PathBuf>,
    /// Last completed epoch.
    pub epochs_completed: usize,
    pub global_step: u64,
    /// The last LFW evaluation of this call, if any.
    pub final_lfw: Option<LfwMetrics>,
    /// The epochs run by this call.
    pub history: Vec<EpochRecord>,
    pub stop_reason: StopReason,
    pub meta: ModelMeta,
    /// The device trained on, for people (`cpu (AMD EPYC ..., 2 threads)`).
    pub device: String,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
}

/// The one-line summary of an epoch.
pub fn epoch_line(r: &EpochRecord, max_epochs: usize) -> String {
    let mut s = format!(
        "Epoch {}/{max_epochs}: loss {:.3} xent {:.3} reg {:.3} acc {:.3} lr {:.3e} | {:.1} img/s, {:.1} s",
        r.epoch, r.loss, r.xent, r.reg_loss, r.accuracy, r.lr, r.images_per_s, r.time_train
    );
    if let Some(v) = &r.val {
        s.push_str(&format!(" | validation loss {:.3} acc {:.3}", v.loss, v.accuracy));
    }
    if let Some(l) = &r.lfw {
        s.push_str(&format!(" | LFW accuracy {:.4}+-{:.4} VAL {:.4}@FAR={:.4}", l.accuracy, l.accuracy_std, l.val, l.far));
    }
    if r.skipped_images > 0 {
        s.push_str(&format!(" | {} unreadable image(s) skipped", r.skipped_images));
    }
    s
}

/// The closing lines of a run.
pub fn print_summary(s: &TrainSummary) {
    let why = match &s.stop_reason {
        StopReason::MaxEpochs => "max_nrof_epochs reached".to_string(),
        StopReason::Schedule { epoch } => format!("the schedule stops at epoch {epoch}"),
        StopReason::Observer => "stopped by the caller".to_string(),
        StopReason::Signal => "stopped by a signal (checkpoint written; continue with --resume)".to_string(),
    };
    println!("Training finished ({why}): {} epoch(s) done, {} steps, {:.1} min", s.epochs_completed, s.global_step, s.seconds / 60.0);
    println!("  device      {}", s.device);
    if let Some(c) = &s.last_checkpoint {
        println!("  checkpoint  {}", c.display());
    }
    println!("  statistics  {}", s.log_dir.join("epochs.csv").display());
    if let Some(l) = &s.final_lfw {
        println!(
            "  LFW (last epoch): accuracy {:.5}+-{:.5}, VAL {:.5}+-{:.5} @ FAR={:.5}, AUC {:.3}",
            l.accuracy, l.accuracy_std, l.val, l.val_std, l.far, l.auc
        );
    }
}
