#!/usr/bin/env python3
"""Dev-only (never run by CI): checks that a facenet-pytorch InceptionResnetV1 state dict
loaded by `facenet` gives the same embeddings as PyTorch.

Published weights cannot be downloaded here, so the script makes a model with random weights
and non-trivial batch-norm statistics (a few train-mode forward passes), saves its state dict
(the same layout as the published .pt files), embeds face crops with PyTorch, runs
`facenet embed --model model.pt` on the same crops and prints the cosine similarity per image.

Usage (a Python environment with torch and facenet-pytorch):
  /tmp/peer-env/bin/python tools/check_pytorch_parity.py --facenet target/release/facenet \
      --out /tmp/irv1_parity CROP.png [CROP.png ...]     # 182x182 aligned crops
"""
import argparse, json, subprocess, sys

import numpy as np
import torch
from PIL import Image


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--facenet", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("crops", nargs="+")
    a = p.parse_args()
    from facenet_pytorch import InceptionResnetV1
    torch.manual_seed(0)
    model = InceptionResnetV1(classify=False)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 160, 160) * 0.8 + 0.1)
    model.eval()
    pt = f"{a.out}/model.pt"
    torch.save(model.state_dict(), pt, _use_new_zipfile_serialization=False)
    xs = []
    for c in a.crops:
        img = np.asarray(Image.open(c).convert("RGB"), dtype=np.float32)
        h, w = img.shape[:2]
        oy, ox = (h - 160) // 2, (w - 160) // 2
        img = img[oy:oy + 160, ox:ox + 160]
        xs.append(((img - 127.5) / 128.0).transpose(2, 0, 1))
    with torch.no_grad():
        ref = model(torch.from_numpy(np.stack(xs))).numpy()
    out_npy = f"{a.out}/ours.npy"
    subprocess.run([a.facenet, "embed", "--model", pt, *a.crops, "-o", out_npy], check=True)
    ours = np.load(out_npy)
    cos = (ref * ours).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(ours, axis=1)
    res = {"images": len(a.crops), "cosine_min": float(cos.min()), "cosine": cos.tolist(),
           "max_abs_diff": float(np.abs(ref - ours).max())}
    print(json.dumps(res, indent=1))
    sys.exit(0 if cos.min() >= 0.9999 else 1)


if __name__ == "__main__":
    main()
