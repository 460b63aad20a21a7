//! Learning rate: a fixed rate, a schedule file, and the optional exponential (staircase)
//! decay the reference applies on top of either.
//!
//! Schedule files hold `epoch: rate` lines; `#` starts a comment; the rate of the last line
//! whose epoch is <= the current epoch applies; a rate `-` or <= 0 stops training. The
//! reference's files end with such a line (`91: -1`).

use std::fmt;
use std::path::{Path, PathBuf};

/// The rate a schedule line gives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduledRate {
    /// Train with this rate (> 0).
    Rate(f64),
    /// Stop training (`-` or a rate <= 0).
    Stop,
}

/// A parsed schedule file.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    /// `(epoch, rate)` in file order (epochs non-decreasing).
    pub entries: Vec<(usize, ScheduledRate)>,
    /// Where it was read from (for messages).
    pub path: PathBuf,
}

/// Why a schedule file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{path}: cannot read the learning rate schedule: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {message}")]
    Syntax { path: PathBuf, line: usize, message: String },
    #[error("{path}: the learning rate schedule has no `epoch: rate` line")]
    Empty { path: PathBuf },
    #[error("{path}: no learning rate for epoch {epoch} (the first line is for epoch {first})")]
    NoRate { path: PathBuf, epoch: usize, first: usize },
}

impl Schedule {
    /// Parses schedule text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Schedule, ScheduleError> {
        let syntax = |line: usize, message: String| ScheduleError::Syntax { path: path.to_path_buf(), line, message };
        let mut entries: Vec<(usize, ScheduledRate)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let Some((e, r)) = line.split_once(':') else {
                return Err(syntax(line_no, format!("expected `epoch: rate`, found '{line}'")));
            };
            let (e, r) = (e.trim(), r.trim());
            let epoch: usize = e.parse().map_err(|_| syntax(line_no, format!("expected an epoch number (integer >= 0), found '{e}'")))?;
            let rate = if r == "-" {
                ScheduledRate::Stop
            } else {
                let v: f64 = r.parse().map_err(|_| syntax(line_no, format!("expected a learning rate (a number or '-'), found '{r}'")))?;
                if !v.is_finite() {
                    return Err(syntax(line_no, format!("learning rate must be finite, found '{r}'")));
                }
                if v > 0.0 {
                    ScheduledRate::Rate(v)
                } else {
                    ScheduledRate::Stop
                }
            };
            if let Some(&(prev, _)) = entries.last() {
                if epoch < prev {
                    return Err(syntax(line_no, format!("epoch {epoch} comes after epoch {prev}: epochs must not decrease")));
                }
            }
            entries.push((epoch, rate));
        }
        if entries.is_empty() {
            return Err(ScheduleError::Empty { path: path.to_path_buf() });
        }
        Ok(Schedule { entries, path: path.to_path_buf() })
    }

    /// Reads and parses a schedule file.
    pub fn read(path: &Path) -> Result<Schedule, ScheduleError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Io { path: path.to_path_buf(), source })?;
        Schedule::parse(&text, path)
    }

    /// The rate for `epoch` (1-based as in the reference): that of the last line whose epoch
    /// is <= `epoch`.
    pub fn rate_at(&self, epoch: usize) -> Result<ScheduledRate, ScheduleError> {
        self.entries.iter().rev().find(|(e, _)| *e <= epoch).map(|(_, r)| *r).ok_or_else(|| ScheduleError::NoRate {
            path: self.path.clone(),
            epoch,
            first: self.entries[0].0,
        })
    }
}

/// Where the per-epoch base rate comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum RateSource {
    /// `--learning_rate` > 0.
    Fixed(f64),
    /// `--learning_rate` < 0: `--learning_rate_schedule_file`.
    File(Schedule),
}

/// The learning rate policy of a run: base rate per epoch, then exponential staircase decay
/// by `decay_factor` every `decay_epochs * epoch_size` steps (TF's `exponential_decay` with
/// `staircase=True`; a factor of 1 is no decay).
#[derive(Clone, Debug, PartialEq)]
pub struct LearningRatePolicy {
    pub source: RateSource,
    pub decay_epochs: usize,
    pub decay_factor: f64,
    pub epoch_size: usize,
}

impl LearningRatePolicy {
    /// The base rate of `epoch` (before decay), or `Stop`.
    pub fn base_rate(&self, epoch: usize) -> Result<ScheduledRate, ScheduleError> {
        match &self.source {
            RateSource::Fixed(r) => Ok(ScheduledRate::Rate(*r)),
            RateSource::File(s) => s.rate_at(epoch),
        }
    }

    /// The rate used at `global_step` (0-based, counted before the step) with `base`.
    pub fn decayed(&self, base: f64, global_step: u64) -> f64 {
        if self.decay_factor == 1.0 {
            return base;
        }
        let period = (self.decay_epochs * self.epoch_size).max(1) as u64;
        // (saturated: a step count past 2^31 periods must not wrap to a negative power)
        let k = (global_step / period).min(i32::MAX as u64) as i32;
        base * self.decay_factor.powi(k)
    }
}

impl fmt::Display for LearningRatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            RateSource::Fixed(r) => write!(f, "fixed {r}")?,
            RateSource::File(s) => write!(f, "schedule {}", s.path.display())?,
        }
        if self.decay_factor != 1.0 {
            write!(f, ", x{} every {} epochs", self.decay_factor, self.decay_epochs)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASIA: &str = "# Learning rate schedule\n# Maps an epoch number to a learning rate\n0:  0.05\n60: 0.005\n80: 0.0005\n91: -1\n";

    #[test]
    fn parses_reference_style_files() {
        let s = Schedule::parse(CASIA, Path::new("s.txt")).unwrap();
        assert_eq!(s.entries.len(), 4);
        assert_eq!(s.rate_at(1).unwrap(), ScheduledRate::Rate(0.05));
        assert_eq!(s.rate_at(59).unwrap(), ScheduledRate::Rate(0.05));
        assert_eq!(s.rate_at(60).unwrap(), ScheduledRate::Rate(0.005));
        assert_eq!(s.rate_at(80).unwrap(), ScheduledRate::Rate(0.0005));
        assert_eq!(s.rate_at(90).unwrap(), ScheduledRate::Rate(0.0005));
        assert_eq!(s.rate_at(91).unwrap(), ScheduledRate::Stop);
        assert_eq!(s.rate_at(500).unwrap(), ScheduledRate::Stop);
        // trailing comments, '-', zero, blank lines
        let s = Schedule::parse("1: 0.1  # warm\n\n  3 :-\n5: 0\n", Path::new("x")).unwrap();
        assert_eq!(s.rate_at(2).unwrap(), ScheduledRate::Rate(0.1));
        assert_eq!(s.rate_at(3).unwrap(), ScheduledRate::Stop);
        assert_eq!(s.rate_at(5).unwrap(), ScheduledRate::Stop);
        assert!(matches!(s.rate_at(0), Err(ScheduleError::NoRate { epoch: 0, first: 1, .. })));
    }

    #[test]
    fn shipped_schedule_files_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        for (name, stop) in [("learning_rate_schedule_classifier_casia.txt", 91), ("learning_rate_schedule_classifier_vggface2.txt", 276)] {
            let s = Schedule::read(&root.join(name)).unwrap();
            assert_eq!(s.rate_at(1).unwrap(), ScheduledRate::Rate(0.05), "{name}");
            assert_eq!(s.rate_at(stop).unwrap(), ScheduledRate::Stop, "{name}");
            assert!(matches!(s.rate_at(stop - 1).unwrap(), ScheduledRate::Rate(r) if r > 0.0), "{name}");
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = |t: &str| Schedule::parse(t, Path::new("lr.txt")).unwrap_err().to_string();
        assert_eq!(e("0: 0.1\n10 0.01\n"), "lr.txt:2: expected `epoch: rate`, found '10 0.01'");
        assert_eq!(e("# c\nx: 0.1\n"), "lr.txt:2: expected an epoch number (integer >= 0), found 'x'");
        assert_eq!(e("0: 0.1\n1: fast\n"), "lr.txt:2: expected a learning rate (a number or '-'), found 'fast'");
        assert_eq!(e("0: 0.1\n-1: 0.1\n"), "lr.txt:2: expected an epoch number (integer >= 0), found '-1'");
        assert_eq!(e("5: 0.1\n2: 0.1\n"), "lr.txt:2: epoch 2 comes after epoch 5: epochs must not decrease");
        assert_eq!(e("0: inf\n"), "lr.txt:1: learning rate must be finite, found 'inf'");
        assert_eq!(e("# only comments\n\n"), "lr.txt: the learning rate schedule has no `epoch: rate` line");
        let io = Schedule::read(Path::new("/nonexistent/lr.txt")).unwrap_err().to_string();
        assert!(io.starts_with("/nonexistent/lr.txt: cannot read"), "{io}");
    }

    #[test]
    fn fixed_rate_and_staircase_decay() {
        let p = LearningRatePolicy { source: RateSource::Fixed(0.1), decay_epochs: 2, decay_factor: 0.5, epoch_size: 10 };
        assert_eq!(p.base_rate(7).unwrap(), ScheduledRate::Rate(0.1));
        assert_eq!(p.decayed(0.1, 0), 0.1);
        assert_eq!(p.decayed(0.1, 19), 0.1);
        assert_eq!(p.decayed(0.1, 20), 0.05);
        assert_eq!(p.decayed(0.1, 45), 0.025);
        let none = LearningRatePolicy { decay_factor: 1.0, ..p };
        assert_eq!(none.decayed(0.1, 1000), 0.1);
    }
}
