//! Small shared helpers: snake_case command-line flags, atomic file output, the cache folder
//! and its paths, the CPU a measurement ran on, the precision of matrix products, progress bars, the median of timings.

pub mod args;
pub mod atomic;
pub mod cache;
pub mod cpu;
pub mod device;
pub mod devices;
pub mod precision;
pub mod progress;
pub mod stop;
pub mod wheel;

/// Median of a list of timings (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}
