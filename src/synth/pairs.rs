//! LFW-style pairs over the held-out identities.
//!
//! As in LFW, folds are person-disjoint when there are enough identities (at least two per
//! fold): the identities are dealt round-robin to the folds, and each fold's same and
//! different pairs use only its own identities. Pairs are not repeated within a fold unless
//! the fold has too few possible pairs.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::pairs::Pair;

/// `folds` x (`per_fold` same + `per_fold` different) pairs over `names`, each with
/// `images` images numbered from 1.
pub fn make_pairs(names: &[String], images: usize, folds: usize, per_fold: usize, seed: u64) -> Vec<Pair> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5041_4952_535F_4C46);
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.shuffle(&mut rng);
    let disjoint = names.len() >= 2 * folds;
    let mut out = Vec::with_capacity(folds * per_fold * 2);
    for fold in 0..folds {
        let group: Vec<usize> = if disjoint { order.iter().copied().skip(fold).step_by(folds).collect() } else { order.clone() };
        let mut seen = HashSet::new();
        let mut draw = |rng: &mut ChaCha8Rng, same: bool| -> Pair {
            for attempt in 0.. {
                let a = group[rng.gen_range(0..group.len())];
                let b = if same {
                    a
                } else {
                    let mut b = a;
                    while b == a {
                        b = group[rng.gen_range(0..group.len())];
                    }
                    b
                };
                let mut i = rng.gen_range(1..=images as u32);
                let mut j = rng.gen_range(1..=images as u32);
                if same {
                    while j == i {
                        j = rng.gen_range(1..=images as u32);
                    }
                    if i > j {
                        std::mem::swap(&mut i, &mut j);
                    }
                }
                let (a, b, i, j) = if !same && a > b { (b, a, j, i) } else { (a, b, i, j) };
                let key = (a, i, b, j);
                if seen.insert(key) || attempt > 1000 {
                    return if same { Pair::same(&names[a], i, j) } else { Pair::different(&names[a], i, &names[b], j) };
                }
            }
            unreachable!()
        };
        for _ in 0..per_fold {
            out.push(draw(&mut rng, true));
        }
        for _ in 0..per_fold {
            out.push(draw(&mut rng, false));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|k| format!("P{k}")).collect()
    }

    #[test]
    fn layout_and_disjoint_folds() {
        let n = names(40);
        let pairs = make_pairs(&n, 10, 10, 30, 1);
        assert_eq!(pairs.len(), 600);
        for (f, chunk) in pairs.chunks(60).enumerate() {
            assert!(chunk[..30].iter().all(|p| p.is_same() && p.index1 < p.index2), "fold {f}");
            assert!(chunk[30..].iter().all(|p| !p.is_same()), "fold {f}");
            let ids: HashSet<&str> = chunk.iter().flat_map(|p| [p.name1.as_str(), p.name2.as_str()]).collect();
            assert!(ids.len() <= 4, "fold {f} uses only its own identities");
            let uniq: HashSet<_> = chunk.iter().map(|p| format!("{p:?}")).collect();
            assert_eq!(uniq.len(), 60, "no repeated pair in fold {f}");
        }
        assert!(pairs.iter().all(|p| (1..=10).contains(&p.index1) && (1..=10).contains(&p.index2)));
        assert_eq!(pairs, make_pairs(&n, 10, 10, 30, 1), "deterministic");
        assert_ne!(pairs, make_pairs(&n, 10, 10, 30, 2));
    }

    #[test]
    fn few_identities_still_work() {
        let pairs = make_pairs(&names(3), 2, 10, 5, 7);
        assert_eq!(pairs.len(), 100);
    }
}
