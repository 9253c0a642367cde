"""Tiny ONNX classifiers built with ``onnx.helper`` for the tests (no torch, no network).

Every model undoes its declared input scaling and classifies the mean grey
level of the image: dark -> class 0, mid -> class 1, bright -> class 2
(two classes: dark/bright; one sigmoid unit: bright = positive). A model fed
with the wrong scaling or layout therefore gets the classes wrong, which is
what the ModelSpec tests rely on.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _scaling(scaling: str, channels: int, mean=None, std=None):
    if scaling == "unit":
        m, s, f = [0.0], [1.0], 1.0
    elif scaling == "0-255":
        m, s, f = [0.0], [1.0], 255.0
    elif scaling == "imagenet":
        m, s, f = list(IMAGENET_MEAN), list(IMAGENET_STD), 1.0
        if channels == 1:
            m, s = [float(np.mean(IMAGENET_MEAN))], [float(np.mean(IMAGENET_STD))]
    elif scaling == "minus1-1":
        m, s, f = [0.5], [0.5], 1.0
    else:
        m, s, f = list(mean), list(std), 1.0
    if len(m) == 1:
        m, s = m * channels, s * channels
    return np.array(m, np.float32), np.array(s, np.float32), f


def make_classifier(
    path: str | Path,
    *,
    layout: str = "NCHW",
    channels: int = 3,
    size: int | None = 32,
    scaling: str = "unit",
    output: str = "logits",
    dtype: str = "float32",
    num_classes: int = 3,
    class_names=None,
    metadata: dict | None = None,
    declare_scaling: bool = True,
    mean=None,
    std=None,
    fixed_batch: bool = False,
) -> Path:
    """Write a brightness classifier with the given contract; returns the path."""
    h = w = size if size else None
    n = 1 if fixed_batch else "N"
    dims = [n, channels, h or "H", w or "W"] if layout == "NCHW" else [n, h or "H", w or "W", channels]
    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "uint8": TensorProto.UINT8}[dtype]
    x = helper.make_tensor_value_info("pixels", elem, dims)
    nodes, inits = [], []
    cur = "pixels"
    if dtype != "float32":
        nodes.append(helper.make_node("Cast", [cur], ["as_float"], to=TensorProto.FLOAT))
        cur = "as_float"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [cur], ["nchw"], perm=[0, 3, 1, 2]))
        cur = "nchw"
    m, s, f = _scaling(scaling if dtype != "uint8" else "0-255", channels, mean, std)
    inits += [
        numpy_helper.from_array(s.reshape(1, -1, 1, 1), "std"),
        numpy_helper.from_array(m.reshape(1, -1, 1, 1), "mean"),
        numpy_helper.from_array(np.array(1.0 / f, np.float32), "inv_factor"),
    ]
    nodes += [
        helper.make_node("Mul", [cur, "std"], ["t1"]),
        helper.make_node("Add", ["t1", "mean"], ["t2"]),
        helper.make_node("Mul", ["t2", "inv_factor"], ["unit"]),
        helper.make_node("ReduceMean", ["unit"], ["bright"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["bright", "ax1"], ["bright2"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    if output.startswith("sigmoid"):
        wv, bv = np.array([[20.0]], np.float32), np.array([-10.0], np.float32)
        k_out = 1
    elif num_classes == 2:
        wv, bv = np.array([[-20.0, 20.0]], np.float32), np.array([10.0, -10.0], np.float32)
        k_out = 2
    else:
        wv, bv = np.array([[-20.0, 0.0, 20.0]], np.float32), np.array([6.0, 0.0, -14.0], np.float32)
        k_out = 3
    inits += [numpy_helper.from_array(wv, "W"), numpy_helper.from_array(bv, "B")]
    nodes += [helper.make_node("MatMul", ["bright2", "W"], ["mm"]), helper.make_node("Add", ["mm", "B"], ["logits"])]
    out_name = "logits"
    if output == "probabilities":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
        out_name = "probs"
    elif output == "sigmoid_probability":
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["prob"]))
        out_name = "prob"
    y = helper.make_tensor_value_info(out_name, TensorProto.FLOAT, [n, k_out])
    graph = helper.make_graph(nodes, "brightness", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="xray-audit-tests")
    model.ir_version = 8
    props = dict(metadata or {})
    if class_names is not None:
        props["class_names"] = json.dumps(list(class_names))
    if declare_scaling and dtype != "uint8":
        props.setdefault("scaling", scaling)
        if scaling == "custom":
            props["mean"] = json.dumps(list(mean))
            props["std"] = json.dumps(list(std))
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def brightness_images(
    n_per_class: int, size: int = 32, levels=(0.15, 0.5, 0.85), seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1, size, size)`` images whose mean grey level is one of ``levels``, and their class."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, lvl in enumerate(levels):
        for _ in range(n_per_class):
            xs.append(np.clip(lvl + rng.uniform(-0.05, 0.05, (1, size, size)), 0, 1))
            ys.append(k)
    return np.stack(xs).astype(np.float32), np.array(ys)


def write_image_folder(
    root: Path,
    classes=("normal", "pneumonia", "pneumothorax"),
    n_per_class: int = 4,
    size: int = 40,
    seed: int = 0,
    patient_manifest: bool = False,
) -> Path:
    """A ``root/<class>/*.png`` folder of brightness images (class k has level k)."""
    import cv2

    x, y = brightness_images(n_per_class, size, levels=(0.15, 0.5, 0.85)[: len(classes)], seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,patient_id"]
    for i, (img, k) in enumerate(zip(x, y)):
        d = root / classes[k]
        d.mkdir(exist_ok=True)
        name = f"img_{i:03d}.png"
        cv2.imwrite(str(d / name), np.rint(img[0] * 255).astype(np.uint8))
        rows.append(f"{classes[k]}/{name},{classes[k]},P{i // 2:03d}")
    if patient_manifest:
        (root / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return root
