//! Training statistics as CSV files in the run's log folder, one line per optimizer step
//! (`steps.csv`) and per epoch (`epochs.csv`), header first, flushed line by line (plot them
//! with any tool while training runs). Empty fields mean "not computed".

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::evaluate::{LfwMetrics, ValMetrics};
use super::loss::LossValues;
use crate::util::atomic::write_atomic;

/// Columns of `steps.csv`.
pub const STEP_COLUMNS: &[&str] =
    &["step", "epoch", "batch", "loss", "xent", "reg_loss", "center_loss", "prelogits_norm", "accuracy", "lr", "images", "skipped", "time"];

/// Columns of `epochs.csv` (the first seven are the contract: `epoch,loss,xent,accuracy,lr,lfw_accuracy,lfw_val`).
pub const EPOCH_COLUMNS: &[&str] = &[
    "epoch",
    "loss",
    "xent",
    "accuracy",
    "lr",
    "lfw_accuracy",
    "lfw_val",
    "lfw_accuracy_std",
    "lfw_val_std",
    "lfw_far",
    "lfw_auc",
    "lfw_eer",
    "reg_loss",
    "center_loss",
    "prelogits_norm",
    "val_loss",
    "val_xent",
    "val_accuracy",
    "step",
    "images",
    "skipped_images",
    "images_per_s",
    "time_train",
    "time_validate",
    "time_evaluate",
];

/// One optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// Global step number, 1-based (after this step).
    pub step: u64,
    pub epoch: usize,
    /// Batch number within the epoch, 1-based.
    pub batch: usize,
    pub values: LossValues,
    pub lr: f64,
    pub images: usize,
    pub skipped: usize,
    /// Seconds for this step (forward, backward, update; not waiting for data).
    pub seconds: f64,
}

/// One epoch: means over its steps, plus validation and LFW results when computed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub xent: f64,
    pub accuracy: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    pub reg_loss: f64,
    pub center_loss: f64,
    pub prelogits_norm: f64,
    pub lfw: Option<LfwMetrics>,
    pub val: Option<ValMetrics>,
    /// Global step at the end of the epoch.
    pub step: u64,
    pub images: usize,
    pub skipped_images: usize,
    pub images_per_s: f64,
    pub time_train: f64,
    pub time_validate: f64,
    pub time_evaluate: f64,
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else {
        format!("{x}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_default()
}

impl StepRecord {
    pub fn fields(&self) -> Vec<String> {
        let v = &self.values;
        vec![
            self.step.to_string(),
            self.epoch.to_string(),
            self.batch.to_string(),
            num(v.total),
            num(v.xent),
            num(v.reg),
            num(v.center),
            num(v.prelogits_norm),
            num(v.accuracy),
            num(self.lr),
            self.images.to_string(),
            self.skipped.to_string(),
            format!("{:.4}", self.seconds),
        ]
    }
}

impl EpochRecord {
    pub fn fields(&self) -> Vec<String> {
        let l = self.lfw.as_ref();
        let v = self.val.as_ref();
        vec![
            self.epoch.to_string(),
            num(self.loss),
            num(self.xent),
            num(self.accuracy),
            num(self.lr),
            opt(l.map(|l| l.accuracy)),
            opt(l.map(|l| l.val)),
            opt(l.map(|l| l.accuracy_std)),
            opt(l.map(|l| l.val_std)),
            opt(l.map(|l| l.far)),
            opt(l.map(|l| l.auc)),
            opt(l.map(|l| l.eer)),
            num(self.reg_loss),
            num(self.center_loss),
            num(self.prelogits_norm),
            opt(v.map(|v| v.loss)),
            opt(v.map(|v| v.xent)),
            opt(v.map(|v| v.accuracy)),
            self.step.to_string(),
            self.images.to_string(),
            self.skipped_images.to_string(),
            format!("{:.2}", self.images_per_s),
            format!("{:.3}", self.time_train),
            format!("{:.3}", self.time_validate),
            format!("{:.3}", self.time_evaluate),
        ]
    }
}

/// An append-only CSV file with a fixed header.
pub struct CsvLog {
    path: PathBuf,
    columns: usize,
    out: BufWriter<File>,
}

impl CsvLog {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path, columns: &[&str]) -> Result<Self> {
        write_atomic(path, format!("{}\n", columns.join(",")).as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        Self::append_to(path, columns.len())
    }

    /// Reopens `path` for a resumed run: keeps the header and the complete rows whose epoch
    /// (column `epoch_column`) is at most `last_epoch`, dropping what a killed run wrote after
    /// its last checkpoint. A missing file is created.
    pub fn resume(path: &Path, columns: &[&str], epoch_column: usize, last_epoch: usize) -> Result<Self> {
        if !path.exists() {
            return Self::create(path, columns);
        }
        let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let header = columns.join(",");
        let mut lines = text.lines();
        if lines.next() != Some(header.as_str()) {
            bail!("{}: unexpected header (not written by this version of facenet train)", path.display());
        }
        let mut kept = format!("{header}\n");
        let complete = text.ends_with('\n');
        let all: Vec<&str> = lines.collect();
        for (i, line) in all.iter().enumerate() {
            if i + 1 == all.len() && !complete {
                break; // a line cut by the kill
            }
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != columns.len() {
                continue;
            }
            if f[epoch_column].parse::<usize>().is_ok_and(|e| e <= last_epoch) {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        write_atomic(path, kept.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        Self::append_to(path, columns.len())
    }

    fn append_to(path: &Path, columns: usize) -> Result<Self> {
        let f = OpenOptions::new().append(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(CsvLog { path: path.to_path_buf(), columns, out: BufWriter::new(f) })
    }

    /// Appends one row and flushes it.
    pub fn write(&mut self, fields: &[String]) -> Result<()> {
        debug_assert_eq!(fields.len(), self.columns);
        writeln!(self.out, "{}", fields.join(","))
            .and_then(|_| self.out.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// `lfw_result.txt` as the reference writes it: `step<TAB>accuracy<TAB>val` per evaluation.
pub fn append_lfw_result(log_dir: &Path, step: u64, m: &LfwMetrics) -> Result<()> {
    let p = log_dir.join("lfw_result.txt");
    let mut f = OpenOptions::new().create(true).append(true).open(&p).with_context(|| format!("cannot write {}", p.display()))?;
    writeln!(f, "{step}\t{:.5}\t{:.5}", m.accuracy, m.val)?;
    Ok(())
}

/// Reads a CSV written by [`CsvLog`] as rows of fields (header first).
pub fn read_csv(path: &Path) -> Result<Vec<Vec<String>>> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(|l| l.split(',').map(str::to_string).collect()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_csv_has_contract_columns_and_empty_fields() {
        assert_eq!(&EPOCH_COLUMNS[..7], &["epoch", "loss", "xent", "accuracy", "lr", "lfw_accuracy", "lfw_val"]);
        let r = EpochRecord { epoch: 3, loss: 1.5, lr: 0.01, ..Default::default() };
        let f = r.fields();
        assert_eq!(f.len(), EPOCH_COLUMNS.len());
        assert_eq!(f[0], "3");
        assert_eq!(f[1], "1.5");
        assert_eq!(f[5], "");
        let s = StepRecord { step: 1, epoch: 1, batch: 1, values: LossValues::default(), lr: 0.1, images: 4, skipped: 0, seconds: 0.5 };
        assert_eq!(s.fields().len(), STEP_COLUMNS.len());
    }

    #[test]
    fn resume_truncates_to_the_checkpoint() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("epochs.csv");
        let cols = &["epoch", "x"];
        let mut log = CsvLog::create(&p, cols).unwrap();
        for e in 1..=4 {
            log.write(&[e.to_string(), "0.5".into()]).unwrap();
        }
        drop(log);
        // a line cut by a kill
        let mut t = fs::read_to_string(&p).unwrap();
        t.push_str("5,0.");
        fs::write(&p, t).unwrap();
        let mut log = CsvLog::resume(&p, cols, 0, 2).unwrap();
        log.write(&["3".into(), "0.25".into()]).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "epoch,x\n1,0.5\n2,0.5\n3,0.25\n");
        assert!(CsvLog::resume(&p, &["other"], 0, 2).is_err());
        assert_eq!(read_csv(&p).unwrap()[3], vec!["3", "0.25"]);
    }
}
