#!/usr/bin/env python3
"""Dev-only: expected MTCNN numbers from the reference aligner, for tests/align_parity.rs.

Not run by CI. Runs the reference (davidsandberg/facenet: src/align/detect_face.py and
align_dataset_mtcnn.py) in a private virtual environment and writes small numeric fixtures to
tests/fixtures/mtcnn/ (no photos, no weights, no reference code are written there).

Setup (once, ~1 GB):
    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu opencv-python-headless pillow numpy scipy scikit-learn six
    git clone https://github.com/davidsandberg/facenet /tmp/facenet-ref      # the reference
    python3 -m pip download --no-deps insightface==2.1 -d /tmp/whl           # sample photos
    unzip -o /tmp/whl/insightface-2.1-py3-none-any.whl 'insightface/data/images/*' -d /tmp/photos

Run:
    /tmp/tfenv/bin/python tools/make_mtcnn_fixtures.py --facenet_src /tmp/facenet-ref \
        --photos /tmp/photos/insightface/data/images --out tests/fixtures/mtcnn

The reference runs unchanged except for three local edits in a temporary copy: TF1 API via
tensorflow.compat.v1, allow_pickle=True for det*.npy, and a PIL stand-in for the removed
scipy.misc (imread / bilinear imresize / imsave).
"""
import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time
import types

import numpy as np


def install_scipy_misc_standin():
    """scipy.misc (imread, imresize, imsave) is gone from SciPy; the reference needs it."""
    from PIL import Image
    import scipy

    misc = types.ModuleType("scipy.misc")

    def imread(path, flatten=False, mode=None):
        im = Image.open(path)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode == "1":
            im = im.convert("L")
        return np.array(im)

    def imresize(arr, size, interp="bilinear", mode=None):
        assert interp == "bilinear"
        im = Image.fromarray(np.asarray(arr, dtype=np.uint8))
        return np.array(im.resize((size[1], size[0]), resample=Image.BILINEAR))

    def imsave(path, arr):
        Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)

    misc.imread, misc.imresize, misc.imsave = imread, imresize, imsave
    sys.modules["scipy.misc"] = misc
    scipy.misc = misc


def prepare_reference(src, work):
    """Copies the reference's aligner into `work` with the three local edits."""
    align_dir = os.path.join(work, "align")
    os.makedirs(align_dir)
    open(os.path.join(align_dir, "__init__.py"), "w").close()
    for name in ["det1.npy", "det2.npy", "det3.npy"]:
        shutil.copy(os.path.join(src, "src", "align", name), align_dir)
    tf1 = "import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()\n"
    for rel, dst in [("src/align/detect_face.py", "align/detect_face.py"),
                     ("src/align/align_dataset_mtcnn.py", "align_dataset_mtcnn.py"),
                     ("src/facenet.py", "facenet.py")]:
        text = open(os.path.join(src, rel)).read()
        text = text.replace("import tensorflow as tf\n", tf1, 1)
        text = text.replace("np.load(data_path, encoding='latin1')",
                            "np.load(data_path, encoding='latin1', allow_pickle=True)")
        open(os.path.join(work, dst), "w").write(text)
    sys.path.insert(0, work)


def pattern(shape):
    """Deterministic NHWC input in the nets' normalised range, exact in float32 (the Rust
    test builds the same values): v_i = ((i * 7919 + 13) % 256 - 127.5) / 128."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64)
    return (((i * 7919 + 13) % 256 - 127.5) * 0.0078125).astype(np.float32).reshape(shape)


def image_pattern(h, w):
    """Deterministic uint8 RGB test image (same formula in the Rust test)."""
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return ((x * x * 3 + y * 7 + c * 50 + x * y) % 256).astype(np.uint8)


def net_fixtures(pnet, rnet, onet):
    """Each net alone on a fixed input, outputs in image (not transposed) layout."""
    out = {}
    x = pattern((1, 40, 50, 3))
    reg, prob = pnet(np.transpose(x, (0, 2, 1, 3)))
    reg = np.transpose(reg, (0, 2, 1, 3))
    prob = np.transpose(prob, (0, 2, 1, 3))
    out["pnet"] = {"input_nhwc": list(x.shape), "prob": prob[0, :, :, 1].tolist(),
                   "reg": np.transpose(reg[0], (2, 0, 1)).tolist()}
    x = pattern((3, 24, 24, 3))
    reg, prob = rnet(np.transpose(x, (0, 2, 1, 3)))
    out["rnet"] = {"input_nhwc": list(x.shape), "prob": prob[:, 1].tolist(), "reg": reg.tolist()}
    x = pattern((2, 48, 48, 3))
    reg, points, prob = onet(np.transpose(x, (0, 2, 1, 3)))
    out["onet"] = {"input_nhwc": list(x.shape), "prob": prob[:, 1].tolist(), "reg": reg.tolist(),
                   "points": points.tolist()}
    return out


def resize_fixtures(out_dir):
    """cv2 INTER_AREA on the pyramid's uint8 path and on the crops' float64 path."""
    import cv2
    img = image_pattern(44, 60)
    cases = []
    for (w, h) in [(37, 27), (26, 19), (13, 9), (30, 22), (20, 11), (61, 45), (75, 30)]:
        r = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        cases.append({"src": [44, 60], "dst": [h, w], "dtype": "u8", "out_hex": r.reshape(-1).tobytes().hex()})
    # float64 crops with zero padding (like the R-Net / O-Net inputs)
    crop = np.zeros((31, 29, 3))
    crop[3:, 2:, :] = img[:28, :27, :]
    for (src, (w, h)) in [(crop, (24, 24)), (crop[:17, :18], (24, 24)), (crop[:13, :13], (48, 48)),
                          (crop[:25, :24], (24, 24)), (crop[:30, :29], (48, 48))]:
        r = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
        cases.append({"src_f64_rows_cols": list(src.shape[:2]), "dst": [h, w], "dtype": "f64",
                      "out_sum": float(r.sum()), "out": [float(v) for v in r.reshape(-1)[::7]]})
    return {"image": "((x*x*3 + y*7 + c*50 + x*y) % 256), h=44, w=60", "crop": "zeros(31,29,3); [3:,2:] = img[:28,:27]",
            "cases": cases, "opencv": cv2.__version__}


def photo_fixtures(detect_face, pnet, rnet, onet, photos):
    from scipy import misc
    out = []
    for path in photos:
        img = misc.imread(path)
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        img = img[:, :, 0:3]
        t = time.perf_counter()
        boxes, points = detect_face.detect_face(img, 20, pnet, rnet, onet, [0.6, 0.7, 0.7], 0.709)
        dt = time.perf_counter() - t
        faces = [{"box": boxes[i, 0:4].tolist(), "prob": float(boxes[i, 4]),
                  "landmarks": [[float(points[k, i]), float(points[k + 5, i])] for k in range(5)]}
                 for i in range(boxes.shape[0])]
        out.append({"photo": os.path.basename(path), "height": int(img.shape[0]), "width": int(img.shape[1]),
                    "seconds": dt, "faces": faces})
        print(f"{os.path.basename(path)}: {len(faces)} faces, {dt:.3f} s", file=sys.stderr)
    return out


def align_fixtures(work, photos, multiple):
    """Runs the reference's align_dataset_mtcnn.py on a dataset made of the photos."""
    import subprocess
    from PIL import Image
    data = os.path.join(work, "data")
    for p in photos:
        d = os.path.join(data, "photos")
        os.makedirs(d, exist_ok=True)
        shutil.copy(p, d)
    out = os.path.join(work, "aligned_multi" if multiple else "aligned")
    runner = os.path.join(work, "run_align.py")
    open(runner, "w").write(
        "import sys\nsys.path.insert(0, %r)\nimport make_mtcnn_fixtures as m\nm.install_scipy_misc_standin()\n"
        "sys.path.insert(0, %r)\nimport align_dataset_mtcnn as a\na.main(a.parse_arguments(sys.argv[1:]))\n"
        % (os.path.dirname(os.path.abspath(__file__)), work))
    args = [sys.executable, runner, data, out, "--image_size", "182", "--margin", "44"]
    if multiple:
        args += ["--detect_multiple_faces", "True"]
    subprocess.run(args, check=True, cwd=work, stdout=subprocess.DEVNULL)
    lines = []
    for f in glob.glob(os.path.join(out, "bounding_boxes_*.txt")):
        lines += open(f).read().splitlines()
    crops = []
    for line in sorted(lines):
        parts = line.split()
        rel = os.path.relpath(parts[0], out)
        entry = {"output": rel, "box": [int(v) for v in parts[1:]]}
        if len(parts) == 5:
            px = np.asarray(Image.open(parts[0]).convert("RGB"), dtype=np.float64)
            entry["mean_rgb"] = px.reshape(-1, 3).mean(axis=0).tolist()
        crops.append(entry)
    return crops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--facenet_src", required=True, help="checkout of davidsandberg/facenet")
    ap.add_argument("--photos", help="folder of sample photos (insightface/data/images)")
    ap.add_argument("--out", default="tests/fixtures/mtcnn")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    install_scipy_misc_standin()
    work = tempfile.mkdtemp(prefix="mtcnn-ref-")
    prepare_reference(a.facenet_src, work)
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    from align import detect_face

    with tf.Graph().as_default():
        sess = tf.Session()
        with sess.as_default():
            pnet, rnet, onet = detect_face.create_mtcnn(sess, os.path.join(work, "align"))
        json.dump(net_fixtures(pnet, rnet, onet), open(os.path.join(a.out, "nets.json"), "w"))
        json.dump(resize_fixtures(a.out), open(os.path.join(a.out, "resize.json"), "w"))
        if a.photos:
            photos = sorted(glob.glob(os.path.join(a.photos, "*.jpg")) + glob.glob(os.path.join(a.photos, "*.png")))
            res = {"source": "insightface==2.1 wheel, insightface/data/images/", "minsize": 20,
                   "threshold": [0.6, 0.7, 0.7], "factor": 0.709,
                   "photos": photo_fixtures(detect_face, pnet, rnet, onet, photos)}
            res["align"] = align_fixtures(work, photos, False)
            res["align_multiple"] = align_fixtures(work, photos, True)
            json.dump(res, open(os.path.join(a.out, "photos.json"), "w"), indent=1)
    shutil.rmtree(work, ignore_errors=True)
    print("fixtures written to", a.out, file=sys.stderr)


if __name__ == "__main__":
    main()
