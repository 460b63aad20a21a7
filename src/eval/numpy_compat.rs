//! NumPy / SciPy routines that the reference's LFW metrics call, reproduced
//! operation for operation so that [`super::metrics`] gets the reference's
//! numbers bit for bit (checked through the whole protocol by
//! `tests/metrics_parity.rs`, whose fixtures come from the real NumPy / SciPy
//! via `tools/make_metric_fixtures.py`, and routine by routine by the unit tests
//! below). Nothing here knows about the protocol (thresholds, folds, pairs).
//!
//! * [`numpy_sum`]: `np.sum` (`np.add.reduce`) of a contiguous 1-D `float64`
//!   array, i.e. NumPy's pairwise summation: a plain loop under 8 values, 8
//!   interleaved accumulators up to `PW_BLOCKSIZE` (128) values, and above that
//!   a split near the middle (at a multiple of 8) with each half summed the same
//!   way. Bit for bit. NumPy sums pairwise only along a contiguous axis; its
//!   reductions down axis 0 of a 2-D array are plain sequential sums, so those
//!   are written as plain loops by the callers, not with this.
//! * [`numpy_mean`]: `np.mean` of a 1-D array ([`numpy_sum`] divided by the
//!   count; `NaN` for an empty array). Bit for bit.
//! * [`numpy_std`]: `np.std` of a 1-D array with `ddof = 0` (mean, squared
//!   deviations, their [`numpy_sum`] over the count, square root). Bit for bit.
//! * [`trapezoid`]: `np.trapezoid(y, x)` (`np.trapz` before NumPy 2.0) of 1-D
//!   arrays, the area `sklearn.metrics.auc` returns (before its sign): terms
//!   `(x[i+1] - x[i]) * (y[i+1] + y[i]) / 2.0` added with [`numpy_sum`]. Bit for
//!   bit.
//! * [`interp1d_linear`]: `scipy.interpolate.interp1d(xp, fp)(x)` (kind
//!   `'linear'`, which evaluates with `np.interp` on the stably sorted data),
//!   including `np.interp`'s fallbacks where the slope formula gives `NaN`, and
//!   interp1d's `bounds_error` outside the data's range. Bit for bit.
//! * [`interp1d_slinear`]: `interp1d(xp, fp, kind='slinear')(x)` as SciPy 1.x
//!   computed it: the degree-1 B-spline with knots `[x0, x..., x_last]` over the
//!   stably sorted data, evaluated in de Boor's operation order. Current SciPy
//!   refuses repeated `x` values there, which the reference's FAR arrays have;
//!   this keeps the old behaviour, quirks included (see the function). Bit for
//!   bit with the B-spline evaluator the fixture script uses.
//! * [`brentq`] with [`BRENTQ_XTOL`], [`BRENTQ_RTOL`], [`BRENTQ_MAXITER`]:
//!   `scipy.optimize.brentq` with SciPy's default tolerances, following SciPy's
//!   C implementation step for step. Bit for bit.
//!
//! Errors are [`MetricsError`] variants: [`brentq`] passes on the errors of its
//! function, which in the protocol is [`interp1d_linear`].

use super::metrics::MetricsError;

/// `scipy.optimize.brentq`'s default absolute tolerance.
pub const BRENTQ_XTOL: f64 = 2e-12;
/// `scipy.optimize.brentq`'s default relative tolerance (`4 * eps`).
pub const BRENTQ_RTOL: f64 = 4.0 * f64::EPSILON;
/// `scipy.optimize.brentq`'s default iteration limit.
pub const BRENTQ_MAXITER: usize = 100;

/// NumPy's pairwise-summation block size (`PW_BLOCKSIZE`).
const PW_BLOCKSIZE: usize = 128;

// ---------------------------------------------------------------------------
// Sums, mean, standard deviation, trapezoid rule
// ---------------------------------------------------------------------------

fn pairwise(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 8 {
        let mut res = -0.0;
        for &v in values {
            res += v;
        }
        res
    } else if n <= PW_BLOCKSIZE {
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += values[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &values[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise(&values[..n2]) + pairwise(&values[n2..])
    }
}

/// The sum of a contiguous 1-D array as `np.sum` computes it: the reduction
/// starts from `0.0` and adds NumPy's pairwise sum of the values (plain loop
/// under 8 values, 8 interleaved accumulators up to 128, halving above).
pub fn numpy_sum(values: &[f64]) -> f64 {
    0.0 + pairwise(values)
}

/// `np.mean` of a 1-D array (`NaN` for an empty one).
pub fn numpy_mean(values: &[f64]) -> f64 {
    numpy_sum(values) / values.len() as f64
}

/// `np.std` of a 1-D array: population standard deviation (`ddof = 0`).
pub fn numpy_std(values: &[f64]) -> f64 {
    let mean = numpy_mean(values);
    let squares: Vec<f64> = values
        .iter()
        .map(|&v| {
            let d = v - mean;
            d * d
        })
        .collect();
    (numpy_sum(&squares) / values.len() as f64).sqrt()
}

/// `np.trapezoid(y, x)` (`np.trapz` before NumPy 2.0) of 1-D arrays:
/// `sum(diff(x) * (y[1:] + y[:-1]) / 2.0)`, the sum taken as [`numpy_sum`]
/// does. Fewer than two points give `0.0`, as in NumPy; `x` and `y` of
/// different lengths are an error.
pub fn trapezoid(y: &[f64], x: &[f64]) -> Result<f64, MetricsError> {
    if x.len() != y.len() {
        return Err(MetricsError::LengthMismatch { what: "trapezoid y", expected: x.len(), actual: y.len() });
    }
    let terms: Vec<f64> = x.windows(2).zip(y.windows(2)).map(|(u, w)| (u[1] - u[0]) * (w[1] + w[0]) / 2.0).collect();
    Ok(numpy_sum(&terms))
}

// ---------------------------------------------------------------------------
// Interpolation
// ---------------------------------------------------------------------------

/// Piecewise-linear interpolation as `scipy.interpolate.interp1d(xp, fp)(x)`
/// (kind 'linear', which hands 1-D float data to `np.interp`): the data are
/// stably sorted by `xp`; at an `x` equal to a run of repeated `xp` values the
/// `fp` of the LAST of them is returned; `x` outside `[min xp, max xp]` is an
/// error (interp1d's `bounds_error`).
pub fn interp1d_linear(x: f64, xp: &[f64], fp: &[f64]) -> Result<f64, MetricsError> {
    if xp.len() != fp.len() {
        return Err(MetricsError::LengthMismatch { what: "interp fp", expected: xp.len(), actual: fp.len() });
    }
    if xp.is_empty() {
        return Err(MetricsError::TooFewPoints { what: "interpolation", got: 0 });
    }
    let sorted = xp.windows(2).all(|w| w[0] <= w[1]);
    let (xs, ys): (Vec<f64>, Vec<f64>) = if sorted {
        (xp.to_vec(), fp.to_vec())
    } else {
        let mut order: Vec<usize> = (0..xp.len()).collect();
        order.sort_by(|&a, &b| xp[a].total_cmp(&xp[b]));
        order.iter().map(|&i| (xp[i], fp[i])).unzip()
    };
    let n = xs.len();
    if x.is_nan() {
        return Ok(x);
    }
    if x < xs[0] || x > xs[n - 1] {
        return Err(MetricsError::OutOfInterpolationRange { x, min: xs[0], max: xs[n - 1] });
    }
    let j = xs.partition_point(|&v| v <= x) - 1;
    if j == n - 1 || xs[j] == x {
        return Ok(ys[j]);
    }
    let slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]);
    let mut r = slope * (x - xs[j]) + ys[j];
    if r.is_nan() {
        r = slope * (x - xs[j + 1]) + ys[j + 1];
        if r.is_nan() && ys[j] == ys[j + 1] {
            r = ys[j];
        }
    }
    Ok(r)
}

/// `scipy.interpolate.interp1d(xp, fp, kind='slinear')(x)` as SciPy 1.x
/// computed it: a degree-1 B-spline with knots `[x0, x..., x_last]` over the
/// data stably sorted by `xp` (interp1d uses a mergesort; repeated `xp` values
/// are kept, where current SciPy refuses them). Evaluated at `x` it gives:
///
/// * with `p` the LAST sorted index whose `xp` is `<= x` and `p` not the final
///   one: linear interpolation between `(xp[p], fp[p])` and
///   `(xp[p+1], fp[p+1])`, computed as de Boor does
///   (`w = 1/(xb-xa)`, `fp[p]*(w*(xb-x)) + fp[p+1]*(w*(x-xa))`);
/// * if `p` is the final index (`x` equals the largest `xp`), the same formula
///   on the final segment `[p-1, p]`, which gives about `fp[p]`; but when
///   `xp[p-1] == xp[p]` too (a run of equal values at the end) the B-spline's
///   basis vanishes and the result is exactly 0, as in SciPy 1.x;
/// * `x` outside `[min xp, max xp]` is an error (interp1d's `bounds_error`);
///   a `NaN` `x` gives `NaN`.
pub fn interp1d_slinear(x: f64, xp: &[f64], fp: &[f64]) -> Result<f64, MetricsError> {
    if xp.len() != fp.len() {
        return Err(MetricsError::LengthMismatch { what: "interp fp", expected: xp.len(), actual: fp.len() });
    }
    let m = xp.len();
    if m < 2 {
        return Err(MetricsError::TooFewPoints { what: "slinear interpolation", got: m });
    }
    // Stable sort by x; data sorted already (FAR over increasing thresholds)
    // keep their order.
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| xp[a].total_cmp(&xp[b]));
    let xs: Vec<f64> = order.iter().map(|&i| xp[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| fp[i]).collect();
    if x.is_nan() {
        return Ok(x);
    }
    // `!(x >= xs[0])` rather than `x < xs[0]`: a NaN among the smallest xp is
    // out of range too, so the search below always finds an index.
    if !(x >= xs[0]) || x > xs[m - 1] {
        return Err(MetricsError::OutOfInterpolationRange { x, min: xs[0], max: xs[m - 1] });
    }
    let p = xs.partition_point(|&v| v <= x) - 1;
    let lo = if p == m - 1 { m - 2 } else { p };
    let (xa, xb) = (xs[lo], xs[lo + 1]);
    if xa == xb {
        return Ok(0.0);
    }
    let w = 1.0 / (xb - xa);
    let h0 = 0.0 + w * (xb - x);
    let h1 = w * (x - xa);
    let mut out = 0.0;
    out += ys[lo] * h0;
    out += ys[lo + 1] * h1;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Root finding
// ---------------------------------------------------------------------------

/// `scipy.optimize.brentq(f, a, b, xtol, rtol, maxiter)`: Brent's method as
/// SciPy's C implementation performs it, step for step. A NaN function value,
/// no sign change between `f(a)` and `f(b)`, or no convergence is an error, as
/// in SciPy; errors of `f` are passed on.
pub fn brentq<F>(mut f: F, a: f64, b: f64, xtol: f64, rtol: f64, maxiter: usize) -> Result<f64, MetricsError>
where
    F: FnMut(f64) -> Result<f64, MetricsError>,
{
    let mut call = |x: f64| -> Result<f64, MetricsError> {
        let v = f(x)?;
        if v.is_nan() {
            Err(MetricsError::NanFunctionValue(x))
        } else {
            Ok(v)
        }
    };
    let (mut xpre, mut xcur) = (a, b);
    let (mut xblk, mut fblk, mut spre, mut scur) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut fpre = call(xpre)?;
    let mut fcur = call(xcur)?;
    if fpre * fcur > 0.0 {
        return Err(MetricsError::NoSignChange);
    }
    if fpre == 0.0 {
        return Ok(xpre);
    }
    if fcur == 0.0 {
        return Ok(xcur);
    }
    for _ in 0..maxiter {
        if fpre * fcur < 0.0 {
            xblk = xpre;
            fblk = fpre;
            scur = xcur - xpre;
            spre = scur;
        }
        if fblk.abs() < fcur.abs() {
            xpre = xcur;
            xcur = xblk;
            xblk = xpre;
            fpre = fcur;
            fcur = fblk;
            fblk = fpre;
        }
        let delta = (xtol + rtol * xcur.abs()) / 2.0;
        let sbis = (xblk - xcur) / 2.0;
        if fcur == 0.0 || sbis.abs() < delta {
            return Ok(xcur);
        }
        if spre.abs() > delta && fcur.abs() < fpre.abs() {
            let stry = if xpre == xblk {
                // interpolate
                -fcur * (xcur - xpre) / (fcur - fpre)
            } else {
                // extrapolate
                let dpre = (fpre - fcur) / (xpre - xcur);
                let dblk = (fblk - fcur) / (xblk - xcur);
                -fcur * (fblk * dblk - fpre * dpre) / (dblk * dpre * (fblk - fpre))
            };
            if 2.0 * stry.abs() < spre.abs().min(3.0 * sbis.abs() - delta) {
                spre = scur;
                scur = stry;
            } else {
                spre = sbis;
                scur = sbis;
            }
        } else {
            spre = sbis;
            scur = sbis;
        }
        xpre = xcur;
        fpre = fcur;
        if scur.abs() > delta {
            xcur += scur;
        } else {
            xcur += if sbis > 0.0 { delta } else { -delta };
        }
        fcur = call(xcur)?;
    }
    Err(MetricsError::NoConvergence(maxiter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_sum_uses_pairwise_order() {
        // Values checked against numpy 2.4: np.sum of these arrays.
        let a = [1e16, 1.0, -1e16, 1.0, 3.0, 1e-3, 2.5, 7.0, 1.0];
        assert_eq!(numpy_sum(&a), 13.501);
        assert_eq!(numpy_sum(&a[..7]), 6.501);
        let b: Vec<f64> = (1..200).map(|i| i as f64 * 0.1).collect();
        assert_eq!(numpy_sum(&b), 1990.0);
        assert_eq!(b.iter().sum::<f64>(), 1990.0000000000002);
        let acc = [0.9, 0.95, 0.925, 1.0, 0.875, 0.9, 0.95, 0.925, 1.0, 0.8];
        assert_eq!(numpy_mean(&acc), 0.9225000000000001);
        assert_eq!(numpy_std(&acc), 0.05640257086339237);
    }

    #[test]
    fn trapezoid_of_simple_curves() {
        assert_eq!(trapezoid(&[0.0, 1.0, 1.0], &[0.0, 0.5, 1.0]), Ok(0.75));
        // Decreasing x gives a negative area (auc flips its sign).
        assert_eq!(trapezoid(&[1.0, 1.0, 0.0], &[1.0, 0.5, 0.0]), Ok(-0.75));
        assert_eq!(trapezoid(&[3.0], &[1.0]), Ok(0.0));
        assert_eq!(trapezoid(&[], &[]), Ok(0.0));
        assert!(matches!(trapezoid(&[0.0], &[0.0, 1.0]), Err(MetricsError::LengthMismatch { .. })));
    }

    #[test]
    fn interp_takes_the_last_of_repeated_x() {
        let xp = [0.0, 0.0, 0.0, 0.1, 0.1, 0.5, 1.0, 1.0];
        let fp = [0.0, 0.2, 0.5, 0.6, 0.7, 0.9, 0.95, 1.0];
        // Values checked against scipy 1.17 interp1d(xp, fp).
        assert_eq!(interp1d_linear(0.0, &xp, &fp).unwrap(), 0.5);
        assert_eq!(interp1d_linear(0.1, &xp, &fp).unwrap(), 0.7);
        assert_eq!(interp1d_linear(0.3, &xp, &fp).unwrap(), 0.7999999999999999);
        assert_eq!(interp1d_linear(1.0, &xp, &fp).unwrap(), 1.0);
        assert!(matches!(interp1d_linear(1.5, &xp, &fp), Err(MetricsError::OutOfInterpolationRange { .. })));
    }

    #[test]
    fn slinear_follows_the_degree_one_bspline() {
        let xp = [0.0, 0.0, 0.25, 0.25, 0.5, 1.0, 1.0];
        let fp = [0.0, 0.2, 0.5, 0.6, 0.7, 0.9, 1.0];
        // Interior: from the last of the repeated 0.25 values to 0.5, in de Boor's order.
        let w = 1.0 / (0.5 - 0.25);
        let expected = 0.0 + 0.6 * (0.0 + w * (0.5 - 0.375)) + 0.7 * (w * (0.375 - 0.25));
        assert_eq!(interp1d_slinear(0.375, &xp, &fp), Ok(expected));
        // At a repeated value: the segment that starts at the last of them.
        assert_eq!(interp1d_slinear(0.25, &xp, &fp), Ok(0.6));
        // At the largest x, repeated: the degenerate final segment gives 0.
        assert_eq!(interp1d_slinear(1.0, &xp, &fp), Ok(0.0));
        // ... and not repeated: about the final value.
        assert_eq!(interp1d_slinear(1.0, &xp[..6], &fp[..6]), Ok(0.9));
        // Unsorted data are sorted (stably) first.
        assert_eq!(interp1d_slinear(0.25, &[0.5, 0.0], &[1.0, 0.0]), Ok(0.5));
        assert!(interp1d_slinear(f64::NAN, &xp, &fp).unwrap().is_nan());
        assert!(matches!(interp1d_slinear(-0.1, &xp, &fp), Err(MetricsError::OutOfInterpolationRange { .. })));
        assert!(matches!(interp1d_slinear(1.5, &xp, &fp), Err(MetricsError::OutOfInterpolationRange { .. })));
        assert!(matches!(interp1d_slinear(0.0, &xp[..1], &fp[..1]), Err(MetricsError::TooFewPoints { .. })));
    }

    #[test]
    fn brentq_finds_roots_like_scipy() {
        let r = brentq(|x| Ok(x * x - 2.0), 0.0, 2.0, BRENTQ_XTOL, BRENTQ_RTOL, BRENTQ_MAXITER).unwrap();
        assert!((r - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(brentq(|x| Ok(x - 0.0), 0.0, 1.0, 2e-12, BRENTQ_RTOL, 100), Ok(0.0));
        assert_eq!(brentq(|x| Ok(x + 1.0), 0.0, 1.0, 2e-12, BRENTQ_RTOL, 100), Err(MetricsError::NoSignChange));
        assert_eq!(brentq(|_| Ok(f64::NAN), 0.0, 1.0, 2e-12, BRENTQ_RTOL, 100), Err(MetricsError::NanFunctionValue(0.0)));
        assert_eq!(brentq(|x| Ok(x - 0.3), 0.0, 1.0, 2e-12, BRENTQ_RTOL, 1), Err(MetricsError::NoConvergence(1)));
    }
}
