#!/usr/bin/env python3
"""The second peer of `facenet bench train|embed --precision bf16`: facenet-pytorch's
InceptionResnetV1 under PyTorch's own CPU mixed precision, torch.autocast("cpu", bfloat16)
(bf16 convolutions and linear layers through oneDNN, f32 weights and optimiser).

The training step is the one of facenet's peer benchmark: classify=True, cross-entropy,
RMSprop(alpha 0.9, eps 1.0, momentum 0.9), random input. One JSON line per measure, with the
medians as `images_per_s_median`. Run it on a quiet machine, alternated with `facenet bench`,
and quote ratios of medians with the CPU (`lscpu`) they were measured on.

    python tools/bench_peer_bf16.py --threads 2 --batch 32 --only train
"""
import argparse
import json
import os
import statistics
import time

import torch


def medians(fn, warmup, steps):
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        fn()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image_size", type=int, default=160)
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--only", choices=["train", "inference"], action="append")
    p.add_argument("--f32", action="store_true", help="no autocast (the plain f32 peer, for a same-script check)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from facenet_pytorch import InceptionResnetV1

    dtype = "f32" if a.f32 else "bf16"
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=not a.f32)  # noqa: E731
    x = torch.randn(a.batch, 3, a.image_size, a.image_size)
    base = {"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch, "image_size": a.image_size, "precision": dtype}
    for what in a.only or ["train", "inference"]:
        if what == "train":
            model = InceptionResnetV1(classify=True, num_classes=a.num_classes).train()
            opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1.0, momentum=0.9)
            y = torch.randint(0, a.num_classes, (a.batch,))
            loss_fn = torch.nn.CrossEntropyLoss()

            def step():
                opt.zero_grad(set_to_none=True)
                with autocast():
                    loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()

            t = medians(step, a.warmup, a.steps)
        else:
            model = InceptionResnetV1(classify=False).eval()

            def step():
                with torch.no_grad(), autocast():
                    model(x)

            t = medians(step, a.warmup, a.steps)
        print(json.dumps({**base, "bench": what, "step_s": t, "images_per_s_median": a.batch / statistics.median(t)}))


if __name__ == "__main__":
    main()
