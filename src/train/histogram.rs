//! Histograms of values as TensorBoard shows them (`HistogramProto`), with TensorFlow's
//! default buckets: the histogram `tf.summary.histogram` writes in the reference's
//! `--log_histograms` runs (`tensorflow/core/lib/histogram/histogram.cc`).
//!
//! Bucket limits are the right edges `-DBL_MAX, ..., -1e-12, 0, 1e-12, 1.1e-12, ...,
//! ~1e20, DBL_MAX`: powers of 1.1 from 1e-12 up to 1e20 on each side of zero. A value `x`
//! counts in the first bucket whose limit is greater than `x`. Encoded as TensorFlow encodes
//! it: runs of empty buckets collapse into one (the limit of the run's last), so a histogram
//! of a million weights is a few hundred pairs.
//!
//! Deliberate difference: non-finite values are left out (TensorFlow's histogram op refuses
//! the whole tensor); `num` counts the values kept.

use std::sync::OnceLock;

/// `HistogramProto`: summary statistics and (limit, count) pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    /// Right edge of each bucket, increasing.
    pub bucket_limit: Vec<f64>,
    /// Values in each bucket.
    pub bucket: Vec<f64>,
}

/// TensorFlow's default bucket limits (`InitDefaultBuckets`), 1,551 of them.
pub fn default_bucket_limits() -> &'static [f64] {
    static LIMITS: OnceLock<Vec<f64>> = OnceLock::new();
    LIMITS.get_or_init(|| {
        let mut pos = Vec::new();
        let mut v = 1e-12f64;
        while v < 1e20 {
            pos.push(v);
            v *= 1.1;
        }
        pos.push(f64::MAX);
        let mut limits: Vec<f64> = pos.iter().rev().map(|v| -v).collect();
        limits.push(0.0);
        limits.extend(pos);
        limits
    })
}

impl Histogram {
    /// The histogram of `values` (non-finite ones left out).
    pub fn of(values: &[f32]) -> Histogram {
        let limits = default_bucket_limits();
        let mut counts = vec![0f64; limits.len()];
        let (mut min, mut max, mut num, mut sum, mut sum_squares) = (f64::MAX, -f64::MAX, 0f64, 0f64, 0f64);
        for &v in values {
            if !v.is_finite() {
                continue;
            }
            let v = v as f64;
            min = min.min(v);
            max = max.max(v);
            num += 1.0;
            sum += v;
            sum_squares += v * v;
            // the first limit greater than v (std::upper_bound)
            let b = limits.partition_point(|&l| l <= v).min(limits.len() - 1);
            counts[b] += 1.0;
        }
        // TensorFlow's EncodeToProto(preserve_zero_buckets = false)
        let (mut bucket_limit, mut bucket) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < counts.len() {
            let (mut end, mut count) = (limits[i], counts[i]);
            i += 1;
            if count <= 0.0 {
                while i < counts.len() && counts[i] <= 0.0 {
                    end = limits[i];
                    count = counts[i];
                    i += 1;
                }
            }
            bucket_limit.push(end);
            bucket.push(count);
        }
        if num == 0.0 {
            (min, max) = (0.0, 0.0);
        }
        Histogram { min, max, num, sum, sum_squares, bucket_limit, bucket }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_tensorflows() {
        let l = default_bucket_limits();
        assert_eq!(l.len(), 1551);
        assert_eq!(l[0], -f64::MAX);
        assert_eq!(l[775], 0.0);
        assert_eq!(l[776], 1e-12);
        assert_eq!(*l.last().unwrap(), f64::MAX);
        assert!(l.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn counts_sums_and_collapsed_empty_runs() {
        let h = Histogram::of(&[0.0, 1.0, 1.0, -2.5, f32::NAN, 3.0]);
        assert_eq!((h.min, h.max, h.num), (-2.5, 3.0, 5.0));
        assert_eq!(h.sum, 2.5);
        assert_eq!(h.sum_squares, 1.0 + 1.0 + 6.25 + 9.0);
        assert_eq!(h.bucket.iter().sum::<f64>(), 5.0);
        // each value lies below its bucket's limit and at or above the previous one
        let l = default_bucket_limits();
        for (v, n) in [(-2.5, 1.0), (0.0, 1.0), (1.0, 2.0), (3.0, 1.0)] {
            let k = h.bucket_limit.iter().position(|&b| b > v).unwrap();
            assert_eq!(h.bucket[k], n, "{v}");
            let i = l.iter().position(|&b| b == h.bucket_limit[k]).unwrap();
            assert!(l[i - 1] <= v);
        }
        // empty runs between the values are one pair each: few pairs in all
        assert!(h.bucket.len() <= 9, "{:?}", h.bucket);
        assert_eq!(h.bucket_limit.last(), Some(&f64::MAX));
        assert!(h.bucket_limit.windows(2).all(|w| w[0] < w[1]));
        let empty = Histogram::of(&[]);
        assert_eq!((empty.num, empty.bucket.len(), empty.bucket_limit[0]), (0.0, 1, f64::MAX));
    }
}
