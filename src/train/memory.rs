//! Expected peak memory of a training run, stated before the first step, and the check that
//! stops a batch that cannot fit with the largest `--batch_size` that does, instead of an
//! allocator abort half-way through the first step.
//!
//! The estimate is a model fitted to measured peaks, not an account of every buffer:
//!
//! ```text
//! peak = BASE + params_bytes * (PARAM_COPIES + optimizer slots)
//!      + batch * (ACTIVATION_FACTOR * activations_bytes + INPUT_COPIES * input_bytes)
//! ```
//!
//! `activations` is [`ModelCost::activations`] (the values of every feature map of one image);
//! training keeps about 1.75 times that for the backward pass (pre- and post-normalisation
//! maps of each convolution, minus what the kernels fuse), the loader a few batches of input.
//! Fitted to peak resident sizes of `facenet train` on the CPU backend (AMD EPYC Zen 4,
//! 2 threads; RMSPROP): the full model at 96, 160 and 182 px, batches 4-32 (0.65-1.6 GB), and
//! the small model at 64 px, batches 64-256 (0.2-0.5 GB); the estimate is within +20 % / -30 %
//! of every one of them (tests/memory.rs checks one on every CI run). On a GPU the same
//! activation and parameter terms are device memory; the check there is skipped (the device's
//! free memory is not asked), the estimate still printed.
//!
//! The memory the check compares with is the smallest of the machine's available memory
//! (`MemAvailable` of `/proc/meminfo`), the cgroup's limit less its usage (containers, Slurm
//! jobs) and `$FACENET_MEMORY_LIMIT` (bytes, or with a `KiB`/`MiB`/`GiB` suffix).

use std::fmt;

use crate::model::inception_resnet_v1::{InceptionResnetV1Config, ModelCost};
use crate::train::options::{OptimizerKind, TrainOptions};

/// Bytes of the process before the network: binary, thread pools, allocator, loader threads.
const BASE: u64 = 100 << 20;
/// Copies of the parameters besides the optimiser's slots: weights, gradients, and the
/// temporaries of the update.
const PARAM_COPIES: f64 = 2.7;
/// Activation values kept per feature-map value (see the module docs).
const ACTIVATION_FACTOR: f64 = 1.75;
/// Input images held per image of a batch: the loader's queue, augmentation, the device copy.
const INPUT_COPIES: u64 = 8;

/// Expected memory of one training run: a fixed part and a part per image of the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    /// Bytes that do not depend on the batch size (base, parameters, optimiser slots).
    pub fixed: u64,
    /// Bytes per image of a batch.
    pub per_image: u64,
}

impl MemoryEstimate {
    /// The estimate for training a network of cost `cost` (at the run's image size) with
    /// `optimizer`.
    pub fn for_training(cost: &ModelCost, image_size: usize, optimizer: OptimizerKind) -> Self {
        let params = 4 * (cost.params + cost.bn_buffers) as u64;
        let slots = optimizer_slots(optimizer) as f64;
        let fixed = BASE + (params as f64 * (PARAM_COPIES + slots)) as u64;
        let input = 4 * 3 * (image_size * image_size) as u64;
        let per_image = (ACTIVATION_FACTOR * 4.0 * cost.activations as f64) as u64 + INPUT_COPIES * input;
        MemoryEstimate { fixed, per_image }
    }

    /// Expected peak bytes at `batch` images per step.
    pub fn at_batch(&self, batch: usize) -> u64 {
        self.fixed.saturating_add(self.per_image.saturating_mul(batch as u64))
    }

    /// The largest batch whose expected peak is at most `available` bytes (0 when not even the
    /// fixed part fits).
    pub fn largest_batch(&self, available: u64) -> usize {
        if available < self.fixed || self.per_image == 0 {
            return 0;
        }
        ((available - self.fixed) / self.per_image) as usize
    }
}

/// Values per parameter the optimiser keeps (the reference's TF1 slots).
fn optimizer_slots(optimizer: OptimizerKind) -> usize {
    match optimizer {
        OptimizerKind::Adagrad | OptimizerKind::Mom => 1,
        OptimizerKind::Adadelta | OptimizerKind::Adam | OptimizerKind::Rmsprop => 2,
    }
}

/// Memory a run may use and where that figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    pub bytes: u64,
    /// `MemAvailable`, `cgroup limit`, `$FACENET_MEMORY_LIMIT`.
    pub source: &'static str,
}

/// The memory this process may still use: the smallest of the sources in the module docs
/// that this machine has; `None` when none can be read (not Linux, no `/proc`).
pub fn available_memory() -> Result<Option<Available>, String> {
    let mut best: Option<Available> = None;
    let mut offer = |bytes: u64, source: &'static str| {
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(Available { bytes, source });
        }
    };
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(kib) = meminfo_field(&text, "MemAvailable:") {
            offer(kib.saturating_mul(1024), "MemAvailable");
        }
    }
    if let Some(free) = cgroup_free() {
        offer(free, "cgroup limit");
    }
    if let Some(v) = std::env::var_os("FACENET_MEMORY_LIMIT").filter(|v| !v.is_empty()) {
        let v = v.to_string_lossy();
        let bytes = parse_bytes(&v).ok_or_else(|| format!("$FACENET_MEMORY_LIMIT: expected bytes or a size like 8GiB, got {v:?}"))?;
        offer(bytes, "$FACENET_MEMORY_LIMIT");
    }
    Ok(best)
}

/// `MemAvailable:   123456 kB` -> 123456.
fn meminfo_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// cgroup v2 limit less usage of this process's cgroup, when it has a limit.
fn cgroup_free() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    let max: u64 = std::fs::read_to_string(dir.join("memory.max")).ok()?.trim().parse().ok()?;
    let current: u64 = std::fs::read_to_string(dir.join("memory.current")).ok()?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// `1234`, `512MiB`, `8GiB`, `8G`, `100KiB` -> bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return None,
    };
    let bytes = number * scale as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A byte count as people read it: `1.6 GiB`, `380 MiB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= (1u64 << 30) as f64 {
            write!(f, "{:.1} GiB", b / (1u64 << 30) as f64)
        } else {
            write!(f, "{:.0} MiB", b / (1u64 << 20) as f64)
        }
    }
}

/// Why a run does not start: its batch does not fit.
#[derive(Debug, thiserror::Error)]
#[error(
    "--batch_size {batch} needs about {} of memory ({} for the network and optimiser + {} per image), but {} is available ({origin}); \
     {advice} (the estimate is within about 20 %; --no_memory_check skips this check)",
    Bytes(.estimate.at_batch(*.batch)),
    Bytes(.estimate.fixed),
    Bytes(.estimate.per_image),
    Bytes(*.available)
)]
pub struct DoesNotFit {
    pub batch: usize,
    pub estimate: MemoryEstimate,
    pub available: u64,
    /// Where `available` comes from.
    pub origin: &'static str,
    advice: String,
}

/// Checks that `batch` fits into `available`; the error names the largest batch that does.
pub fn check(estimate: MemoryEstimate, batch: usize, available: &Available) -> Result<(), DoesNotFit> {
    if estimate.at_batch(batch) <= available.bytes {
        return Ok(());
    }
    let largest = estimate.largest_batch(available.bytes);
    let advice = if largest == 0 {
        "not even the network and its optimiser fit: use a smaller model or a machine with more memory".to_string()
    } else {
        format!("the largest batch that fits is {largest} (--batch_size {largest})")
    };
    Err(DoesNotFit { batch, estimate, available: available.bytes, origin: available.source, advice })
}

/// `facenet train`'s memory line before the first step (`Memory: about 1.7 GiB expected at
/// batch 32 (...); 20.1 GiB available (MemAvailable)`), or the error of a batch that does not
/// fit. Checked on the CPU only and not with `--no_memory_check`.
pub fn check_training(opts: &TrainOptions, config: &InceptionResnetV1Config, on_cpu: bool) -> anyhow::Result<String> {
    let size = opts.image_size as usize;
    let cost = config.cost(size).map_err(|e| anyhow::anyhow!("--image_size {size}: {e}"))?;
    let estimate = MemoryEstimate::for_training(&cost, size, opts.optimizer);
    let expected = format!(
        "Memory: about {} expected at batch {} ({} for the network and optimiser + {} per image)",
        Bytes(estimate.at_batch(opts.batch_size)),
        opts.batch_size,
        Bytes(estimate.fixed),
        Bytes(estimate.per_image)
    );
    if !on_cpu {
        return Ok(format!("{expected}; device memory not checked"));
    }
    let Some(available) = available_memory().map_err(anyhow::Error::msg)? else {
        return Ok(format!("{expected}; available memory unknown"));
    };
    if !opts.no_memory_check {
        check(estimate, opts.batch_size, &available)?;
    }
    Ok(format!("{expected}; {} available ({})", Bytes(available.bytes), available.source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inception_resnet_v1::InceptionResnetV1Config;

    /// Peak resident sizes measured with `/usr/bin/time` (model, image size, batch, KiB).
    const MEASURED: [(&str, usize, usize, u64); 7] = [
        ("full", 160, 4, 652_540),
        ("full", 160, 16, 1_037_940),
        ("full", 160, 32, 1_643_800),
        ("full", 96, 32, 791_980),
        ("full", 182, 16, 1_177_260),
        ("small", 64, 64, 198_044),
        ("small", 64, 256, 500_872),
    ];

    #[test]
    fn the_estimate_is_near_the_measured_peaks() {
        for (model, size, batch, kib) in MEASURED {
            let cfg = if model == "full" {
                InceptionResnetV1Config::new().with_num_classes(20)
            } else {
                InceptionResnetV1Config::small(128, 1.0, 20)
            };
            let cost = cfg.cost(size).unwrap();
            let est = MemoryEstimate::for_training(&cost, size, OptimizerKind::Rmsprop).at_batch(batch) as f64;
            let ratio = est / (kib * 1024) as f64;
            assert!((0.7..=1.2).contains(&ratio), "{model} {size} px batch {batch}: estimate / measured = {ratio:.2}");
        }
    }

    #[test]
    fn largest_batch_is_the_largest_that_fits() {
        let e = MemoryEstimate { fixed: 1000, per_image: 100 };
        assert_eq!(e.largest_batch(1999), 9);
        assert_eq!(e.largest_batch(2000), 10);
        assert_eq!(e.largest_batch(999), 0);
        assert!(e.at_batch(e.largest_batch(5555)) <= 5555 && e.at_batch(e.largest_batch(5555) + 1) > 5555);
        assert_eq!(e.at_batch(usize::MAX), u64::MAX);
        let avail = Available { bytes: 1550, source: "test" };
        assert!(check(e, 5, &avail).is_ok());
        let err = check(e, 6, &avail).unwrap_err().to_string();
        assert!(err.contains("--batch_size 6") && err.contains("the largest batch that fits is 5 (--batch_size 5)"), "{err}");
        let err = check(e, 1, &Available { bytes: 10, source: "test" }).unwrap_err().to_string();
        assert!(err.contains("not even the network"), "{err}");
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("1234"), Some(1234));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("8G"), Some(8 << 30));
        assert_eq!(parse_bytes("1.5 GiB"), Some(3 << 29));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("1e400"), None);
        assert_eq!(meminfo_field("MemTotal: 5 kB\nMemAvailable:   123456 kB\n", "MemAvailable:"), Some(123456));
    }
}
