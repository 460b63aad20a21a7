#!/usr/bin/env python3
"""Dev-only: TensorFlow models of the reference's own network, for tests/tf_models.rs.

Not run by CI. Builds the reference's `src/models/inception_resnet_v1.py` (davidsandberg/facenet,
imported from the path given with --reference, never copied) in TensorFlow's `compat.v1` graph
mode, gives it random weights (conv/dense weights, non-trivial BN beta, moving mean and moving
variance), and writes what the reference's training and `freeze_graph.py` write:

    OUT/<name>/checkpoint                                 (text, `model_checkpoint_path`)
    OUT/<name>/model-<name>.ckpt-<step>.index            (tensor-bundle index table)
    OUT/<name>/model-<name>.ckpt-<step>.data-00000-of-00001
    OUT/<name>/<name>.pb                                 (frozen GraphDef, optional)
    OUT/<name>/embeddings.json                           (TensorFlow's embeddings of the crops)

The published networks are 23 M parameters (~90 MB a file): too big to commit. The widths of
every layer are divided by --width_divisor (a wrapper around `slim.conv2d` the reference module
sees; the residual blocks' 1x1 "up" convolutions keep the width of their input, as the
reference's code computes it) and the repeats kept (5 Block35, 10 Block17, 5 Block8 + Block8),
so the variable names, layer types, paddings and strides are the reference's. Our loader reads
the widths from the tensors' shapes, so it loads this network exactly as the full one.

BN statistics: one training-mode pass over the crops (and their flips) with the moving-average
decay set to 0 gives each BN its batch statistics (a well-conditioned network, not one whose
activations vanish or explode through 21 residual blocks); they are then perturbed (mean
+- 0.2 std, variance x U(0.6, 1.6)), and beta drawn from N(0, 0.2), so that a loader that
confused mean/variance, forgot beta, or used another epsilon would fail the comparison.

Setup (once):
    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf_slim
    (the `fetch` of github:davidsandberg/facenet, or a clone, for --reference)

Run (the fixture of tests/tf_models.rs):
    /tmp/tfenv/bin/python tools/make_tf_fixture.py --reference /path/to/facenet/src/models \
        --crops tests/fixtures/tf/crops --out tests/fixtures/tf
"""
import argparse
import glob
import importlib.util
import json
import os
import sys
import types

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import ops as _tf_ops  # noqa: E402

from tensorflow.python.ops import control_flow_ops as _tf_cf  # noqa: E402

# tf_slim 1.1 still names `ops.Tensor` and `control_flow_ops.cond`, which TensorFlow 2.16+
# moved away
if not hasattr(_tf_ops, "Tensor"):
    _tf_ops.Tensor = tf.Tensor
if not hasattr(_tf_cf, "cond"):
    _tf_cf.cond = tf.compat.v1.cond
import tf_slim  # noqa: E402

v1 = tf.compat.v1
v1.disable_v2_behavior()  # TF1 graphs with reference variables, as the reference's TF 1.7 made


class SlimProxy(types.ModuleType):
    """What the reference module sees as `tensorflow.contrib.slim`: tf_slim, with conv2d widths
    divided and (while calibrating) the BN moving-average decay set to 0."""

    def __init__(self, divisor):
        super().__init__("tensorflow.contrib.slim")
        self.divisor = divisor
        self.calibrating = False
        proxy = self

        def conv2d(inputs, num_outputs, *args, **kwargs):
            # the residual "up" convolutions pass normalizer_fn=None and the block's own input
            # width: keep those; divide every other width
            if not ("normalizer_fn" in kwargs and kwargs["normalizer_fn"] is None):
                num_outputs = max(1, int(num_outputs) // proxy.divisor)
            return tf_slim.conv2d(inputs, num_outputs, *args, **kwargs)

        def batch_norm(inputs, *args, **kwargs):
            if proxy.calibrating:
                kwargs["decay"] = 0.0
            return tf_slim.batch_norm(inputs, *args, **kwargs)

        # arg_scope finds a function's defaults by this key: the wrappers share the originals'
        conv2d._key_op = tf_slim.conv2d._key_op
        batch_norm._key_op = tf_slim.batch_norm._key_op
        self.conv2d = conv2d
        self.batch_norm = batch_norm

    def __getattr__(self, name):
        return getattr(tf_slim, name)


class Delegate(types.ModuleType):
    """A module that is `target` plus a few attributes of its own."""

    def __init__(self, name, target, **own):
        super().__init__(name)
        self._target = target
        self.__dict__.update(own)

    def __getattr__(self, name):
        return getattr(self._target, name)


def import_reference(path, slim):
    """Imports the reference's inception_resnet_v1.py with `tensorflow` = tf.compat.v1 and
    `tensorflow.contrib.slim` = the proxy."""
    saved = {k: sys.modules.get(k) for k in ("tensorflow", "tensorflow.contrib", "tensorflow.contrib.slim")}
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = slim
    sys.modules["tensorflow"] = Delegate("tensorflow", v1, contrib=contrib)
    sys.modules["tensorflow.contrib"] = contrib
    sys.modules["tensorflow.contrib.slim"] = slim
    try:
        spec = importlib.util.spec_from_file_location("reference_inception_resnet_v1", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for k, m in saved.items():
            if m is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = m
    return module


def read_crops(folder, size):
    """The crops (PNG) centre-cropped to size x size, fixed standardisation ((x-127.5)/128)."""
    files = sorted(glob.glob(os.path.join(folder, "*.png")))
    if not files:
        sys.exit(f"no PNG crops in {folder}")
    with v1.Session(graph=tf.Graph()) as s:
        images = [s.run(tf.image.resize_with_crop_or_pad(tf.io.decode_png(tf.io.read_file(f), channels=3), size, size)) for f in files]
    x = (np.stack(images).astype(np.float32) - 127.5) / 128.0
    return [os.path.basename(f) for f in files], x


def build(ref, size, bottleneck, classes):
    """The reference's training graph: placeholders, inference(), Logits, embeddings."""
    images = v1.placeholder(tf.float32, [None, size, size, 3], name="input")
    phase_train = v1.placeholder(tf.bool, name="phase_train")
    prelogits, _ = ref.inference(images, 1.0, phase_train=phase_train, bottleneck_layer_size=bottleneck, weight_decay=0.0)
    if classes > 0:
        tf_slim.fully_connected(
            prelogits,
            classes,
            activation_fn=None,
            weights_initializer=tf_slim.initializers.xavier_initializer(),
            scope="Logits",
            reuse=False,
        )
    embeddings = v1.nn.l2_normalize(prelogits, 1, 1e-10, name="embeddings")
    return images, phase_train, embeddings


def calibrated_values(ref, slim, size, bottleneck, classes, x, seed):
    """Variable values after one decay-0 training pass: BN moving statistics = batch statistics."""
    g = tf.Graph()
    with g.as_default():
        v1.set_random_seed(seed)
        slim.calibrating = True
        images, phase_train, embeddings = build(ref, size, bottleneck, classes)
        slim.calibrating = False
        with v1.Session(graph=g) as s:
            s.run(v1.global_variables_initializer())
            batch = np.concatenate([x, x[:, :, ::-1, :]], 0)
            s.run(embeddings, {images: batch, phase_train: True})
            return {v.op.name: s.run(v) for v in v1.global_variables()}


def freeze(sess, graph_def, outputs):
    """Variables -> constants, after turning the BN update ops of the phase_train switch into
    plain ops (what the reference's freeze_graph.py does before freezing)."""
    for node in graph_def.node:
        if node.op == "RefSwitch":
            node.op = "Switch"
            for i, name in enumerate(node.input):
                if "moving_" in name:
                    node.input[i] = name + "/read"
        elif node.op in ("AssignSub", "AssignAdd"):
            node.op = "Sub" if node.op == "AssignSub" else "Add"
            node.attr.pop("use_locking", None)
    keep = [n.name for n in graph_def.node if n.name.startswith(("InceptionResnet", "embeddings", "input", "phase_train", "Logits"))]
    return v1.graph_util.convert_variables_to_constants(sess, graph_def, outputs, variable_names_whitelist=keep)


def make(args, ref, slim, name, bottleneck, classes, with_pb, seed):
    rng = np.random.default_rng(seed)
    names, x = read_crops(args.crops, args.image_size)
    calibrated = calibrated_values(ref, slim, args.image_size, bottleneck, classes, x, seed)
    out = os.path.join(args.out, name)
    os.makedirs(out, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        images, phase_train, embeddings = build(ref, args.image_size, bottleneck, classes)
        variables = v1.trainable_variables()
        with v1.Session(graph=g) as s:
            s.run(v1.global_variables_initializer())
            for v in variables:
                value = calibrated[v.op.name]
                if v.op.name.endswith("/moving_mean"):
                    std = np.sqrt(calibrated[v.op.name.replace("moving_mean", "moving_variance")])
                    value = value + 0.2 * std * rng.standard_normal(value.shape)
                elif v.op.name.endswith("/moving_variance"):
                    value = value * rng.uniform(0.6, 1.6, value.shape)
                elif v.op.name.endswith("/beta"):
                    value = 0.2 * rng.standard_normal(value.shape)
                elif v.op.name == "Logits/biases":
                    value = 0.1 * rng.standard_normal(value.shape)
                v.load(value.astype(np.float32), s)
            # the reference saves the trainable variables (moving statistics included: its BN
            # puts them in that collection) with a global step in the file name
            saver = v1.train.Saver(variables, max_to_keep=3)
            saver.save(s, os.path.join(out, f"model-{name}.ckpt"), global_step=args.step, write_meta_graph=False)
            emb = s.run(embeddings, {images: x, phase_train: False})
            if with_pb:
                frozen = freeze(s, g.as_graph_def(), ["embeddings"])
                with open(os.path.join(out, f"{name}.pb"), "wb") as f:
                    f.write(frozen.SerializeToString())
    if with_pb:
        # the frozen graph gives the same embeddings
        pg = tf.Graph()
        with pg.as_default():
            gd = v1.GraphDef()
            with open(os.path.join(out, f"{name}.pb"), "rb") as f:
                gd.ParseFromString(f.read())
            v1.import_graph_def(gd, name="")
            with v1.Session(graph=pg) as s:
                emb_pb = s.run("embeddings:0", {"input:0": x, "phase_train:0": False})
        worst = float(np.max(np.abs(emb_pb - emb)))
        print(f"{name}: frozen graph vs checkpoint embeddings: max |diff| {worst:.2e}")
    # the checkpoint file names the training machine's absolute path, as the published ones
    with open(os.path.join(out, "checkpoint"), "w") as f:
        p = f"/home/user/models/facenet/{name}/model-{name}.ckpt-{args.step}"
        f.write(f'model_checkpoint_path: "{p}"\nall_model_checkpoint_paths: "{p}"\n')
    doc = {
        "tensorflow": tf.__version__,
        "width_divisor": args.width_divisor,
        "image_size": args.image_size,
        "standardization": "fixed",
        "embedding_size": bottleneck,
        "num_classes": classes,
        "crops": names,
        "embeddings": emb.astype(float).round(8).tolist(),
    }
    with open(os.path.join(out, "embeddings.json"), "w") as f:
        json.dump(doc, f, indent=1)
    sizes = {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out))}
    print(name, sizes)


def make_other(args):
    """A checkpoint of another network (two layers of TF-slim, none of the reference's names):
    what the loader must refuse, listing the variables it misses."""
    out = os.path.join(args.out, "other-net")
    os.makedirs(out, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        images = v1.placeholder(tf.float32, [None, 32, 32, 3], name="input")
        with v1.variable_scope("SqueezeNet"):
            net = tf_slim.conv2d(images, 8, 3, scope="conv1")
            tf_slim.fully_connected(v1.reduce_mean(net, [1, 2]), 16, activation_fn=None, scope="Bottleneck")
        with v1.Session(graph=g) as s:
            s.run(v1.global_variables_initializer())
            v1.train.Saver(v1.global_variables()).save(s, os.path.join(out, "model-other.ckpt"), global_step=1, write_meta_graph=False)
    print("other-net", sorted(os.listdir(out)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reference", required=True, help="the reference's src/models folder (inception_resnet_v1.py)")
    p.add_argument("--crops", required=True, help="folder of aligned face crops (PNG)")
    p.add_argument("--out", required=True)
    p.add_argument("--image_size", type=int, default=80)
    p.add_argument("--width_divisor", type=int, default=16)
    p.add_argument("--step", type=int, default=275)
    p.add_argument("--only_other", action="store_true", help="write only the checkpoint of another network")
    args = p.parse_args()
    make_other(args)
    if args.only_other:
        return
    slim = SlimProxy(args.width_divisor)
    ref = import_reference(os.path.join(args.reference, "inception_resnet_v1.py"), slim)
    # a 128-d model with a Logits layer (checkpoint and frozen graph), a 512-d one without
    make(args, ref, slim, "tiny-128", 128, 10, True, 1)
    make(args, ref, slim, "tiny-512", 512, 0, False, 2)


if __name__ == "__main__":
    main()
