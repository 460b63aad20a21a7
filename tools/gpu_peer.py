#!/usr/bin/env python3
"""The peer of `facenet bench train` / `bench embed` on a GPU: facenet-pytorch's
InceptionResnetV1 on the same GPU, as tools/gpu-check.sh runs it.

Per batch size and mode, one JSON line on stdout:
  train      classify=True, softmax cross-entropy + center loss (factor 1e-2, alfa 0.9) + L2
             weight decay 5e-5, RMSprop (alpha 0.9, momentum 0.9, eps 1.0, lr 0.01): the step
             `facenet bench train` times; images/s (median step), peak GPU memory
  inference  eval + no_grad embeddings; images/s, peak GPU memory
Modes: `eager` (fp32) and `compile-bf16` (torch.compile + bf16 autocast), the second peer.

Needs torch with CUDA and facenet-pytorch (`pip install --no-deps facenet-pytorch==2.6.0`).
Example: python3 tools/gpu_peer.py --batch 90 256 --steps 20
"""
import argparse
import json
import statistics
import time

import torch


def timed(fn, warmup, steps):
    out = []
    for i in range(warmup + steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if i >= warmup:
            out.append(time.perf_counter() - t)
    return out


def measure(a, batch, mode, what):
    from facenet_pytorch import InceptionResnetV1

    dev = torch.device("cuda")
    torch.manual_seed(0)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    x = torch.randn(batch, 3, a.image_size, a.image_size, device=dev)
    bf16 = mode == "compile-bf16"
    if what == "train":
        model = InceptionResnetV1(classify=True, num_classes=a.num_classes, dropout_prob=0.2).to(dev).train()
        opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1.0, momentum=0.9)
        y = torch.randint(0, a.num_classes, (batch,), device=dev)
        centers = torch.zeros(a.num_classes, 512, device=dev)
        logits_layer = model.logits
        model.logits = torch.nn.Identity()  # forward returns the embedding; logits applied here

        def loss_of(emb_pre):
            # facenet-pytorch's classify path: logits of the (un-normalised) bottleneck output
            logits = logits_layer(emb_pre)
            xent = torch.nn.functional.cross_entropy(logits, y)
            c = centers[y]
            center = ((emb_pre - c) ** 2).mean()
            l2 = sum((p * p).sum() for n, p in model.named_parameters() if p.dim() > 1) * 0.5 * 5e-5
            return xent + 1e-2 * center + l2, emb_pre.detach(), c

        fwd = torch.compile(model) if bf16 else model

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                emb = fwd(x)
                loss, e, c = loss_of(emb.float() if bf16 else emb)
            loss.backward()
            opt.step()
            with torch.no_grad():
                centers.index_add_(0, y, (1 - 0.9) * (e.float() - c))

    else:
        model = InceptionResnetV1().to(dev).eval()
        fwd = torch.compile(model) if bf16 else model

        def step():
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                fwd(x)

    t = timed(step, a.warmup + (3 if bf16 else 0), a.steps)
    med = statistics.median(t)
    return {
        "peer": "facenet-pytorch",
        "bench": what,
        "mode": mode,
        "batch_size": batch,
        "image_size": a.image_size,
        "step_s": t,
        "images_per_s_median": batch / med,
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20,
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, nargs="+", default=[90, 256])
    p.add_argument("--image_size", type=int, default=160)
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--modes", nargs="+", default=["eager", "compile-bf16"])
    p.add_argument("--only", choices=["train", "inference"], action="append")
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    for what in a.only or ["train", "inference"]:
        for mode in a.modes:
            for b in a.batch:
                try:
                    r = measure(a, b, mode, what)
                except Exception as e:  # one failing configuration must not hide the others
                    r = {"peer": "facenet-pytorch", "bench": what, "mode": mode, "batch_size": b, "error": repr(e)[:300]}
                print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
