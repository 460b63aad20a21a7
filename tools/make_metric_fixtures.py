#!/usr/bin/env python3
"""Make the parity fixtures of the LFW verification metrics (dev-only, not run by CI).

The expected values come from the reference's own functions: ``lfw.evaluate`` and
``facenet.calculate_roc`` / ``calculate_val`` / ``distance`` of davidsandberg/facenet,
plus the AUC and EER lines of its ``validate_on_lfw.py``
(``sklearn.metrics.auc(fpr, tpr)`` and
``brentq(lambda x: 1. - x - interpolate.interp1d(fpr, tpr)(x), 0., 1.)``).
The reference's code is fetched into a temporary folder, never into this repository.

Setup (a private environment outside the repository)::

    python3 -m venv /tmp/metricsvenv
    /tmp/metricsvenv/bin/pip install numpy scipy scikit-learn
    /tmp/metricsvenv/bin/python tools/make_metric_fixtures.py

By default the script runs ``pip download --no-deps facenet==1.0.5`` (the PyPI wheel
of the reference, whose metric code is identical to the repository's master) into a
temporary folder and imports ``facenet/src/facenet.py`` and ``lfw.py`` from it. Pass
``--reference-src DIR`` to use a checkout's ``src/`` folder instead.

Local adaptations, all outside the reference's files:

* ``facenet.py`` imports TensorFlow, ``scipy.misc`` and ``six`` at module top; none of
  them is used by the metric functions, so they are stubbed through ``sys.modules``.
* ``calculate_val`` calls ``interpolate.interp1d(far_train, thresholds, kind='slinear')``
  on a FAR array with long runs of equal values. SciPy up to 1.x accepted that: it
  stably sorted x and built ``make_interp_spline(x, y, k=1)``, i.e. the degree-1
  B-spline with knots ``[x0, x..., x_last]`` and coefficients ``y``. Current SciPy
  refuses duplicated x there ("Expect x to not have duplicates"). The script hands
  ``calculate_val`` a stand-in ``interp1d`` that builds that very B-spline with
  ``BSpline.construct_fast`` (skipping only the new duplicate check) and evaluates it
  with SciPy's own B-spline evaluator. This is the reference's rule ("linear
  interpolation between the LAST threshold whose training FAR is <= target and the
  next one"); the script checks every fold against a direct implementation of that
  rule, and records which situation each fold met:

  - ``interior``: the rule as stated;
  - ``final-segment``: the largest training FAR equals the target and first appears
    at the final threshold: the B-spline's last segment gives (about) that threshold;
  - ``final-run-zero``: the largest training FAR equals the target over a run of
    thresholds at the end: the B-spline's last segment is degenerate and the
    reference's threshold is exactly 0 (a quirk of the reference, kept);
  - ``below-target``: the largest training FAR is below the target: threshold 0.

* The per-fold best thresholds and per-fold VAL / FAR / thresholds (not returned by
  the reference) are observed by wrapping ``facenet.calculate_accuracy`` and
  ``facenet.calculate_val_far``, and the distances each fold works on (after its mean
  subtraction) by wrapping ``facenet.distance``; the wrappers only record arguments
  and results. Those per-fold distances are stored as an FNV-1a hash of their float64
  bytes (``fold_distances_fnv1a64``), which pins the mean's summation order exactly.

Fixtures (``tests/fixtures/metrics/``): ``<set>.npy`` holds the 2N embeddings
(float32 values, like a network's output, except one float64 set; the reference and
the Rust code both work on them as float64), one ``<case>.json`` per case, and ``index.json``. Floats in the
JSON files are written as strings (Python ``repr``, shortest round-trip) so that a
reader can parse them exactly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy import interpolate
from scipy.interpolate import BSpline
from scipy.optimize import brentq
from sklearn import metrics

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "tests" / "fixtures" / "metrics"
WHEEL_SPEC = "facenet==1.0.5"


# --------------------------------------------------------------------------------------
# Getting and importing the reference
# --------------------------------------------------------------------------------------

def fetch_reference(workdir: Path) -> Path:
    """Download the reference's wheel and extract its src/ folder; return that folder."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL_SPEC, "-d", str(workdir)],
        check=True,
    )
    wheel = next(workdir.glob("facenet-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for name in ("facenet/src/facenet.py", "facenet/src/lfw.py"):
            zf.extract(name, workdir)
    return workdir / "facenet" / "src"


def stub_module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


def import_reference(src: Path):
    """Import the reference's facenet and lfw modules with their unused imports stubbed."""
    tf = stub_module("tensorflow", __version__="stub")
    tf_python = stub_module("tensorflow.python")
    training = stub_module("tensorflow.python.training", training=types.SimpleNamespace())
    platform = stub_module("tensorflow.python.platform", gfile=types.SimpleNamespace())
    tf.python = tf_python
    tf_python.training = training
    tf_python.platform = platform
    if "scipy.misc" not in sys.modules:
        try:
            importlib.import_module("scipy.misc")
        except ImportError:
            scipy.misc = stub_module("scipy.misc")
    try:
        importlib.import_module("six")
    except ImportError:
        stub_module("six", iteritems=lambda d: iter(d.items()))
    sys.path.insert(0, str(src))
    facenet = importlib.import_module("facenet")
    lfw = importlib.import_module("lfw")
    return facenet, lfw


# --------------------------------------------------------------------------------------
# The VAL interpolation of the SciPy the reference was written for
# --------------------------------------------------------------------------------------

VAL_RULE_LOG: list[str] = []


def rule_of_reference_md(x, y, target):
    """The reference's rule, written directly (x sorted, max(x) >= target)."""
    p = int(np.nonzero(x <= target)[0][-1])
    if p == len(x) - 1:
        return None  # not covered by the rule's wording; see the B-spline
    return y[p] + (target - x[p]) / (x[p + 1] - x[p]) * (y[p + 1] - y[p])


class LegacySlinear:
    """interp1d(x, y, kind='slinear') as SciPy 0.19 .. 1.x built it (duplicates allowed)."""

    def __init__(self, x, y, kind="linear", **kwargs):
        if kind != "slinear" or kwargs:
            raise NotImplementedError("only the reference's slinear call is emulated")
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        order = np.argsort(x, kind="mergesort")  # interp1d's stable sort
        self.x = x[order]
        self.y = y[order]
        # make_interp_spline(x, y, k=1) without the newer duplicate check:
        self.spline = BSpline.construct_fast(np.r_[self.x[0], self.x, self.x[-1]], self.y, 1)

    def __call__(self, x_new):
        x_new = np.asarray(x_new, dtype=float)
        if np.any(x_new < self.x[0]) or np.any(x_new > self.x[-1]):
            raise ValueError("A value in x_new is outside the interpolation range.")
        out = self.spline(x_new)
        target = float(x_new)
        value = float(out)
        xs, ys = self.x, self.y
        p = int(np.nonzero(xs <= target)[0][-1])
        if p < len(xs) - 1:
            kind = "interior"
            expected = rule_of_reference_md(xs, ys, target)
            assert abs(value - expected) <= 1e-12, (value, expected)
        elif xs[-2] < xs[-1]:
            kind = "final-segment"
            assert abs(value - ys[-1]) <= 1e-12, (value, ys[-1])
        else:
            kind = "final-run-zero"
            assert value == 0.0, value
        VAL_RULE_LOG.append(kind)
        return out


# --------------------------------------------------------------------------------------
# Running the reference on one case
# --------------------------------------------------------------------------------------

def fnv1a64(values: np.ndarray) -> str:
    """FNV-1a (64 bit) of the float64 values' little-endian bytes, as 16 hex digits."""
    h = 0xCBF29CE484222325
    for byte in np.asarray(values, dtype="<f8").tobytes():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def fstr(v) -> str:
    return repr(float(v))


def flist(a) -> list[str]:
    return [fstr(v) for v in np.asarray(a, dtype=float).ravel()]


def run_reference(facenet, lfw, emb: np.ndarray, issame: np.ndarray, metric: int, subtract_mean: bool,
                  far_target: float, nrof_folds: int = 10) -> dict:
    acc_calls: list[float] = []
    val_calls: list[tuple[float, float, float]] = []
    real_acc, real_valfar = facenet.calculate_accuracy, facenet.calculate_val_far

    def spy_acc(threshold, dist, actual_issame):
        r = real_acc(threshold, dist, actual_issame)
        acc_calls.append(float(threshold))
        return r

    def spy_valfar(threshold, dist, actual_issame):
        r = real_valfar(threshold, dist, actual_issame)
        val_calls.append((float(threshold), r[0], r[1]))
        return r

    fold_distances: list[np.ndarray] = []
    real_distance = facenet.distance

    def spy_distance(embeddings1, embeddings2, distance_metric=0):
        d = real_distance(embeddings1, embeddings2, distance_metric)
        fold_distances.append(np.array(d, dtype=float))
        return d

    facenet.calculate_accuracy = spy_acc
    facenet.calculate_val_far = spy_valfar
    facenet.distance = spy_distance
    real_interp_module = facenet.interpolate
    facenet.interpolate = types.SimpleNamespace(interp1d=LegacySlinear)
    VAL_RULE_LOG.clear()
    try:
        with np.errstate(all="raise"):
            if far_target == 1e-3:
                tpr, fpr, accuracy, val, val_std, far = lfw.evaluate(
                    emb, issame, nrof_folds=nrof_folds, distance_metric=metric, subtract_mean=subtract_mean)
            else:  # lfw.evaluate with its hard-coded 1e-3 replaced
                e1, e2 = emb[0::2], emb[1::2]
                tpr, fpr, accuracy = facenet.calculate_roc(
                    np.arange(0, 4, 0.01), e1, e2, np.asarray(issame), nrof_folds=nrof_folds,
                    distance_metric=metric, subtract_mean=subtract_mean)
                val, val_std, far = facenet.calculate_val(
                    np.arange(0, 4, 0.001), e1, e2, np.asarray(issame), far_target, nrof_folds=nrof_folds,
                    distance_metric=metric, subtract_mean=subtract_mean)
    finally:
        facenet.calculate_accuracy = real_acc
        facenet.calculate_val_far = real_valfar
        facenet.distance = real_distance
        facenet.interpolate = real_interp_module

    nt_roc, nt_val = 400, 4000
    per_fold_acc = 2 * nt_roc + 1
    assert len(acc_calls) == nrof_folds * per_fold_acc
    best = [acc_calls[f * per_fold_acc + 2 * nt_roc] for f in range(nrof_folds)]
    per_fold_val = nt_val + 1
    assert len(val_calls) == nrof_folds * per_fold_val
    tests = [val_calls[f * per_fold_val + nt_val] for f in range(nrof_folds)]
    rules = []
    it = iter(VAL_RULE_LOG)
    for f in range(nrof_folds):
        train_far = [c[2] for c in val_calls[f * per_fold_val:f * per_fold_val + nt_val]]
        rules.append(next(it) if max(train_far) >= far_target else "below-target")

    # The distances each fold worked on (after its mean subtraction): calculate_roc's
    # ten calls, then calculate_val's ten, which must be the same.
    assert len(fold_distances) == 2 * nrof_folds
    for a, b in zip(fold_distances[:nrof_folds], fold_distances[nrof_folds:]):
        assert a.tobytes() == b.tobytes()
    fold_hashes = [fnv1a64(d) for d in fold_distances[:nrof_folds]]

    # validate_on_lfw's AUC and EER lines, with the installed (current) SciPy.
    auc = metrics.auc(fpr, tpr)
    try:
        eer = brentq(lambda x: 1. - x - interpolate.interp1d(fpr, tpr)(x), 0., 1.)
        eer_error = None
    except (ValueError, RuntimeError) as e:  # the reference's validate_on_lfw would stop here
        eer, eer_error = None, f"{type(e).__name__}: {e}"

    dist = facenet.distance(emb[0::2], emb[1::2], metric)
    assert np.all(np.isfinite(dist)), "reference distance is not finite (cosine rounding past 1?)"
    return {
        "tpr": flist(tpr),
        "fpr": flist(fpr),
        "accuracy_per_fold": flist(accuracy),
        "best_threshold_per_fold": flist(best),
        "accuracy_mean": fstr(np.mean(accuracy)),
        "accuracy_std": fstr(np.std(accuracy)),
        "val_per_fold": flist([t[1] for t in tests]),
        "far_per_fold": flist([t[2] for t in tests]),
        "val_threshold_per_fold": flist([t[0] for t in tests]),
        "val_threshold_rule_per_fold": rules,
        "val_mean": fstr(val),
        "val_std": fstr(val_std),
        "far_mean": fstr(far),
        "auc": fstr(auc),
        "eer": None if eer is None else fstr(eer),
        "eer_error": eer_error,
        "distances": flist(dist),
        "fold_distances_fnv1a64": fold_hashes,
    }


# --------------------------------------------------------------------------------------
# Embedding sets
# --------------------------------------------------------------------------------------

def normalize(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def labels_alternating(n, rng, shuffle=True):
    same = np.arange(n) % 2 == 0
    if shuffle:
        rng.shuffle(same)
    return same


def gaussian_set(n_pairs, dim, noise, offset, rng, dtype=np.float32):
    """Unit-norm pairs: a same pair is one identity plus noise twice."""
    same = labels_alternating(n_pairs, rng)
    centre = rng.standard_normal(dim) * offset
    rows = []
    for s in same:
        a = rng.standard_normal(dim) + centre
        b = a if s else rng.standard_normal(dim) + centre
        rows.append(a + noise * rng.standard_normal(dim))
        rows.append(b + noise * rng.standard_normal(dim))
    emb = normalize(np.array(rows)).astype(dtype)
    return emb, same


def tie_set(n_pairs, dim, rng):
    """Values in {-0.5, 0, 0.5}: squared distances are exact multiples of 0.25 and hit
    the thresholds 0.25, 0.5, 1.0 ... exactly (ties, strict comparisons)."""
    same = labels_alternating(n_pairs, rng)
    rows = []
    for s in same:
        while True:
            a = rng.integers(-1, 2, dim) * 0.5
            if s:
                b = a.copy()
                for j in rng.choice(dim, size=rng.integers(1, 4), replace=False):
                    b[j] = rng.choice([v for v in (-0.5, 0.0, 0.5) if v != b[j]])
            else:
                b = rng.integers(-1, 2, dim) * 0.5
            parallel = abs(abs(a @ b) - np.linalg.norm(a) * np.linalg.norm(b)) < 1e-9
            if np.any(a) and np.any(b) and not parallel:
                break
        rows += [a, b]
    return np.array(rows).astype(np.float32), same


def far_edge_set(close_folds, edge_fold):
    """160 pairs of 2-D points, 10 folds of 16, alternating labels (80 same, 80 different).

    Same pairs are at squared distance 0.25. Different pairs are at 4.0 (never accepted
    below the last threshold 3.999) except for "close" ones, one in each fold of
    ``close_folds`` at a distinct small distance, and one at ~3.9984 (between the
    thresholds 3.998 and 3.999) in ``edge_fold`` if given. With 72 different pairs in
    each training part and a FAR target of 1/9 = 8/72 (or 1/8 = 9/72), the folds meet
    the ``interior``, ``final-segment``, ``final-run-zero`` and ``below-target``
    situations."""
    n = 160
    same = np.arange(n) % 2 == 0
    radius = np.where(same, 0.5, 2.0)
    for i, f in enumerate(close_folds):
        radius[16 * f + 1 + 2 * (i % 4)] = np.sqrt(0.5 + 0.1234 * i)
    if edge_fold is not None:
        radius[16 * edge_fold + 9] = 1.9996
    rows = []
    for r in radius:
        rows += [[0.0, 0.0], [r, 0.0]]
    return np.array(rows).astype(np.float32), same


def build_sets():
    rng = np.random.default_rng(20240601)
    sets = {
        # 600 pairs (60 per fold), dim 8, moderate separation, embeddings off-centre so
        # that mean subtraction matters for the cosine metric.
        "gauss600_d8": gaussian_set(600, 8, noise=0.55, offset=0.6, rng=rng),
        # 203 pairs (folds of 21, 21, 21, 20 ...), dim 16, poor separation.
        "gauss203_d16": gaussian_set(203, 16, noise=1.6, offset=0.3, rng=rng),
        # near-perfect separation, 150 pairs, dim 8.
        "sharp150_d8": gaussian_set(150, 8, noise=0.08, offset=0.0, rng=rng),
        # quantised values: many exactly tied distances; 257 pairs.
        "ties257_d8": tie_set(257, 8, rng),
        # full float64 values (sums of float32 values in float64 are exact in any
        # order; these are not), so the mean's summation order shows.
        "gauss101_d8_f64": gaussian_set(101, 8, noise=0.5, offset=0.8, rng=rng, dtype=np.float64),
        "faredge_a": far_edge_set(close_folds=list(range(9)), edge_fold=None),
        "faredge_b": far_edge_set(close_folds=list(range(8)), edge_fold=9),
    }
    cases = [
        ("gauss600_d8_euclid", "gauss600_d8", 0, False, 1e-3),
        ("gauss600_d8_cosine_mean", "gauss600_d8", 1, True, 1e-3),
        ("gauss203_d16_euclid_mean", "gauss203_d16", 0, True, 1e-3),
        ("gauss203_d16_cosine", "gauss203_d16", 1, False, 1e-3),
        ("sharp150_d8_euclid", "sharp150_d8", 0, False, 1e-3),
        ("sharp150_d8_cosine_mean", "sharp150_d8", 1, True, 1e-3),
        ("ties257_d8_euclid", "ties257_d8", 0, False, 1e-3),
        ("ties257_d8_euclid_mean", "ties257_d8", 0, True, 1e-3),
        ("ties257_d8_cosine", "ties257_d8", 1, False, 1e-3),
        ("gauss101_d8_f64_cosine_mean", "gauss101_d8_f64", 1, True, 1e-3),
        ("faredge_a_euclid", "faredge_a", 0, False, 1 / 9),
        ("faredge_b_euclid", "faredge_b", 0, False, 1 / 9),
        ("faredge_b_euclid_far0125", "faredge_b", 0, False, 0.125),
    ]
    return sets, cases


# --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-src", type=Path,
                    help="folder holding the reference's facenet.py and lfw.py (default: fetch the wheel)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="facenet-ref-", dir="/tmp") as tmp:
        src = args.reference_src or fetch_reference(Path(tmp))
        facenet, lfw = import_reference(src)

        sets, cases = build_sets()
        args.out.mkdir(parents=True, exist_ok=True)
        for name, (emb, _) in sets.items():
            np.save(args.out / f"{name}.npy", emb)
        index = {
            "generator": "tools/make_metric_fixtures.py",
            "reference": f"davidsandberg/facenet ({WHEEL_SPEC} wheel: src/facenet.py, src/lfw.py)",
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "cases": [],
        }
        rules_seen = set()
        for case, set_name, metric, subtract_mean, far_target in cases:
            emb32, same = sets[set_name]
            emb = emb32.astype(np.float64)
            expected = run_reference(facenet, lfw, emb, same, metric, subtract_mean, far_target)
            rules_seen.update(expected["val_threshold_rule_per_fold"])
            doc = {
                "case": case,
                "embeddings": f"{set_name}.npy",
                "pairs": int(len(same)),
                "dim": int(emb.shape[1]),
                "issame": [int(s) for s in same],
                "options": {
                    "nrof_folds": 10,
                    "distance_metric": metric,
                    "subtract_mean": subtract_mean,
                    "far_target": fstr(far_target),
                },
                "expected": expected,
            }
            (args.out / f"{case}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
            index["cases"].append(case)
            print(f"{case:28s} acc {float(expected['accuracy_mean']):.4f}  val {float(expected['val_mean']):.4f}"
                  f"  auc {float(expected['auc']):.4f}  eer {expected['eer']}  rules {sorted(set(expected['val_threshold_rule_per_fold']))}")
        (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
        missing = {"interior", "final-segment", "final-run-zero", "below-target"} - rules_seen
        assert not missing, f"VAL situations not covered: {missing}"
    total = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {len(cases)} cases to {args.out} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
