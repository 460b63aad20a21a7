//! `np.argsort` with its default `kind='quicksort'`, tie for tie.
//!
//! The reference's NMS orders its candidates with `np.argsort(s)` and takes the *last* index
//! first. Boxes whose scores are exactly equal (P-Net's softmax saturates at 0.99999988 on
//! large, sharp faces) therefore come out in whatever order NumPy's unstable sort leaves them,
//! and that order decides which box survives. [`argsort_like_numpy`] reproduces that order.
//!
//! What it follows is the classic NumPy 1.x introsort for floats (`aquicksort` in
//! `npysort/quicksort`), the path every NumPy before 1.25 takes for `argsort` on any CPU:
//!
//! - the work list starts as `0, 1, …, n-1`;
//! - a part with more than 16 elements is partitioned around the median of its first, middle
//!   and last elements (those three are put in order first, the pivot is parked next to the
//!   end, and the two scans stop on elements equal to the pivot, so ties are swapped);
//!   the larger side is put on a stack and the smaller one is worked on at once;
//! - a part of at most 16 elements gets an insertion sort (shifting only past strictly
//!   greater elements);
//! - each partition costs one unit of a depth budget of `2 * floor(log2 n)`; a part taken from
//!   the stack with an exhausted budget is heap-sorted instead (1-based binary heap, sift-down
//!   that prefers the right child only when it is strictly greater);
//! - "less" puts NaN after every number: `a < b || (b != b && a == a)`.
//!
//! The reference sorts a float64 column (P-Net's float32 scores are widened when stacked with
//! the float64 box corners); widening keeps order and equality, so the result is the same
//! for `f32` and `f64` scores. NumPy 1.25 and later use x86-simd-sort for `argsort` on AVX-512
//! CPUs (2.0 and later on AVX2 CPUs too), which orders ties differently; the reference's era
//! (NumPy 1.x of 2017-2018) is the classic path. Checked against NumPy 1.24.4's `np.argsort`
//! by `tests/fixtures/mtcnn/argsort.json` (made by `tools/make_argsort_fixture.py`).

/// NumPy's float ordering: a NaN is greater than every number, and NaNs are equal.
#[inline]
fn less<T: PartialOrd>(a: T, b: T) -> bool {
    #[allow(clippy::eq_op)]
    let (a_is_num, b_is_nan) = (a == a, b != b);
    a < b || (b_is_nan && a_is_num)
}

/// What [`argsort_impl`] did, for tests of the paths it takes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortPaths {
    /// Number of quicksort partitions.
    pub partitions: usize,
    /// Number of parts heap-sorted because the depth budget ran out.
    pub heapsorts: usize,
}

/// The indices that sort `values` ascending, in exactly the order NumPy 1.x's
/// `np.argsort(values)` (default quicksort) returns them, ties included; NaNs go last.
pub fn argsort_like_numpy<T: PartialOrd + Copy>(values: &[T]) -> Vec<usize> {
    argsort_impl(values, &mut SortPaths::default())
}

/// Parts of at most this many elements plus one are insertion-sorted (NumPy's `SMALL_QUICKSORT`).
const SMALL: usize = 15;

pub(crate) fn argsort_impl<T: PartialOrd + Copy>(v: &[T], paths: &mut SortPaths) -> Vec<usize> {
    let n = v.len();
    let mut idx: Vec<usize> = (0..n).collect();
    if n < 2 {
        return idx;
    }
    let key = |idx: &[usize], p: usize| v[idx[p]];
    // parts still to sort, inclusive bounds, with the depth budget they carry
    let mut stack: Vec<(usize, usize, i64)> = Vec::new();
    let (mut lo, mut hi) = (0usize, n - 1);
    let mut budget = 2 * i64::from(n.ilog2());
    loop {
        if budget < 0 {
            paths.heapsorts += 1;
            heapsort(v, &mut idx[lo..=hi]);
        } else {
            while hi - lo > SMALL {
                paths.partitions += 1;
                let mid = lo + ((hi - lo) >> 1);
                if less(key(&idx, mid), key(&idx, lo)) {
                    idx.swap(mid, lo);
                }
                if less(key(&idx, hi), key(&idx, mid)) {
                    idx.swap(hi, mid);
                }
                if less(key(&idx, mid), key(&idx, lo)) {
                    idx.swap(mid, lo);
                }
                let pivot = key(&idx, mid);
                idx.swap(mid, hi - 1);
                // the first element is <= pivot and the pivot sits at hi - 1: both scans stop
                let (mut i, mut j) = (lo, hi - 1);
                loop {
                    i += 1;
                    while less(key(&idx, i), pivot) {
                        i += 1;
                    }
                    j -= 1;
                    while less(pivot, key(&idx, j)) {
                        j -= 1;
                    }
                    if i >= j {
                        break;
                    }
                    idx.swap(i, j);
                }
                idx.swap(i, hi - 1);
                budget -= 1;
                // the larger side waits on the stack; go on with the smaller one
                if i - lo < hi - i {
                    stack.push((i + 1, hi, budget));
                    hi = i - 1;
                } else {
                    stack.push((lo, i - 1, budget));
                    lo = i + 1;
                }
            }
            // insertion sort of idx[lo..=hi] (also when hi < lo: nothing to do)
            for p in lo + 1..=hi {
                let item = idx[p];
                let val = v[item];
                let mut q = p;
                while q > lo && less(val, v[idx[q - 1]]) {
                    idx[q] = idx[q - 1];
                    q -= 1;
                }
                idx[q] = item;
            }
        }
        match stack.pop() {
            Some((l, h, b)) => (lo, hi, budget) = (l, h, b),
            None => break,
        }
    }
    idx
}

/// NumPy's `aheapsort` on one part of the work list.
fn heapsort<T: PartialOrd + Copy>(v: &[T], part: &mut [usize]) {
    let mut n = part.len();
    // 1-based heap positions: element k lives at part[k - 1]
    let at = |part: &[usize], k: usize| v[part[k - 1]];
    let sift = |part: &mut [usize], start: usize, n: usize, item: usize| {
        let (mut i, mut j) = (start, start * 2);
        while j <= n {
            if j < n && less(at(part, j), at(part, j + 1)) {
                j += 1;
            }
            if less(v[item], at(part, j)) {
                part[i - 1] = part[j - 1];
                i = j;
                j += j;
            } else {
                break;
            }
        }
        part[i - 1] = item;
    };
    for l in (1..=n / 2).rev() {
        let item = part[l - 1];
        sift(part, l, n, item);
    }
    while n > 1 {
        let item = part[n - 1];
        part[n - 1] = part[0];
        n -= 1;
        sift(part, 1, n, item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_sorted_by_numpy_order(v: &[f64], order: &[usize]) -> bool {
        order.windows(2).all(|w| !less(v[w[1]], v[w[0]]))
    }

    #[test]
    fn small_cases() {
        assert!(argsort_like_numpy::<f64>(&[]).is_empty());
        assert_eq!(argsort_like_numpy(&[3.0]), vec![0]);
        assert_eq!(argsort_like_numpy(&[2.0, 1.0, 3.0]), vec![1, 0, 2]);
        // insertion sort is stable: small arrays keep ties in index order
        assert_eq!(argsort_like_numpy(&[1.0f32, 1.0, 0.5, 1.0]), vec![2, 0, 1, 3]);
        // NaN after everything, including infinity
        assert_eq!(argsort_like_numpy(&[f64::NAN, f64::INFINITY, 0.0, f64::NEG_INFINITY]), vec![3, 2, 1, 0]);
    }

    #[test]
    fn sorts_and_permutes() {
        let mut x = 12345u64;
        for n in [17, 18, 33, 100, 257, 1000, 4099] {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((x >> 33) % 7) as f64
                })
                .collect();
            let order = argsort_like_numpy(&v);
            assert!(is_sorted_by_numpy_order(&v, &order));
            let mut seen = order.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
    }

    /// `np.argsort` of NumPy 1.24.4 on 52 arrays full of ties (tools/make_argsort_fixture.py).
    #[test]
    fn matches_numpy_argsort_fixture() {
        let fx: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/mtcnn/argsort.json")).unwrap();
        assert!(fx["numpy"].as_str().unwrap().starts_with("1."));
        let cases = fx["cases"].as_array().unwrap();
        assert!(cases.len() >= 50);
        let (mut partitioned, mut heapsorted, mut heapsorted_ties) = (0, 0, 0);
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let levels: Vec<f64> = c["levels"].as_array().unwrap().iter().map(|b| f64::from_bits(b.as_u64().unwrap())).collect();
            let v: Vec<f64> = c["values"].as_array().unwrap().iter().map(|k| levels[k.as_u64().unwrap() as usize]).collect();
            let want: Vec<usize> = c["order"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect();
            let mut paths = SortPaths::default();
            assert_eq!(argsort_impl(&v, &mut paths), want, "case {name}");
            // f32 input (every level here but the specials is a float32) orders the same
            if levels.iter().all(|&x| x.is_nan() || f64::from(x as f32) == x) {
                let v32: Vec<f32> = v.iter().map(|&x| x as f32).collect();
                assert_eq!(argsort_like_numpy(&v32), want, "case {name} as f32");
            }
            partitioned += usize::from(paths.partitions > 0);
            if paths.heapsorts > 0 {
                heapsorted += 1;
                heapsorted_ties += usize::from(levels.len() < v.len());
            }
        }
        // the fixture reaches every path: partitioning, and the heapsort fallback (with ties)
        assert!(partitioned >= 20, "{partitioned}");
        assert!(heapsorted >= 2 && heapsorted_ties >= 1, "{heapsorted} {heapsorted_ties}");
    }

    #[test]
    fn heapsort_part_sorts() {
        let v = [5.0, 1.0, 4.0, 1.0, f64::NAN, 3.0, 2.0, 5.0];
        let mut part: Vec<usize> = (0..v.len()).collect();
        heapsort(&v, &mut part);
        assert!(is_sorted_by_numpy_order(&v, &part));
    }
}
