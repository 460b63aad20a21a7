#!/usr/bin/env python3
"""Dev-only (never run by CI): runs a model exported by `facenet export ... .onnx` in
onnxruntime and compares its embeddings with those `facenet embed` prints for the same images.

The script exports MODEL itself, reads the input size and standardisation from the graph's
metadata (facenet.image_size, facenet.standardization), prepares the images as `facenet embed`
does (TF's resize_image_with_crop_or_pad to the size, then the standardisation), runs the graph
on all images at once and one at a time (the batch dimension is dynamic), and prints the
cosine similarity per image. Exit status 1 when any cosine is below 0.9999.

Usage (a Python environment with onnxruntime and numpy, e.g. a venv under /tmp):
  python3 -m venv /tmp/onnx-env && /tmp/onnx-env/bin/pip install onnxruntime numpy pillow
  /tmp/onnx-env/bin/python tools/check_onnx.py --facenet target/release/facenet \
      --model RUN/models --out /tmp/onnx_check IMAGE.png [IMAGE.png ...]
"""
import argparse, json, os, subprocess, sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def crop_or_pad(img, size):
    """TF's resize_image_with_crop_or_pad (as src/data/preprocess.rs center_crop_or_pad)."""
    h, w = img.shape[:2]
    out = np.zeros((size, size, 3), dtype=img.dtype)
    sx, dx = ((w - size) // 2, 0) if w >= size else (0, (size - w) // 2)
    sy, dy = ((h - size) // 2, 0) if h >= size else (0, (size - h) // 2)
    cw, ch = min(w, size), min(h, size)
    out[dy:dy + ch, dx:dx + cw] = img[sy:sy + ch, sx:sx + cw]
    return out


def standardize(img, how):
    x = img.astype(np.float64)
    if how == "fixed":
        y = (x - 127.5) / 128.0
    elif how == "per_image":
        std = max(x.std(), 1.0 / np.sqrt(x.size))
        y = (x - x.mean()) / std
    else:
        raise SystemExit(f"unknown standardization '{how}' in the graph's metadata")
    return y.astype(np.float32).transpose(2, 0, 1)


def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--facenet", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    onnx_path = os.path.join(a.out, "model.onnx")
    subprocess.run([a.facenet, "export", a.model, onnx_path], check=True)
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    size, how = int(meta["facenet.image_size"]), meta["facenet.standardization"]
    ours_npy = os.path.join(a.out, "ours.npy")
    subprocess.run([a.facenet, "embed", "--device", "cpu", "--model", a.model, *a.images, "-o", ours_npy], check=True)
    ours = np.load(ours_npy)
    x = np.stack([standardize(crop_or_pad(np.asarray(Image.open(f).convert("RGB")), size), how) for f in a.images])
    name = sess.get_inputs()[0].name
    batch = sess.run(None, {name: x})[0]
    single = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    cb, cs = cosines(batch, ours), cosines(single, ours)
    res = {
        "onnxruntime": ort.__version__, "images": len(a.images), "image_size": size, "standardization": how,
        "input_shape": [d if isinstance(d, int) else str(d) for d in sess.get_inputs()[0].shape],
        "cosine_min_batch": float(cb.min()), "cosine_min_batch1": float(cs.min()),
        "max_abs_diff": float(np.abs(batch - ours).max()),
        "norms": [float(v) for v in np.linalg.norm(batch, axis=1)[:4]],
    }
    print(json.dumps(res, indent=1))
    sys.exit(0 if min(cb.min(), cs.min()) >= 0.9999 else 1)


if __name__ == "__main__":
    main()
