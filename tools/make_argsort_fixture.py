#!/usr/bin/env python3
"""Dev-only: NumPy's argsort tie order, for the unit tests of src/align/numpy_sort.rs.

Not run by CI. The reference's NMS (davidsandberg/facenet, src/align/detect_face.py, `nms`)
orders candidates with `np.argsort(s)` on a float64 column and takes the last index first, so
boxes with equal scores are picked in the order NumPy's unstable quicksort leaves them. This
script records that order from a NumPy of the reference's era (1.x, classic introsort
`aquicksort`; NumPy 1.25+ use x86-simd-sort for argsort on AVX-512 CPUs, which orders ties
differently) on arrays full of ties.

Setup (once):
    python3 -m pip install --target /tmp/np124 numpy==1.24.4

Run:
    PYTHONPATH=/tmp/np124 python3 tools/make_argsort_fixture.py --out tests/fixtures/mtcnn/argsort.json

Fixture format: {"numpy": version, "cases": [{"name", "levels", "values", "order"}]}; an
array is `levels[values[k]]`, each level a float64 given by its IEEE-754 bits (an unsigned
integer, so the Rust side reads it exactly, NaN included); `order` is `np.argsort(array)`.
"""
import argparse
import json
import random
import struct
import sys

import numpy as np


def bits(x):
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def case(name, array):
    """array: float64 values; stored as distinct levels plus one level index per element."""
    a = np.asarray(array, dtype=np.float64)
    levels, keys = [], {}
    values = []
    for x in a:
        b = bits(x)
        if b not in keys:
            keys[b] = len(levels)
            levels.append(b)
        values.append(keys[b])
    return {"name": name, "levels": levels, "values": values, "order": np.argsort(a).tolist()}


def adversary(n):
    """McIlroy's 'killer adversary' run against NumPy's own quicksort (object argsort has the
    same introsort as the float one): returns distinct values that drive the median-of-3
    partitioning deep enough for the heapsort fallback."""
    gas = n
    val = [gas] * n
    state = {"solid": 0, "candidate": 0}

    def freeze(i):
        val[i] = state["solid"]
        state["solid"] += 1

    def cmp(x, y):
        if val[x] == gas and val[y] == gas:
            freeze(x if x == state["candidate"] else y)
        if val[x] == gas:
            state["candidate"] = x
        elif val[y] == gas:
            state["candidate"] = y
        return val[x] - val[y]

    class Item:
        __slots__ = ("i",)

        def __init__(self, i):
            self.i = i

        def __lt__(self, other):
            return cmp(self.i, other.i) < 0

        def __gt__(self, other):
            return cmp(self.i, other.i) > 0

        def __eq__(self, other):
            return cmp(self.i, other.i) == 0

    arr = np.empty(n, dtype=object)
    for i in range(n):
        arr[i] = Item(i)
    np.argsort(arr)
    for i in range(n):
        if val[i] == gas:
            freeze(i)
    return np.array(val, dtype=np.float64)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    if not np.__version__.startswith("1.") or tuple(map(int, np.__version__.split(".")[:2])) >= (1, 25):
        sys.exit(f"NumPy {np.__version__}: need a 1.x before 1.25 (classic argsort on every CPU)")

    rng = random.Random(20240521)
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    sat = [f32(0.99999988), f32(1.0), f32(0.9999997), f32(0.99999976), f32(0.75)]
    cases = []
    # small and middle sizes, few distinct values (many ties)
    for n in list(range(1, 21)) + [24, 31, 32, 33, 47, 64, 65, 100, 127, 128, 150, 199, 200]:
        k = rng.choice([1, 2, 3, 5, 8])
        cases.append(case(f"ties n={n} k={k}", [rng.randrange(k) for _ in range(n)]))
    # saturated P-Net-like scores (float32 widened to float64, as the reference sorts them)
    for n in [16, 17, 40, 90, 300]:
        cases.append(case(f"saturated n={n}", [rng.choice(sat) for _ in range(n)]))
    # all equal, sorted, reversed, organ pipe, with ties
    cases.append(case("all equal n=1000", [0.5] * 1000))
    cases.append(case("sorted ties n=200", sorted(rng.randrange(10) for _ in range(200))))
    cases.append(case("reversed ties n=200", sorted((rng.randrange(10) for _ in range(200)), reverse=True)))
    cases.append(case("organ pipe n=101", [min(i, 100 - i) // 3 for i in range(101)]))
    # NaN, infinities, signed zeros
    special = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0]
    for n in [12, 60, 250]:
        cases.append(case(f"special n={n}", [rng.choice(special) for _ in range(n)]))
    # large: many partitions
    for n in [1001, 1500, 3000]:
        k = rng.choice([2, 7, 50])
        cases.append(case(f"large ties n={n} k={k}", [rng.randrange(k) for _ in range(n)]))
    # depth budget exhausted: the heapsort fallback, on distinct values and with ties
    for n in [300, 1200]:
        killer = adversary(n)
        cases.append(case(f"killer n={n}", killer))
        cases.append(case(f"killer halved n={n}", np.floor(killer / 2)))
    with open(args.out, "w") as f:
        json.dump({"numpy": np.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print(f"{len(cases)} cases, NumPy {np.__version__} -> {args.out}")


if __name__ == "__main__":
    main()
