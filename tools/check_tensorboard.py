#!/usr/bin/env python3
"""Reads a `facenet train` log folder with TensorBoard's own reader (`EventAccumulator`) and
prints its scalar tags, how many values each has, their steps and last value, and (runs with
--log_histograms) its histogram tags with the last histogram's count, range and buckets: a
check that TensorBoard reads our event files (src/train/tensorboard.rs) as it reads the
reference's. Dev-only, never run by CI.

    python3 -m pip install tensorboard
    python3 tools/check_tensorboard.py ~/logs/facenet/<YYYYmmdd-HHMMSS>

Exits 1 when the folder holds no scalars or a tag's steps do not increase (what a resumed
run's `SessionLog.START` event must leave), or a histogram's bucket counts do not add up to
its count or its limits do not increase.
"""

import os
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    logdir = argv[1]
    files = sorted(f for f in os.listdir(logdir) if "tfevents" in f)
    print(f"{logdir}: {len(files)} event file(s)")
    for f in files:
        print(f"  {f} ({os.path.getsize(os.path.join(logdir, f))} bytes)")
    # size_guidance 0: keep every value (TensorBoard's default samples 10,000 per tag)
    acc = ea.EventAccumulator(logdir, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0}, purge_orphaned_data=True)
    acc.Reload()
    print(f"file_version: {acc.file_version}")
    tags = sorted(acc.Tags()[ea.SCALARS])
    if not tags:
        print("no scalars")
        return 1
    ok = True
    width = max(len(t) for t in tags)
    print(f"{'tag':{width}}  count  steps        last value")
    for tag in tags:
        values = acc.Scalars(tag)
        steps = [v.step for v in values]
        increasing = all(a < b for a, b in zip(steps, steps[1:]))
        ok &= increasing
        flag = "" if increasing else "  STEPS NOT INCREASING"
        print(f"{tag:{width}}  {len(values):5d}  {steps[0]:5d}..{steps[-1]:<5d}  {values[-1].value:.6g}{flag}")
    print(f"{len(tags)} scalar tags")
    htags = sorted(acc.Tags()[ea.HISTOGRAMS])
    if htags:
        width = max(len(t) for t in htags)
        print(f"{'histogram tag':{width}}  count  steps        num        min        max  buckets")
        for tag in htags:
            events = acc.Histograms(tag)
            h = events[-1].histogram_value
            good = (abs(sum(h.bucket) - h.num) < 0.5 and len(h.bucket) == len(h.bucket_limit)
                    and all(a < b for a, b in zip(h.bucket_limit, h.bucket_limit[1:])))
            ok &= good
            flag = "" if good else "  BAD BUCKETS"
            print(f"{tag:{width}}  {len(events):5d}  {events[0].step:5d}..{events[-1].step:<5d}  "
                  f"{h.num:9.0f}  {h.min:9.3g}  {h.max:9.3g}  {len(h.bucket)}{flag}")
        print(f"{len(htags)} histogram tags")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
