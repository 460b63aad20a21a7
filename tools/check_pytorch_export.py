#!/usr/bin/env python3
"""Dev-only (never run by CI): checks that a state dict written by `facenet export MODEL
out.pt` loads into facenet-pytorch's InceptionResnetV1 (a strict load_state_dict) and gives
the embeddings `facenet embed` gives for the same images.

MODEL must be the full network with 512-d embeddings (facenet-pytorch's class has no other
shape), e.g. a facenet-pytorch .pt itself, or one of our checkpoints trained with
--model_def inception_resnet_v1 --embedding_size 512. Without --model the script makes one:
a facenet-pytorch network with random weights and moved batch-norm statistics, saved with
torch.save, exported by `facenet export` (a .pt read and written by us), and loaded back.

Usage (torch + facenet-pytorch 2.6.0 installed with --no-deps, e.g. /tmp/peer-env):
  /tmp/peer-env/bin/python tools/check_pytorch_export.py --facenet target/release/facenet \
      --out /tmp/pt_export [--model MODEL] IMAGE.png [IMAGE.png ...]
"""
import argparse, json, os, subprocess, sys

import numpy as np
import torch
from PIL import Image


def crop_or_pad(img, size):
    h, w = img.shape[:2]
    out = np.zeros((size, size, 3), dtype=img.dtype)
    sx, dx = ((w - size) // 2, 0) if w >= size else (0, (size - w) // 2)
    sy, dy = ((h - size) // 2, 0) if h >= size else (0, (size - h) // 2)
    cw, ch = min(w, size), min(h, size)
    out[dy:dy + ch, dx:dx + cw] = img[sy:sy + ch, sx:sx + cw]
    return out


def standardize(img, how):
    x = img.astype(np.float64)
    if how == "Fixed":
        y = (x - 127.5) / 128.0
    else:
        y = (x - x.mean()) / max(x.std(), 1.0 / np.sqrt(x.size))
    return y.astype(np.float32).transpose(2, 0, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--facenet", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model")
    p.add_argument("images", nargs="+")
    a = p.parse_args()
    from facenet_pytorch import InceptionResnetV1
    os.makedirs(a.out, exist_ok=True)
    model_path = a.model
    if model_path is None:
        torch.manual_seed(0)
        src = InceptionResnetV1(classify=False)
        src.train()
        with torch.no_grad():
            for _ in range(3):
                src(torch.randn(8, 3, 160, 160) * 0.8 + 0.1)
        model_path = os.path.join(a.out, "source.pt")
        torch.save(src.eval().state_dict(), model_path)
    out_pt = os.path.join(a.out, "exported.pt")
    printed = subprocess.run([a.facenet, "export", model_path, out_pt], check=True, capture_output=True, text=True).stdout
    how = "Fixed" if "Fixed" in printed else "PerImage"
    sd = torch.load(out_pt)  # weights_only (the default since torch 2.6): only tensors inside
    net = InceptionResnetV1(classify=False, num_classes=None).eval()
    result = net.load_state_dict(sd)  # strict: every key present, none left over
    ours_npy = os.path.join(a.out, "ours.npy")
    subprocess.run([a.facenet, "embed", "--device", "cpu", "--model", model_path, *a.images, "-o", ours_npy], check=True)
    ours = np.load(ours_npy)
    x = np.stack([standardize(crop_or_pad(np.asarray(Image.open(f).convert("RGB")), 160), how) for f in a.images])
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    cos = (ref * ours).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(ours, axis=1)
    res = {"torch": torch.__version__, "keys": len(sd), "load_state_dict": str(result), "images": len(a.images),
           "standardization": how, "cosine_min": float(cos.min()), "max_abs_diff": float(np.abs(ref - ours).max())}
    print(json.dumps(res, indent=1))
    sys.exit(0 if cos.min() >= 0.9999 else 1)


if __name__ == "__main__":
    main()
