//! Parity of the LFW verification metrics with the reference (davidsandberg/facenet).
//!
//! The fixtures in `tests/fixtures/metrics/` were made by
//! `tools/make_metric_fixtures.py`, which runs the reference's own `lfw.evaluate`,
//! `calculate_roc`, `calculate_val`, `distance`, and the AUC / EER lines of
//! `validate_on_lfw.py` on small generated embedding sets. Floats are stored as
//! strings (shortest round-trip) so they parse exactly.

use std::path::{Path, PathBuf};

use facenet::eval::metrics::*;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
}

/// Reads a little-endian float32 or float64 C-order `.npy` file as `f64`s, with its shape.
fn read_npy(path: &Path) -> (Vec<f64>, Vec<usize>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}: not an npy file", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => panic!("{}: npy version {v}", path.display()),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("npy header is ASCII");
    assert!(header.contains("'fortran_order': False"), "{}: Fortran order", path.display());
    let shape_text = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("npy shape");
    let shape: Vec<usize> =
        shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().expect("npy shape entry")).collect();
    let data = &bytes[start + header_len..];
    let count: usize = shape.iter().product();
    let values: Vec<f64> = if header.contains("'descr': '<f4'") {
        assert_eq!(data.len(), 4 * count);
        data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()
    } else if header.contains("'descr': '<f8'") {
        assert_eq!(data.len(), 8 * count);
        data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
    } else {
        panic!("{}: unsupported dtype in header {header}", path.display());
    };
    (values, shape)
}

/// FNV-1a (64 bit) over the values' little-endian bytes, as the fixture script computes it.
fn fnv1a64(values: &[f64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("float {s:?}: {e}")),
        Value::Number(n) => n.as_f64().expect("number"),
        other => panic!("expected a float, got {other}"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

struct Case {
    name: String,
    embeddings: Vec<f64>,
    dim: usize,
    issame: Vec<bool>,
    opts: EvalOptions,
    expected: Value,
}

fn load_cases() -> Vec<Case> {
    let dir = fixture_dir();
    let index: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).expect("index.json")).expect("index json");
    let names = index["cases"].as_array().expect("cases");
    assert!(names.len() >= 10, "expected the full fixture set");
    names
        .iter()
        .map(|n| {
            let name = n.as_str().expect("case name").to_string();
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).expect("case file")).expect("case json");
            let (embeddings, shape) = read_npy(&dir.join(doc["embeddings"].as_str().expect("embeddings file")));
            let dim = doc["dim"].as_u64().expect("dim") as usize;
            let pairs = doc["pairs"].as_u64().expect("pairs") as usize;
            assert_eq!(shape, vec![2 * pairs, dim], "{name}: embedding shape");
            let issame: Vec<bool> = doc["issame"].as_array().expect("issame").iter().map(|v| v.as_u64().expect("0/1") == 1).collect();
            assert_eq!(issame.len(), pairs);
            let o = &doc["options"];
            let opts = EvalOptions {
                nrof_folds: o["nrof_folds"].as_u64().expect("folds") as usize,
                distance_metric: DistanceMetric::from_index(o["distance_metric"].as_u64().expect("metric") as u32).expect("metric index"),
                subtract_mean: o["subtract_mean"].as_bool().expect("subtract_mean"),
                far_target: num(&o["far_target"]),
            };
            Case { name, embeddings, dim, issame, opts, expected: doc["expected"].clone() }
        })
        .collect()
}

fn assert_close(case: &str, what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{case}: {what}: got {got:?}, reference {want:?} (|diff| {:e} > {tol:e})", (got - want).abs());
}

fn assert_all_close(case: &str, what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{case}: {what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_close(case, &format!("{what}[{i}]"), g, w, tol);
    }
}

fn evaluate_case(c: &Case) -> Evaluation {
    evaluate(&c.embeddings, c.dim, &c.issame, &c.opts).unwrap_or_else(|e| panic!("{}: {e}", c.name))
}

#[test]
fn metrics_match_the_reference_within_tolerance() {
    for c in load_cases() {
        let ev = evaluate_case(&c);
        let e = &c.expected;
        let n = c.name.as_str();
        assert_eq!(ev.thresholds.len(), 400);
        assert_all_close(n, "tpr", &ev.tpr, &nums(&e["tpr"]), 1e-12);
        assert_all_close(n, "fpr", &ev.fpr, &nums(&e["fpr"]), 1e-12);
        assert_all_close(n, "accuracy_per_fold", &ev.accuracy_per_fold, &nums(&e["accuracy_per_fold"]), 1e-9);
        assert_all_close(n, "best_threshold", &ev.best_threshold_per_fold, &nums(&e["best_threshold_per_fold"]), 1e-12);
        assert_close(n, "accuracy_mean", ev.accuracy_mean, num(&e["accuracy_mean"]), 1e-9);
        assert_close(n, "accuracy_std", ev.accuracy_std, num(&e["accuracy_std"]), 1e-9);
        assert_all_close(n, "val_per_fold", &ev.val_per_fold, &nums(&e["val_per_fold"]), 1e-6);
        assert_all_close(n, "far_per_fold", &ev.far_per_fold, &nums(&e["far_per_fold"]), 1e-6);
        assert_all_close(n, "val_threshold", &ev.val_threshold_per_fold, &nums(&e["val_threshold_per_fold"]), 1e-9);
        assert_close(n, "val_mean", ev.val_mean, num(&e["val_mean"]), 1e-6);
        assert_close(n, "val_std", ev.val_std, num(&e["val_std"]), 1e-6);
        assert_close(n, "far_mean", ev.far_mean, num(&e["far_mean"]), 1e-6);
        assert_close(n, "auc", ev.auc, num(&e["auc"]), 1e-9);
        match &e["eer"] {
            Value::Null => assert!(ev.eer.is_nan(), "{n}: the reference's EER raised ({}), got {}", e["eer_error"], ev.eer),
            v => assert_close(n, "eer", ev.eer, num(v), 1e-9),
        }
        assert_all_close(n, "distances", &ev.distances, &nums(&e["distances"]), 1e-12);
    }
}

/// Everything derived from counts, thresholds and NumPy-order sums is bit-for-bit
/// the reference's; distances are too for the squared Euclidean metric (pure
/// arithmetic), while cosine ones go through the platform's `acos` and are held
/// to a few ulps.
#[test]
fn metrics_match_the_reference_bit_for_bit() {
    for c in load_cases() {
        let ev = evaluate_case(&c);
        let e = &c.expected;
        let n = c.name.as_str();
        let exact = |what: &str, got: &[f64], want: Vec<f64>| {
            assert_eq!(got.len(), want.len(), "{n}: {what}: length");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "{n}: {what}[{i}]: {g:?} vs reference {w:?}");
            }
        };
        exact("tpr", &ev.tpr, nums(&e["tpr"]));
        exact("fpr", &ev.fpr, nums(&e["fpr"]));
        exact("accuracy_per_fold", &ev.accuracy_per_fold, nums(&e["accuracy_per_fold"]));
        exact("best_threshold_per_fold", &ev.best_threshold_per_fold, nums(&e["best_threshold_per_fold"]));
        exact("val_per_fold", &ev.val_per_fold, nums(&e["val_per_fold"]));
        exact("far_per_fold", &ev.far_per_fold, nums(&e["far_per_fold"]));
        exact("val_threshold_per_fold", &ev.val_threshold_per_fold, nums(&e["val_threshold_per_fold"]));
        let scalars = [
            ("accuracy_mean", ev.accuracy_mean),
            ("accuracy_std", ev.accuracy_std),
            ("val_mean", ev.val_mean),
            ("val_std", ev.val_std),
            ("far_mean", ev.far_mean),
            ("auc", ev.auc),
        ];
        for (what, got) in scalars {
            exact(what, &[got], vec![num(&e[what])]);
        }
        if !e["eer"].is_null() {
            exact("eer", &[ev.eer], vec![num(&e["eer"])]);
        }
        // The distances each fold works on, after subtracting its training mean.
        let pairs = Pairs::new(&c.embeddings, c.dim, &c.issame).expect("pairs");
        let folds = fold_ranges(c.issame.len(), c.opts.nrof_folds).expect("folds");
        let hashes = e["fold_distances_fnv1a64"].as_array().expect("fold hashes");
        assert_eq!(hashes.len(), folds.len(), "{n}: one hash per fold");
        for (f, (test, want)) in folds.iter().zip(hashes).enumerate() {
            let mean = if c.opts.subtract_mean { pairs.train_mean(test) } else { vec![0.0; c.dim] };
            let d = pairs.distances_with_mean(&mean, c.opts.distance_metric).expect("fold distances");
            assert_eq!(format!("{:016x}", fnv1a64(&d)), want.as_str().expect("hash"), "{n}: fold {f} distances");
        }
        let want = nums(&e["distances"]);
        match c.opts.distance_metric {
            DistanceMetric::SquaredEuclidean => exact("distances", &ev.distances, want),
            DistanceMetric::ArccosCosine => {
                for (i, (g, w)) in ev.distances.iter().zip(&want).enumerate() {
                    let ulps = (g.to_bits() as i64 - w.to_bits() as i64).abs();
                    assert!(ulps <= 4, "{n}: distances[{i}]: {g:?} vs reference {w:?} ({ulps} ulps)");
                }
            }
        }
    }
}

/// The fixtures cover the situations the brief asks for.
#[test]
fn fixtures_cover_the_intended_situations() {
    let cases = load_cases();
    let rules: Vec<String> = cases
        .iter()
        .flat_map(|c| c.expected["val_threshold_rule_per_fold"].as_array().expect("rules").clone())
        .map(|v| v.as_str().expect("rule").to_string())
        .collect();
    for rule in ["interior", "final-segment", "final-run-zero", "below-target"] {
        assert!(rules.iter().any(|r| r == rule), "no fold with VAL rule {rule}");
    }
    assert!(cases.iter().any(|c| c.issame.len() % 10 != 0), "no pair count indivisible by 10");
    assert!(cases.iter().any(|c| c.opts.subtract_mean));
    assert!(cases.iter().any(|c| c.opts.distance_metric == DistanceMetric::ArccosCosine));
    assert!(cases.iter().any(|c| c.expected["eer"].is_null()), "no case where the reference's EER raises");
    // A "final-run-zero" fold: the reference's threshold is exactly 0, so VAL and FAR are 0.
    let c = cases.iter().find(|c| c.name == "faredge_a_euclid").expect("faredge_a_euclid");
    let ev = evaluate_case(c);
    assert_eq!(ev.val_threshold_per_fold[0], 0.0);
    assert_eq!((ev.val_per_fold[0], ev.far_per_fold[0]), (0.0, 0.0));
}
