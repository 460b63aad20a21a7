//! LFW-protocol verification metrics, numerically faithful to the reference
//! workflow (`calculate_roc`, `calculate_val`, `lfw.evaluate`, and the AUC / EER
//! of `validate_on_lfw`).
//!
//! Everything here is plain `f64` arithmetic over slices. The order of every
//! floating-point operation follows what NumPy / SciPy / scikit-learn do in the
//! reference, so that results agree bit for bit (see `tests/metrics_parity.rs`
//! and `tools/make_metric_fixtures.py`). The NumPy / SciPy routines themselves
//! (pairwise sum, mean, standard deviation, trapezoid rule, `interp1d` linear
//! and slinear, `brentq`) are reproduced in [`super::numpy_compat`]; this
//! module is the protocol built on them:
//!
//! * sums along a row (distances, norms, trapezoid terms, `np.mean`/`np.std` of
//!   the per-fold numbers) use NumPy's pairwise summation
//!   ([`numpy_compat::numpy_sum`](super::numpy_compat::numpy_sum));
//!   sums down a column (mean embedding, per-threshold mean over folds) are
//!   plain sequential sums, as NumPy's axis-0 reductions are;
//! * thresholds are `i * 0.01` (`i < 400`) and `i * 0.001` (`i < 4000`), which
//!   is exactly what `np.arange(0, 4, step)` yields;
//! * folds are consecutive and unshuffled (scikit-learn `KFold`), the first
//!   `n % k` folds getting one extra pair;
//! * a pair is predicted "same" when `distance < threshold` (strict); among equal
//!   training accuracies the first (smallest) threshold wins;
//! * standard deviations are population ones (`ddof = 0`).
//!
//! Deliberate, documented differences from the reference:
//!
//! * Cosine distance clamps the cosine similarity to `[-1, 1]` before `acos`.
//!   This changes nothing for in-range values; it only matters where rounding
//!   pushes the similarity of (anti)parallel vectors past ±1, where the reference
//!   gets `NaN` (such a pair then never counts as "same" at any threshold) and
//!   this module gets distance 0 (or 1).
//! * Where the reference would raise (a fold whose training or test part has no
//!   "same" or no "different" pair: `calculate_val_far` divides by zero; fewer
//!   pairs than folds: `KFold` refuses), a typed [`MetricsError`] is returned.
//! * Where the reference's EER root-find raises (the averaged FPR never reaches
//!   1, so `interp1d` is asked outside its range, or no sign change: see
//!   [`numpy_compat::brentq`](super::numpy_compat::brentq)), [`eer`]
//!   returns an error and [`evaluate`] stores `f64::NAN` in [`Evaluation::eer`]
//!   instead of failing the whole evaluation.

use std::ops::Range;

use super::numpy_compat::{
    brentq, interp1d_linear, interp1d_slinear, numpy_mean, numpy_std, numpy_sum, trapezoid, BRENTQ_MAXITER, BRENTQ_RTOL, BRENTQ_XTOL,
};

/// Number of ROC / accuracy thresholds (`np.arange(0, 4, 0.01)`).
pub const ROC_THRESHOLD_COUNT: usize = 400;
/// Step of the ROC / accuracy thresholds.
pub const ROC_THRESHOLD_STEP: f64 = 0.01;
/// Number of VAL@FAR thresholds (`np.arange(0, 4, 0.001)`).
pub const VAL_THRESHOLD_COUNT: usize = 4000;
/// Step of the VAL@FAR thresholds.
pub const VAL_THRESHOLD_STEP: f64 = 0.001;

/// Which part of a fold a [`MetricsError::DegenerateFold`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FoldPart {
    /// The other folds, used to pick the threshold.
    Train,
    /// The fold itself, on which VAL / FAR are measured.
    Test,
}

impl std::fmt::Display for FoldPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FoldPart::Train => "training",
            FoldPart::Test => "test",
        })
    }
}

/// The kind of pair a degenerate fold lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairKind {
    /// Pairs of the same identity (`issame == true`).
    Same,
    /// Pairs of different identities.
    Different,
}

impl std::fmt::Display for PairKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PairKind::Same => "same-identity",
            PairKind::Different => "different-identity",
        })
    }
}

/// Errors of the verification metrics.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// A distance-metric index other than 0 or 1.
    #[error("unknown distance metric {0} (0 = squared Euclidean, 1 = arccos of cosine similarity)")]
    UnknownDistanceMetric(u32),
    /// `dim == 0`.
    #[error("the embedding dimension must be positive")]
    ZeroDimension,
    /// Slices whose lengths do not fit together.
    #[error("length mismatch: {what}: expected {expected}, got {actual}")]
    LengthMismatch {
        /// What was measured.
        what: &'static str,
        /// The length implied by the other arguments.
        expected: usize,
        /// The length given.
        actual: usize,
    },
    /// Fewer than two folds (scikit-learn's `KFold` refuses them too).
    #[error("at least 2 folds are needed, got {0}")]
    TooFewFolds(usize),
    /// Fewer pairs than folds.
    #[error("{pairs} pairs cannot be split into {folds} folds")]
    TooFewPairs {
        /// Number of pairs.
        pairs: usize,
        /// Number of folds asked for.
        folds: usize,
    },
    /// A NaN or infinite input or intermediate value.
    #[error("non-finite value in {what} at index {index}")]
    NonFinite {
        /// Which input (or intermediate) holds it.
        what: &'static str,
        /// Its index there.
        index: usize,
    },
    /// An all-zero embedding under the cosine metric.
    #[error("pair {pair} has a zero-norm embedding: its cosine distance is undefined")]
    ZeroNorm {
        /// The pair's index.
        pair: usize,
    },
    /// A fold part without one kind of pair: the reference's
    /// `calculate_val_far` divides by zero there.
    #[error("fold {fold}: its {part} part has no {missing} pairs, so VAL/FAR are undefined")]
    DegenerateFold {
        /// Zero-based fold index.
        fold: usize,
        /// Training or test part.
        part: FoldPart,
        /// The kind of pair it lacks.
        missing: PairKind,
    },
    /// A FAR target that is not finite or lies below every training FAR.
    #[error("FAR target {target} is outside the interpolation range [{min}, ..]")]
    FarTargetOutOfRange {
        /// The target asked for.
        target: f64,
        /// The smallest training FAR.
        min: f64,
    },
    /// Fewer than two points for an interpolation or an area.
    #[error("{what} needs at least 2 points, got {got}")]
    TooFewPoints {
        /// What needed them.
        what: &'static str,
        /// How many it got.
        got: usize,
    },
    /// `auc`'s x values neither increase nor decrease.
    #[error("AUC: x is neither increasing nor decreasing")]
    NotMonotonic,
    /// Linear interpolation asked for a point outside the data's range.
    #[error("interpolation at {x} is outside the range [{min}, {max}]")]
    OutOfInterpolationRange {
        /// The point asked for.
        x: f64,
        /// Smallest x of the data.
        min: f64,
        /// Largest x of the data.
        max: f64,
    },
    /// The root-finder's function is NaN somewhere.
    #[error("root finding: the function value at x={0} is NaN")]
    NanFunctionValue(f64),
    /// `f(a)` and `f(b)` have the same sign.
    #[error("root finding: f(a) and f(b) must have different signs")]
    NoSignChange,
    /// Brent's method did not converge within its iteration limit.
    #[error("root finding did not converge after {0} iterations")]
    NoConvergence(usize),
}

/// How two embeddings are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DistanceMetric {
    /// Squared Euclidean distance (reference index 0); in `[0, 4]` for unit vectors.
    SquaredEuclidean,
    /// `acos(cosine similarity) / pi` (reference index 1); in `[0, 1]`.
    ArccosCosine,
}

impl DistanceMetric {
    /// The metric of the reference's `--distance_metric` index.
    pub fn from_index(i: u32) -> Result<Self, MetricsError> {
        match i {
            0 => Ok(DistanceMetric::SquaredEuclidean),
            1 => Ok(DistanceMetric::ArccosCosine),
            other => Err(MetricsError::UnknownDistanceMetric(other)),
        }
    }

    /// The reference's index of this metric.
    pub fn index(self) -> u32 {
        match self {
            DistanceMetric::SquaredEuclidean => 0,
            DistanceMetric::ArccosCosine => 1,
        }
    }
}

/// Options of [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Number of cross-validation folds (10 in the protocol).
    pub nrof_folds: usize,
    /// Distance between the two embeddings of a pair.
    pub distance_metric: DistanceMetric,
    /// Subtract, per fold, the mean embedding of the training folds' pairs.
    pub subtract_mean: bool,
    /// FAR at which VAL is reported (1e-3 in the protocol).
    pub far_target: f64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions { nrof_folds: 10, distance_metric: DistanceMetric::SquaredEuclidean, subtract_mean: false, far_target: 1e-3 }
    }
}

/// Everything the LFW protocol reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Evaluation {
    /// The ROC thresholds (0 to 4 step 0.01).
    pub thresholds: Vec<f64>,
    /// True-positive rate per threshold, averaged over the test folds.
    pub tpr: Vec<f64>,
    /// False-positive rate per threshold, averaged over the test folds.
    pub fpr: Vec<f64>,
    /// Test accuracy of each fold at the threshold chosen on the other folds.
    pub accuracy_per_fold: Vec<f64>,
    /// The threshold chosen for each fold.
    pub best_threshold_per_fold: Vec<f64>,
    /// Mean of `accuracy_per_fold`.
    pub accuracy_mean: f64,
    /// Population standard deviation of `accuracy_per_fold`.
    pub accuracy_std: f64,
    /// VAL (true accept rate) of each test fold.
    pub val_per_fold: Vec<f64>,
    /// FAR (false accept rate) of each test fold.
    pub far_per_fold: Vec<f64>,
    /// The VAL threshold of each fold, interpolated on the other folds.
    pub val_threshold_per_fold: Vec<f64>,
    /// Mean of `val_per_fold`.
    pub val_mean: f64,
    /// Population standard deviation of `val_per_fold`.
    pub val_std: f64,
    /// Mean of `far_per_fold`.
    pub far_mean: f64,
    /// Area under the averaged ROC (trapezoid rule).
    pub auc: f64,
    /// Equal error rate; `NaN` where the reference's root-find raises (see [`eer`]).
    pub eer: f64,
    /// Distance of each pair, without mean subtraction.
    pub distances: Vec<f64>,
}

// ---------------------------------------------------------------------------
// Thresholds and folds
// ---------------------------------------------------------------------------

/// `np.arange(0, 4, 0.01)`: `i * 0.01` for `i` in `0..400`.
pub fn roc_thresholds() -> Vec<f64> {
    (0..ROC_THRESHOLD_COUNT).map(|i| i as f64 * ROC_THRESHOLD_STEP).collect()
}

/// `np.arange(0, 4, 0.001)`: `i * 0.001` for `i` in `0..4000`.
pub fn val_thresholds() -> Vec<f64> {
    (0..VAL_THRESHOLD_COUNT).map(|i| i as f64 * VAL_THRESHOLD_STEP).collect()
}

/// The test folds of an unshuffled `KFold(n_splits = k)` over `n` items:
/// consecutive ranges, the first `n % k` of them one item longer.
pub fn fold_ranges(n: usize, k: usize) -> Result<Vec<Range<usize>>, MetricsError> {
    if k < 2 {
        return Err(MetricsError::TooFewFolds(k));
    }
    if n < k {
        return Err(MetricsError::TooFewPairs { pairs: n, folds: k });
    }
    let base = n / k;
    let extra = n % k;
    let mut start = 0;
    Ok((0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let r = start..start + len;
            start += len;
            r
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Distances
// ---------------------------------------------------------------------------

fn check_finite(values: &[f64], what: &'static str) -> Result<(), MetricsError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(MetricsError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Distance of one pair after subtracting `mean` from both embeddings (the
/// reference computes `distance(e1 - mean, e2 - mean)`, with `mean = 0.0` when
/// not subtracting; `x - 0.0 == x`, so one code path serves both).
fn pair_distance(
    a: &[f64],
    b: &[f64],
    mean: &[f64],
    metric: DistanceMetric,
    scratch: &mut [Vec<f64>; 3],
    pair: usize,
) -> Result<f64, MetricsError> {
    let [s0, s1, s2] = scratch;
    s0.clear();
    s1.clear();
    s2.clear();
    let d = match metric {
        DistanceMetric::SquaredEuclidean => {
            s0.extend(a.iter().zip(b).zip(mean).map(|((&x, &y), &m)| {
                let diff = (x - m) - (y - m);
                diff * diff
            }));
            numpy_sum(s0)
        }
        DistanceMetric::ArccosCosine => {
            for ((&x, &y), &m) in a.iter().zip(b).zip(mean) {
                let (x, y) = (x - m, y - m);
                s0.push(x * y);
                s1.push(x * x);
                s2.push(y * y);
            }
            let dot = numpy_sum(s0);
            let norm = numpy_sum(s1).sqrt() * numpy_sum(s2).sqrt();
            if norm == 0.0 {
                return Err(MetricsError::ZeroNorm { pair });
            }
            // Clamp only matters where the reference would get NaN.
            (dot / norm).clamp(-1.0, 1.0).acos() / std::f64::consts::PI
        }
    };
    if !d.is_finite() {
        return Err(MetricsError::NonFinite { what: "distance", index: pair });
    }
    Ok(d)
}

fn new_scratch(dim: usize) -> [Vec<f64>; 3] {
    [Vec::with_capacity(dim), Vec::with_capacity(dim), Vec::with_capacity(dim)]
}

/// The reference's `distance(embeddings1, embeddings2, metric)`: one distance
/// per row pair. `emb1` and `emb2` hold the same number of `dim`-long rows.
pub fn distances(emb1: &[f64], emb2: &[f64], dim: usize, metric: DistanceMetric) -> Result<Vec<f64>, MetricsError> {
    if dim == 0 {
        return Err(MetricsError::ZeroDimension);
    }
    if !emb1.len().is_multiple_of(dim) {
        return Err(MetricsError::LengthMismatch {
            what: "emb1 values (a multiple of dim)",
            expected: emb1.len() / dim * dim,
            actual: emb1.len(),
        });
    }
    if emb2.len() != emb1.len() {
        return Err(MetricsError::LengthMismatch { what: "emb2 values", expected: emb1.len(), actual: emb2.len() });
    }
    check_finite(emb1, "emb1")?;
    check_finite(emb2, "emb2")?;
    let zeros = vec![0.0; dim];
    let mut scratch = new_scratch(dim);
    emb1.chunks_exact(dim)
        .zip(emb2.chunks_exact(dim))
        .enumerate()
        .map(|(k, (a, b))| pair_distance(a, b, &zeros, metric, &mut scratch, k))
        .collect()
}

/// Pairs of embeddings laid out as `lfw.evaluate` expects: `2N` rows of `dim`
/// values, rows `2k` and `2k + 1` forming pair `k`, with its label `issame[k]`.
#[derive(Clone, Copy, Debug)]
pub struct Pairs<'a> {
    embeddings: &'a [f64],
    dim: usize,
    issame: &'a [bool],
}

impl<'a> Pairs<'a> {
    /// Checks the layout (`embeddings.len() == 2 * issame.len() * dim`, `dim > 0`)
    /// and that every value is finite.
    pub fn new(embeddings: &'a [f64], dim: usize, issame: &'a [bool]) -> Result<Self, MetricsError> {
        if dim == 0 {
            return Err(MetricsError::ZeroDimension);
        }
        let expected = 2 * issame.len() * dim;
        if embeddings.len() != expected {
            return Err(MetricsError::LengthMismatch { what: "embedding values (2 * pairs * dim)", expected, actual: embeddings.len() });
        }
        check_finite(embeddings, "embeddings")?;
        Ok(Pairs { embeddings, dim, issame })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.issame.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.issame.is_empty()
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The labels.
    pub fn issame(&self) -> &'a [bool] {
        self.issame
    }

    /// First embedding of pair `k` (the reference's `embeddings1[k]`).
    pub fn first(&self, k: usize) -> &'a [f64] {
        &self.embeddings[2 * k * self.dim..(2 * k + 1) * self.dim]
    }

    /// Second embedding of pair `k` (the reference's `embeddings2[k]`).
    pub fn second(&self, k: usize) -> &'a [f64] {
        &self.embeddings[(2 * k + 1) * self.dim..(2 * k + 2) * self.dim]
    }

    /// Distance of every pair after subtracting `mean` (length `dim`).
    pub fn distances_with_mean(&self, mean: &[f64], metric: DistanceMetric) -> Result<Vec<f64>, MetricsError> {
        if mean.len() != self.dim {
            return Err(MetricsError::LengthMismatch { what: "mean", expected: self.dim, actual: mean.len() });
        }
        let mut scratch = new_scratch(self.dim);
        (0..self.len()).map(|k| pair_distance(self.first(k), self.second(k), mean, metric, &mut scratch, k)).collect()
    }

    /// Distance of every pair, no mean subtraction.
    pub fn distances(&self, metric: DistanceMetric) -> Result<Vec<f64>, MetricsError> {
        self.distances_with_mean(&vec![0.0; self.dim], metric)
    }

    /// Mean embedding of the training pairs (all pairs outside `test`):
    /// `np.mean(np.concatenate([e1[train], e2[train]]), axis=0)`, i.e. a
    /// sequential sum over the first embeddings in pair order, then over the
    /// second ones, divided by their count.
    pub fn train_mean(&self, test: &Range<usize>) -> Vec<f64> {
        let train = || (0..self.len()).filter(|k| !test.contains(k));
        let mut sum = vec![0.0; self.dim];
        let mut count = 0usize;
        for k in train() {
            for (s, &v) in sum.iter_mut().zip(self.first(k)) {
                *s += v;
            }
            count += 1;
        }
        for k in train() {
            for (s, &v) in sum.iter_mut().zip(self.second(k)) {
                *s += v;
            }
            count += 1;
        }
        let count = count as f64;
        sum.iter().map(|s| s / count).collect()
    }

    fn fold_distances(
        &self,
        test: &Range<usize>,
        metric: DistanceMetric,
        subtract_mean: bool,
        shared: &mut Option<Vec<f64>>,
    ) -> Result<Vec<f64>, MetricsError> {
        if subtract_mean {
            self.distances_with_mean(&self.train_mean(test), metric)
        } else {
            if shared.is_none() {
                *shared = Some(self.distances(metric)?);
            }
            Ok(shared.clone().unwrap_or_default())
        }
    }
}

// ---------------------------------------------------------------------------
// Counting predictions
// ---------------------------------------------------------------------------

/// Distances of one set of pairs, split by label and sorted, so that the
/// number of pairs with `distance < t` is a binary search.
#[derive(Clone, Debug)]
struct SortedSplit {
    same: Vec<f64>,
    diff: Vec<f64>,
}

impl SortedSplit {
    fn new(dist: &[f64], issame: &[bool], indices: impl Iterator<Item = usize>) -> Self {
        let (mut same, mut diff) = (Vec::new(), Vec::new());
        for k in indices {
            if issame[k] {
                same.push(dist[k]);
            } else {
                diff.push(dist[k]);
            }
        }
        same.sort_by(f64::total_cmp);
        diff.sort_by(f64::total_cmp);
        SortedSplit { same, diff }
    }

    /// (same pairs, different pairs) predicted "same" at `threshold`.
    fn below(&self, threshold: f64) -> (usize, usize) {
        (self.same.partition_point(|&d| d < threshold), self.diff.partition_point(|&d| d < threshold))
    }

    fn rates(&self, threshold: f64) -> (f64, f64, f64) {
        let (tp, fp) = self.below(threshold);
        rates_from_counts(tp, fp, self.same.len(), self.diff.len())
    }
}

fn rates_from_counts(tp: usize, fp: usize, n_same: usize, n_diff: usize) -> (f64, f64, f64) {
    let tn = n_diff - fp;
    let tpr = if n_same == 0 { 0.0 } else { tp as f64 / n_same as f64 };
    let fpr = if n_diff == 0 { 0.0 } else { fp as f64 / n_diff as f64 };
    let acc = (tp + tn) as f64 / (n_same + n_diff) as f64;
    (tpr, fpr, acc)
}

/// The reference's `calculate_accuracy`: `(tpr, fpr, accuracy)` of predicting
/// "same" for `dist < threshold`; a rate whose denominator is 0 is 0.
pub fn calculate_accuracy(threshold: f64, dist: &[f64], issame: &[bool]) -> (f64, f64, f64) {
    let mut c = [0usize; 4]; // tp, fp, n_same, n_diff
    for (&d, &same) in dist.iter().zip(issame) {
        let predicted = d < threshold;
        if same {
            c[2] += 1;
            c[0] += usize::from(predicted);
        } else {
            c[3] += 1;
            c[1] += usize::from(predicted);
        }
    }
    rates_from_counts(c[0], c[1], c[2], c[3])
}

/// The reference's `calculate_val_far`: `(val, far)` at `threshold`, or `None`
/// where it divides by zero (no same pair, or no different pair).
pub fn calculate_val_far(threshold: f64, dist: &[f64], issame: &[bool]) -> Option<(f64, f64)> {
    let split = SortedSplit::new(dist, issame, 0..dist.len().min(issame.len()));
    val_far(&split, threshold).ok()
}

fn val_far(split: &SortedSplit, threshold: f64) -> Result<(f64, f64), PairKind> {
    if split.same.is_empty() {
        return Err(PairKind::Same);
    }
    if split.diff.is_empty() {
        return Err(PairKind::Different);
    }
    let (ta, fa) = split.below(threshold);
    Ok((ta as f64 / split.same.len() as f64, fa as f64 / split.diff.len() as f64))
}

// ---------------------------------------------------------------------------
// ROC / accuracy
// ---------------------------------------------------------------------------

/// Result of [`calculate_roc`].
#[derive(Clone, Debug, PartialEq)]
pub struct Roc {
    /// TPR per threshold, averaged over the test folds.
    pub tpr: Vec<f64>,
    /// FPR per threshold, averaged over the test folds.
    pub fpr: Vec<f64>,
    /// Test accuracy per fold at its chosen threshold.
    pub accuracy: Vec<f64>,
    /// Index (into the thresholds) chosen per fold: the first best training accuracy.
    pub best_threshold_index: Vec<usize>,
}

fn check_thresholds(thresholds: &[f64]) -> Result<(), MetricsError> {
    if thresholds.is_empty() {
        return Err(MetricsError::TooFewPoints { what: "thresholds", got: 0 });
    }
    check_finite(thresholds, "thresholds")
}

/// The reference's `calculate_roc`: k-fold accuracy with the threshold picked on
/// the training folds, and the per-threshold TPR/FPR of the test folds averaged
/// over folds.
pub fn calculate_roc(
    thresholds: &[f64],
    pairs: &Pairs<'_>,
    nrof_folds: usize,
    metric: DistanceMetric,
    subtract_mean: bool,
) -> Result<Roc, MetricsError> {
    check_thresholds(thresholds)?;
    let folds = fold_ranges(pairs.len(), nrof_folds)?;
    let issame = pairs.issame();
    let nt = thresholds.len();
    let mut tpr_sum = vec![0.0; nt];
    let mut fpr_sum = vec![0.0; nt];
    let mut accuracy = Vec::with_capacity(folds.len());
    let mut best_threshold_index = Vec::with_capacity(folds.len());
    let mut shared = None;
    for test in &folds {
        let dist = pairs.fold_distances(test, metric, subtract_mean, &mut shared)?;
        let train = SortedSplit::new(&dist, issame, (0..pairs.len()).filter(|k| !test.contains(k)));
        let test_split = SortedSplit::new(&dist, issame, test.clone());
        let mut best = 0;
        let mut best_acc = f64::NEG_INFINITY;
        for (i, &t) in thresholds.iter().enumerate() {
            let (_, _, acc) = train.rates(t);
            if acc > best_acc {
                best_acc = acc;
                best = i;
            }
        }
        for (i, &t) in thresholds.iter().enumerate() {
            let (tpr, fpr, _) = test_split.rates(t);
            tpr_sum[i] += tpr;
            fpr_sum[i] += fpr;
        }
        accuracy.push(test_split.rates(thresholds[best]).2);
        best_threshold_index.push(best);
    }
    let k = folds.len() as f64;
    Ok(Roc { tpr: tpr_sum.iter().map(|s| s / k).collect(), fpr: fpr_sum.iter().map(|s| s / k).collect(), accuracy, best_threshold_index })
}

// ---------------------------------------------------------------------------
// VAL @ FAR
// ---------------------------------------------------------------------------

/// The VAL threshold of one fold from its training FAR at every threshold.
///
/// The reference calls `interp1d(far_train, thresholds, kind='slinear')(target)`
/// when `max(far_train) >= target`, and uses 0 otherwise. On the SciPy it was
/// written for, that is a degree-1 B-spline over the stably sorted FAR values
/// ([`interp1d_slinear`](super::numpy_compat::interp1d_slinear), which keeps the
/// long runs of equal FAR that current SciPy refuses). Evaluated at the target
/// it gives:
///
/// * with `p` the LAST sorted index whose FAR is `<= target` and `p` not the
///   final one: linear interpolation between `(far[p], t[p])` and
///   `(far[p+1], t[p+1])`;
/// * if `p` is the final index (the largest FAR equals the target exactly), the
///   same on the final segment `[p-1, p]`, which gives about `t[p]`; but when
///   `far[p-1] == far[p]` too (a run of equal FAR at the end) the threshold is
///   exactly 0 — a reference quirk, kept;
/// * a target below the smallest FAR is outside `interp1d`'s range: an error.
pub fn val_threshold(far_train: &[f64], thresholds: &[f64], far_target: f64) -> Result<f64, MetricsError> {
    if far_train.len() != thresholds.len() {
        return Err(MetricsError::LengthMismatch {
            what: "far_train (one per threshold)",
            expected: thresholds.len(),
            actual: far_train.len(),
        });
    }
    let m = far_train.len();
    if m < 2 {
        return Err(MetricsError::TooFewPoints { what: "VAL threshold interpolation", got: m });
    }
    check_finite(far_train, "far_train")?;
    check_finite(thresholds, "thresholds")?;
    if !far_target.is_finite() {
        return Err(MetricsError::NonFinite { what: "far_target", index: 0 });
    }
    let max = far_train.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max < far_target {
        return Ok(0.0);
    }
    interp1d_slinear(far_target, far_train, thresholds).map_err(|e| match e {
        MetricsError::OutOfInterpolationRange { x, min, .. } => MetricsError::FarTargetOutOfRange { target: x, min },
        other => other,
    })
}

/// Result of [`calculate_val`].
#[derive(Clone, Debug, PartialEq)]
pub struct Val {
    /// VAL of each test fold.
    pub val: Vec<f64>,
    /// FAR of each test fold.
    pub far: Vec<f64>,
    /// Threshold of each fold.
    pub threshold: Vec<f64>,
    /// `np.mean(val)`.
    pub val_mean: f64,
    /// `np.std(val)`.
    pub val_std: f64,
    /// `np.mean(far)`.
    pub far_mean: f64,
}

/// The reference's `calculate_val`: per fold, the threshold reaching
/// `far_target` on the training folds ([`val_threshold`]), then VAL and FAR on
/// the test fold.
///
/// Errors with [`MetricsError::DegenerateFold`] (naming the first such fold, in
/// the order the reference meets them: fold 0 training, fold 0 test, fold 1
/// ...) where a part lacks same or different pairs: the reference divides by
/// zero there.
pub fn calculate_val(
    thresholds: &[f64],
    pairs: &Pairs<'_>,
    far_target: f64,
    nrof_folds: usize,
    metric: DistanceMetric,
    subtract_mean: bool,
) -> Result<Val, MetricsError> {
    check_thresholds(thresholds)?;
    if !far_target.is_finite() {
        return Err(MetricsError::NonFinite { what: "far_target", index: 0 });
    }
    let folds = fold_ranges(pairs.len(), nrof_folds)?;
    let issame = pairs.issame();
    let mut shared = None;
    let (mut val, mut far, mut threshold) = (Vec::new(), Vec::new(), Vec::new());
    for (fold, test) in folds.iter().enumerate() {
        let dist = pairs.fold_distances(test, metric, subtract_mean, &mut shared)?;
        let train = SortedSplit::new(&dist, issame, (0..pairs.len()).filter(|k| !test.contains(k)));
        let degenerate = |part| move |missing| MetricsError::DegenerateFold { fold, part, missing };
        val_far(&train, 0.0).map_err(degenerate(FoldPart::Train))?;
        let far_train: Vec<f64> = thresholds.iter().map(|&t| train.below(t).1 as f64 / train.diff.len() as f64).collect();
        let t = val_threshold(&far_train, thresholds, far_target)?;
        let test_split = SortedSplit::new(&dist, issame, test.clone());
        let (v, f) = val_far(&test_split, t).map_err(degenerate(FoldPart::Test))?;
        val.push(v);
        far.push(f);
        threshold.push(t);
    }
    Ok(Val { val_mean: numpy_mean(&val), val_std: numpy_std(&val), far_mean: numpy_mean(&far), val, far, threshold })
}

// ---------------------------------------------------------------------------
// AUC and EER
// ---------------------------------------------------------------------------

/// `sklearn.metrics.auc(x, y)`: trapezoid area
/// ([`trapezoid`](super::numpy_compat::trapezoid)), with the sign flipped when
/// `x` is non-increasing; an error when `x` goes both ways.
pub fn auc(x: &[f64], y: &[f64]) -> Result<f64, MetricsError> {
    if x.len() != y.len() {
        return Err(MetricsError::LengthMismatch { what: "auc y", expected: x.len(), actual: y.len() });
    }
    if x.len() < 2 {
        return Err(MetricsError::TooFewPoints { what: "AUC", got: x.len() });
    }
    check_finite(x, "auc x")?;
    check_finite(y, "auc y")?;
    let dx: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let direction = if dx.iter().any(|&d| d < 0.0) {
        if dx.iter().all(|&d| d <= 0.0) {
            -1.0
        } else {
            return Err(MetricsError::NotMonotonic);
        }
    } else {
        1.0
    };
    Ok(direction * trapezoid(y, x)?)
}

/// Equal error rate of a ROC as `validate_on_lfw` computes it:
/// `brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)` with SciPy's default
/// tolerances. Fails where the reference raises, notably when `fpr` does not
/// reach 1 (the root-finder evaluates at `x = 1`, outside interp1d's range).
pub fn eer(fpr: &[f64], tpr: &[f64]) -> Result<f64, MetricsError> {
    if fpr.len() != tpr.len() {
        return Err(MetricsError::LengthMismatch { what: "eer tpr", expected: fpr.len(), actual: tpr.len() });
    }
    check_finite(fpr, "fpr")?;
    check_finite(tpr, "tpr")?;
    brentq(|x| Ok((1.0 - x) - interp1d_linear(x, fpr, tpr)?), 0.0, 1.0, BRENTQ_XTOL, BRENTQ_RTOL, BRENTQ_MAXITER)
}

// ---------------------------------------------------------------------------
// The whole protocol
// ---------------------------------------------------------------------------

/// The LFW protocol on `2N` embeddings (rows `2k`, `2k + 1` form pair `k`, as
/// `lfw.evaluate` takes them): accuracy and averaged ROC over the 0.01 grid,
/// VAL@FAR over the 0.001 grid, plus AUC and EER of the averaged ROC.
///
/// Errors: `dim == 0`, `embeddings.len() != 2 * issame.len() * dim`, fewer than
/// two folds or fewer pairs than folds, non-finite values, a zero-norm
/// embedding under the cosine metric, a fold part without same or without
/// different pairs ([`MetricsError::DegenerateFold`]). An EER that the
/// reference could not compute is stored as `NaN` (see [`eer`]).
pub fn evaluate(embeddings: &[f64], dim: usize, issame: &[bool], opts: &EvalOptions) -> Result<Evaluation, MetricsError> {
    let pairs = Pairs::new(embeddings, dim, issame)?;
    fold_ranges(pairs.len(), opts.nrof_folds)?;
    let metric = opts.distance_metric;
    let thresholds = roc_thresholds();
    let roc = calculate_roc(&thresholds, &pairs, opts.nrof_folds, metric, opts.subtract_mean)?;
    let val = calculate_val(&val_thresholds(), &pairs, opts.far_target, opts.nrof_folds, metric, opts.subtract_mean)?;
    let area = auc(&roc.fpr, &roc.tpr)?;
    let eer = eer(&roc.fpr, &roc.tpr).unwrap_or(f64::NAN);
    Ok(Evaluation {
        best_threshold_per_fold: roc.best_threshold_index.iter().map(|&i| thresholds[i]).collect(),
        accuracy_mean: numpy_mean(&roc.accuracy),
        accuracy_std: numpy_std(&roc.accuracy),
        accuracy_per_fold: roc.accuracy,
        thresholds,
        tpr: roc.tpr,
        fpr: roc.fpr,
        val_per_fold: val.val,
        far_per_fold: val.far,
        val_threshold_per_fold: val.threshold,
        val_mean: val.val_mean,
        val_std: val.val_std,
        far_mean: val.far_mean,
        auc: area,
        eer,
        distances: pairs.distances(metric)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interleaved 2-D pairs: the origin and `(r, 0)`, at squared Euclidean
    /// distance `r * r` (exact for the dyadic `r` used here).
    fn pairs_with_distances(root: &[f64]) -> Vec<f64> {
        root.iter().flat_map(|&r| [0.0, 0.0, r, 0.0]).collect()
    }

    #[test]
    fn metric_indices_round_trip() {
        for m in [DistanceMetric::SquaredEuclidean, DistanceMetric::ArccosCosine] {
            assert_eq!(DistanceMetric::from_index(m.index()), Ok(m));
        }
        assert_eq!(DistanceMetric::from_index(2), Err(MetricsError::UnknownDistanceMetric(2)));
        let o = EvalOptions::default();
        assert_eq!((o.nrof_folds, o.distance_metric, o.subtract_mean, o.far_target), (10, DistanceMetric::SquaredEuclidean, false, 1e-3));
    }

    #[test]
    fn thresholds_are_numpy_arange() {
        let roc = roc_thresholds();
        assert_eq!(roc.len(), 400);
        assert_eq!(roc[0], 0.0);
        assert_eq!(roc[25], 0.25);
        assert_eq!(roc[50], 0.5);
        assert_eq!(roc[100], 1.0);
        assert_eq!(roc[399], 3.99);
        let val = val_thresholds();
        assert_eq!(val.len(), 4000);
        assert_eq!(val[250], 0.25);
        assert_eq!(val[1000], 1.0);
        assert_eq!(val[3999], 3.999);
        // np.arange fills start + i*step, not repeated addition.
        assert_eq!(roc[7], 7.0 * 0.01);
        assert!(roc.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn fold_sizes_follow_kfold() {
        let f = fold_ranges(203, 10).unwrap();
        let sizes: Vec<usize> = f.iter().map(|r| r.len()).collect();
        assert_eq!(sizes, vec![21, 21, 21, 20, 20, 20, 20, 20, 20, 20]);
        assert_eq!(f[0], 0..21);
        assert_eq!(f[3], 63..83);
        assert_eq!(f[9].end, 203);
        assert!(f.windows(2).all(|w| w[0].end == w[1].start));
        let f = fold_ranges(6000, 10).unwrap();
        assert!(f.iter().all(|r| r.len() == 600));
        assert_eq!(fold_ranges(10, 10).unwrap().len(), 10);
        assert_eq!(fold_ranges(9, 10), Err(MetricsError::TooFewPairs { pairs: 9, folds: 10 }));
        assert_eq!(fold_ranges(9, 1), Err(MetricsError::TooFewFolds(1)));
    }

    #[test]
    fn distances_both_metrics() {
        let e1 = [1.0, 0.0, 0.0, 1.0, 3.0, 4.0];
        let e2 = [0.0, 1.0, 0.0, -1.0, 3.0, 4.0];
        let d = distances(&e1, &e2, 2, DistanceMetric::SquaredEuclidean).unwrap();
        assert_eq!(d, vec![2.0, 4.0, 0.0]);
        let d = distances(&e1, &e2, 2, DistanceMetric::ArccosCosine).unwrap();
        assert!((d[0] - 0.5).abs() < 1e-15);
        assert_eq!(d[1], 1.0);
        assert_eq!(d[2], 0.0);
    }

    #[test]
    fn cosine_clamps_rounding_past_one() {
        // Parallel vectors whose similarity rounds above 1: the reference's
        // arccos gives NaN; here the distance is 0.
        let mut found = false;
        for i in 1..2000 {
            let v = [0.1 * i as f64, 0.3, 0.7 / i as f64];
            let dot: f64 = v.iter().map(|x| x * x).sum();
            let n = dot.sqrt() * dot.sqrt();
            if dot / n > 1.0 {
                let d = distances(&v, &v, 3, DistanceMetric::ArccosCosine).unwrap();
                assert_eq!(d, vec![0.0]);
                found = true;
                break;
            }
        }
        assert!(found, "no vector with similarity rounding past 1 found");
        assert_eq!(distances(&[0.0, 0.0], &[1.0, 0.0], 2, DistanceMetric::ArccosCosine), Err(MetricsError::ZeroNorm { pair: 0 }));
    }

    #[test]
    fn prediction_is_strict() {
        let d = [0.25, 0.5, 0.5, 1.0];
        let same = [true, true, false, false];
        // At 0.5 only the 0.25 pair is predicted same.
        assert_eq!(calculate_accuracy(0.5, &d, &same), (0.5, 0.0, 0.75));
        assert_eq!(calculate_accuracy(0.51, &d, &same), (1.0, 0.5, 0.75));
        assert_eq!(calculate_accuracy(0.0, &d, &same), (0.0, 0.0, 0.5));
        assert_eq!(calculate_accuracy(0.3, &d, &[false; 4]), (0.0, 0.25, 0.75));
        assert_eq!(calculate_val_far(0.6, &d, &same), Some((1.0, 0.5)));
        assert_eq!(calculate_val_far(0.6, &d, &[true; 4]), None);
    }

    #[test]
    fn val_threshold_interpolates_after_the_last_far_at_or_below_target() {
        let t: Vec<f64> = (0..8).map(|i| i as f64 * 0.001).collect();
        // Run of FAR == target: the last of the run (index 4) and the next one.
        let far = [0.0, 0.0, 0.0, 0.001, 0.001, 0.002, 0.003, 0.004];
        let w = 1.0 / (0.002 - 0.001);
        let expected = 0.0 + t[4] * (0.0 + w * (0.002 - 0.001)) + t[5] * (w * (0.001 - 0.001));
        assert_eq!(val_threshold(&far, &t, 0.001).unwrap(), expected);
        assert!((expected - 0.004).abs() < 1e-15);
        // Target strictly inside a segment that follows a run of equal values.
        let far = [0.0, 0.0, 0.0005, 0.0005, 0.0005, 0.002, 0.003, 0.004];
        let got = val_threshold(&far, &t, 0.001).unwrap();
        assert!((got - (0.004 + (0.0005 / 0.0015) * 0.001)).abs() < 1e-15, "{got}");
        // Target below the first FAR that exceeds it, after zeros.
        let far = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.01, 0.02];
        let got = val_threshold(&far, &t, 0.001).unwrap();
        assert!((got - (0.005 + 0.1 * 0.001)).abs() < 1e-15, "{got}");
        // Largest FAR below the target: threshold 0.
        let far = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0009];
        assert_eq!(val_threshold(&far, &t, 0.001).unwrap(), 0.0);
        // Largest FAR equal to the target at the final threshold only: the
        // final segment gives (about) the final threshold.
        let far = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005, 0.001];
        assert!((val_threshold(&far, &t, 0.001).unwrap() - 0.007).abs() < 1e-15);
        // ... but a run of equal FAR at the end makes the B-spline vanish: 0.
        let far = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.001, 0.001];
        assert_eq!(val_threshold(&far, &t, 0.001).unwrap(), 0.0);
        // Target below every FAR: interp1d's range error.
        let far = [0.01; 8];
        assert!(matches!(val_threshold(&far, &t, 0.001), Err(MetricsError::FarTargetOutOfRange { .. })));
        assert!(val_threshold(&far[..3], &t, 0.001).is_err());
    }

    #[test]
    fn auc_trapezoid_and_direction() {
        assert_eq!(auc(&[0.0, 0.5, 1.0], &[0.0, 1.0, 1.0]).unwrap(), 0.75);
        assert_eq!(auc(&[1.0, 0.5, 0.0], &[1.0, 1.0, 0.0]).unwrap(), 0.75);
        assert_eq!(auc(&[0.0, 0.0, 1.0], &[0.0, 1.0, 1.0]).unwrap(), 1.0);
        assert_eq!(auc(&[0.0, 1.0, 0.5], &[0.0, 1.0, 1.0]), Err(MetricsError::NotMonotonic));
        assert!(auc(&[0.0], &[0.0]).is_err());
    }

    #[test]
    fn eer_of_simple_curves() {
        // Chance ROC: EER 0.5.
        let x: Vec<f64> = (0..=10).map(|i| i as f64 / 10.0).collect();
        assert!((eer(&x, &x).unwrap() - 0.5).abs() < 1e-12);
        // Perfect ROC: tpr reaches 1 while fpr is still 0.
        assert_eq!(eer(&[0.0, 0.0, 0.0, 1.0], &[0.0, 0.5, 1.0, 1.0]).unwrap(), 0.0);
        // FPR never reaching 1: the reference's interp1d raises at x = 1.
        assert!(matches!(eer(&[0.0, 0.5], &[0.0, 1.0]), Err(MetricsError::OutOfInterpolationRange { .. })));
    }

    fn toy_set(n: usize, flip_every: usize) -> (Vec<f64>, Vec<bool>) {
        // Same pairs at squared distance 0.25 (0.5^2), different at 1.0, with
        // every flip_every-th label inverted.
        let mut roots = Vec::new();
        let mut same = Vec::new();
        for k in 0..n {
            let s = k % 2 == 0;
            roots.push(if s { 0.5 } else { 1.0 });
            same.push(if flip_every > 0 && k % flip_every == 0 { !s } else { s });
        }
        (pairs_with_distances(&roots), same)
    }

    #[test]
    fn evaluate_on_exact_distances() {
        let (emb, same) = toy_set(40, 0);
        let ev = evaluate(&emb, 2, &same, &EvalOptions::default()).unwrap();
        assert_eq!(ev.distances[..2], [0.25, 1.0]);
        assert_eq!(ev.accuracy_per_fold, vec![1.0; 10]);
        // Training accuracy is 1 first for 0.25 < t <= 1.0: the first such
        // threshold is 0.26 (0.25 itself does not accept the 0.25 pairs).
        assert_eq!(ev.best_threshold_per_fold, vec![0.26; 10]);
        assert_eq!(ev.accuracy_mean, 1.0);
        assert_eq!(ev.accuracy_std, 0.0);
        assert_eq!(ev.auc, 1.0);
        assert_eq!(ev.eer, 0.0);
        // FAR is 0 up to 1.0 and 1 after: threshold between 1.0 and 1.001.
        assert!(ev.val_threshold_per_fold.iter().all(|&t| t > 1.0 && t < 1.001));
        assert_eq!(ev.val_mean, 1.0);
        assert_eq!(ev.far_mean, 1.0);
        assert_eq!(ev.tpr.len(), 400);
        assert_eq!(ev.tpr[25], 0.0);
        assert_eq!(ev.tpr[26], 1.0);
        assert_eq!(ev.fpr[100], 0.0);
        assert_eq!(ev.fpr[101], 1.0);
    }

    #[test]
    fn mean_subtraction_uses_training_pairs_only() {
        let (emb, same) = toy_set(40, 7);
        let pairs = Pairs::new(&emb, 2, &same).unwrap();
        let m = pairs.train_mean(&(0..4));
        // 36 training pairs: first rows all (0,0), second rows (r, 0).
        let expected: f64 = (4..40).map(|k| if k % 2 == 0 { 0.5 } else { 1.0 }).sum::<f64>() / 72.0;
        assert!((m[0] - expected).abs() < 1e-15);
        assert_eq!(m[1], 0.0);
        // Translation does not change Euclidean distances.
        let opts = EvalOptions { subtract_mean: true, ..EvalOptions::default() };
        let a = evaluate(&emb, 2, &same, &opts).unwrap();
        let b = evaluate(&emb, 2, &same, &EvalOptions::default()).unwrap();
        assert_eq!(a.accuracy_per_fold, b.accuracy_per_fold);
    }

    #[test]
    fn malformed_input_is_rejected() {
        let (emb, same) = toy_set(40, 0);
        let o = EvalOptions::default();
        assert_eq!(evaluate(&emb, 0, &same, &o).unwrap_err(), MetricsError::ZeroDimension);
        assert!(matches!(evaluate(&emb[1..], 2, &same, &o), Err(MetricsError::LengthMismatch { .. })));
        assert!(matches!(evaluate(&emb, 2, &same[1..], &o), Err(MetricsError::LengthMismatch { .. })));
        assert_eq!(evaluate(&emb[..36], 2, &same[..9], &o).unwrap_err(), MetricsError::TooFewPairs { pairs: 9, folds: 10 });
        let mut bad = emb.clone();
        bad[5] = f64::NAN;
        assert_eq!(evaluate(&bad, 2, &same, &o).unwrap_err(), MetricsError::NonFinite { what: "embeddings", index: 5 });
        let o1 = EvalOptions { nrof_folds: 1, ..EvalOptions::default() };
        assert_eq!(evaluate(&emb, 2, &same, &o1).unwrap_err(), MetricsError::TooFewFolds(1));
        let nan_target = EvalOptions { far_target: f64::NAN, ..EvalOptions::default() };
        assert!(evaluate(&emb, 2, &same, &nan_target).is_err());
    }

    #[test]
    fn folds_without_a_pair_kind_are_named() {
        // 40 pairs, 10 folds of 4: labels of fold 3 (pairs 12..16) all "same".
        let (emb, mut same) = toy_set(40, 0);
        for s in &mut same[12..16] {
            *s = true;
        }
        assert_eq!(
            evaluate(&emb, 2, &same, &EvalOptions::default()).unwrap_err(),
            MetricsError::DegenerateFold { fold: 3, part: FoldPart::Test, missing: PairKind::Different }
        );
        // ROC alone still works (the reference guards its rates there).
        let pairs = Pairs::new(&emb, 2, &same).unwrap();
        assert!(calculate_roc(&roc_thresholds(), &pairs, 10, DistanceMetric::SquaredEuclidean, false).is_ok());
        // No different pair at all: the training part of fold 0 lacks them first.
        let all_same = vec![true; 40];
        assert_eq!(
            evaluate(&emb, 2, &all_same, &EvalOptions::default()).unwrap_err(),
            MetricsError::DegenerateFold { fold: 0, part: FoldPart::Train, missing: PairKind::Different }
        );
        let msg = MetricsError::DegenerateFold { fold: 3, part: FoldPart::Test, missing: PairKind::Same }.to_string();
        assert!(msg.contains("fold 3") && msg.contains("test"), "{msg}");
    }

    #[test]
    fn unreachable_fpr_gives_nan_eer_not_an_error() {
        // Different pairs at squared distance 25 (> 3.99): FPR stays 0, the
        // reference's EER root-find raises, VAL threshold falls back to 0.
        let roots: Vec<f64> = (0..20).map(|k| if k % 2 == 0 { 0.5 } else { 5.0 }).collect();
        let emb = pairs_with_distances(&roots);
        let same: Vec<bool> = (0..20).map(|k| k % 2 == 0).collect();
        let ev = evaluate(&emb, 2, &same, &EvalOptions::default()).unwrap();
        assert!(ev.eer.is_nan());
        assert_eq!(ev.val_threshold_per_fold, vec![0.0; 10]);
        assert_eq!(ev.val_mean, 0.0);
        assert_eq!(ev.accuracy_mean, 1.0);
    }
}
