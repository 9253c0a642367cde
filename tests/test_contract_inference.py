"""The input contract is inferred from the graph or flagged, never silently wrong (issue 29, item 1).

Each model here classifies the mean grey level of its input (dark / mid / bright, as in
``onnx_factory``) after rescaling the input inside its own graph, the way a tf2onnx export of a
Keras model with ``Rescaling(1/255)`` or a torch export with an in-graph ImageNet normalisation
does; no model declares its scaling in metadata.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from auditor.cli import cli
from auditor.models.contract_check import contract_check, spec_with, suggest_scaling
from auditor.models.onnx import OnnxClassifier
from auditor.models.spec import read_spec
from auditor.models.spec_graph import INFERRED_NOTE
from onnx_factory import IMAGENET_MEAN, IMAGENET_STD, brightness_images, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _const(name, values, shape=None):
    arr = np.asarray(values, np.float32)
    return numpy_helper.from_array(arr.reshape(shape) if shape else arr, name)


def rescaling_model(path, steps, *, layout="NHWC", cast=False, late=False):
    """A 3-channel brightness classifier whose graph applies ``steps`` ((op, constant) pairs) to its input.

    ``layout="NHWC"`` puts a Transpose before the steps (as tf2onnx does); ``cast`` a float->float
    Cast; ``late`` applies the steps after a ReduceMean (so nothing can be read from the graph).
    Whatever the steps, the classifier then reads the mean of ``(x_model - undo_b) / undo_a``, i.e.
    the brightness in [0, 1] when the input is on the scale the steps expect.
    """
    dims = ["N", 32, 32, 3] if layout == "NHWC" else ["N", 3, 32, 32]
    x = helper.make_tensor_value_info("input_1", TensorProto.FLOAT, dims)
    nodes, inits, cur = [], [], "input_1"
    if cast:
        nodes.append(helper.make_node("Cast", [cur], ["cast_out"], to=TensorProto.FLOAT))
        cur = "cast_out"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [cur], ["nchw"], perm=[0, 3, 1, 2]))
        nodes.append(helper.make_node("Shape", ["nchw"], ["nchw_shape"]))  # a shape read beside, as tf2onnx does
        cur = "nchw"
    if late:
        nodes.append(helper.make_node("ReduceMean", [cur], ["early_mean"], axes=[1, 2, 3], keepdims=1))
        cur = "early_mean"
    for i, (op, value) in enumerate(steps):
        value = np.asarray(value, np.float32)
        inits.append(_const(f"c{i}", value, (1, -1, 1, 1) if value.size > 1 else None))
        nodes.append(helper.make_node(op, [cur, f"c{i}"], [f"s{i}"]))
        cur = f"s{i}"
    # the rescaled tensor is (x01 - m) / s per channel for some m, s; undo it back to [0, 1]
    a, b = np.ones(3), np.zeros(3)
    for op, value in steps:
        c = np.broadcast_to(np.asarray(value, np.float64), (3,))
        a, b = {"Mul": (a * c, b * c), "Div": (a / c, b / c), "Add": (a, b + c), "Sub": (a, b - c)}[op]
    top = 255.0 if _expects_0_255(steps) else 1.0
    scale, shift = a * top, b  # rescaled = x01 * scale + shift
    inits += [_const("undo_shift", shift, (1, 3, 1, 1)), _const("undo_scale", scale, (1, 3, 1, 1))]
    nodes += [
        helper.make_node("Dropout", [cur], ["features"]),  # stands for the first layer (an identity at inference)
        helper.make_node("Sub", ["features", "undo_shift"], ["u1"]),
        helper.make_node("Div", ["u1", "undo_scale"], ["unit"]),
        helper.make_node("ReduceMean", ["unit"], ["bright"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["bright", "ax1"], ["bright2"]),
        helper.make_node("MatMul", ["bright2", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    inits += [
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        _const("W", [[-20.0, 0.0, 20.0]]),
        _const("B", [6.0, 0.0, -14.0]),
    ]
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])
    model = helper.make_model(
        helper.make_graph(nodes, "rescaling", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="tf2onnx",
        producer_version="1.17.0 None",
    )
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "class_names", json.dumps(CLASSES)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _expects_0_255(steps) -> bool:
    """The input range the test's own ``steps`` were written for (a factor below 0.1 means 0-255)."""
    scale = 1.0
    for op, value in steps:
        v = float(np.mean(value))
        scale = scale * v if op == "Mul" else scale / v if op == "Div" else scale
    return abs(scale) < 0.1


KERAS_RESCALING = [("Mul", 1 / 255)]
KERAS_TF_MODE = [("Div", 127.5), ("Sub", 1.0)]
IMAGENET_IN_GRAPH = [("Sub", IMAGENET_MEAN), ("Div", IMAGENET_STD)]
RESCALE_THEN_IMAGENET = [("Div", 255.0), ("Sub", IMAGENET_MEAN), ("Div", IMAGENET_STD)]


@pytest.mark.parametrize(
    ("steps", "layout", "cast", "expected", "said"),
    [
        (KERAS_RESCALING, "NHWC", False, "0-255", "Mul 0.00392157"),
        (KERAS_RESCALING, "NHWC", True, "0-255", "maps 0-255 pixels to [0, 1]"),
        (KERAS_TF_MODE, "NHWC", False, "0-255", "to [-1, 1]"),
        (IMAGENET_IN_GRAPH, "NCHW", False, "unit", "(ImageNet mean/std)"),
        (RESCALE_THEN_IMAGENET, "NHWC", False, "0-255", "(ImageNet mean/std)"),
    ],
)
def test_in_graph_rescaling_is_inferred_and_classifies(tmp_path, steps, layout, cast, expected, said):
    path = rescaling_model(tmp_path / "m.onnx", steps, layout=layout, cast=cast)
    spec = read_spec(path)
    assert spec.scaling == expected and spec.sources["scaling"] == "graph"
    note = next(w for w in spec.warnings if w.startswith(INFERRED_NOTE))
    assert said in note and "--scaling" in note
    assert not any("not declared" in w for w in spec.warnings)
    x, y = brightness_images(3, 32)
    assert (OnnxClassifier(path, spec=spec).predict_proba(x).argmax(1) == y).all()
    # the inference is what makes it right: the old default misfeeds the model
    wrong = spec_with(spec, scaling="unit" if expected == "0-255" else "0-255")
    assert (OnnxClassifier(path, spec=wrong).predict_proba(x).argmax(1) != y).any()


def test_declared_scaling_wins_over_the_graph(tmp_path):
    path = rescaling_model(tmp_path / "m.onnx", KERAS_RESCALING)
    spec = read_spec(path, overrides={"scaling": "minus1-1"})
    assert spec.scaling == "minus1-1" and spec.sources["scaling"] == "flag"
    assert not any(w.startswith(INFERRED_NOTE) for w in spec.warnings)


def test_rescaling_out_of_reach_stays_a_guess(tmp_path):
    """A rescaling after another op is not read: the default is kept, with its warning."""
    path = rescaling_model(tmp_path / "m.onnx", KERAS_RESCALING, late=True)
    spec = read_spec(path)
    assert spec.scaling == "unit" and spec.sources["scaling"] == "default"
    assert any("not declared" in w for w in spec.warnings)


def test_inspect_shows_the_inferred_scaling_and_producer(tmp_path):
    path = rescaling_model(tmp_path / "keras.onnx", KERAS_RESCALING)
    r = CliRunner().invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 0, r.output
    assert "0-255" in r.output and "graph" in r.output
    assert f"note: {INFERRED_NOTE}" in r.output
    assert "tf2onnx 1.17.0" in r.output and "None" not in r.output
    doc = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    assert doc["spec"]["scaling"] == "0-255" and doc["spec"]["sources"]["scaling"] == "graph"
    assert doc["producer"] == "tf2onnx 1.17.0"


# ----------------------------------------------------------------------------- the clean-stage check
def _guessed_spec(tmp_path):
    return read_spec(rescaling_model(tmp_path / "late.onnx", KERAS_RESCALING, late=True))


def test_contract_check_flags_one_class_predictions(tmp_path):
    spec = _guessed_spec(tmp_path)
    y = np.repeat([0, 1, 2], 5)
    proba = np.tile([0.1, 0.2, 0.7], (15, 1)) + np.linspace(0, 0.05, 15)[:, None] * [1, -1, 0]
    check = contract_check(spec, y, proba)
    assert check is not None and "predicted pneumothorax" in check["reason"]
    assert "--scaling 0-255" in check["fix"]


def test_contract_check_flags_flat_scores_at_class_share(tmp_path):
    spec = _guessed_spec(tmp_path)
    y = np.array([0] * 12 + [1] * 4)
    proba = np.tile([0.55, 0.45, 0.0], (16, 1))
    proba[0] = [0.45, 0.55, 0.0]  # two classes predicted, scores flat, accuracy 11/16 below the 75% share
    check = contract_check(spec, y, proba)
    assert check is not None and "largest class share (75.0%)" in check["reason"]


def test_contract_check_passes_a_working_or_declared_model(tmp_path):
    spec = _guessed_spec(tmp_path)
    y = np.repeat([0, 1, 2], 5)
    good = np.eye(3)[y] * 0.9 + 0.05
    assert contract_check(spec, y, good) is None
    one_class = np.tile([0.1, 0.2, 0.7], (15, 1))
    assert contract_check(spec_with(spec, sources={**spec.sources, "scaling": "flag"}), y, one_class) is None
    assert contract_check(spec, y[:6], one_class[:6]) is None  # too few images to judge


def test_scan_headline_and_strict_say_the_contract_is_guessed(tmp_path):
    data = write_image_folder(tmp_path / "data", n_per_class=4, size=32)
    model = rescaling_model(tmp_path / "late.onnx", KERAS_RESCALING, late=True)
    base = ["scan", str(model), "--data", str(data), "--n-boot", "50", "-q", "--format", "json,html"]
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "WARNING: The input contract was guessed" in r.output and "--scaling 0-255" in r.output
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    check = doc["extras"]["contract_check"]
    assert "every one of the 12 clean images" in check["reason"]
    assert check["suggested"] == "0-255" and check["tried"]["0-255"] == 1.0  # the scaling that fixes it, tried
    assert "--scaling 0-255 gives 100.0% clean accuracy on 12 of the images" in " ".join(r.output.split())
    assert doc["data"]["caveats"][0].startswith("CONTRACT GUESSED")
    assert 'id="contract-caveat"' in (tmp_path / "a" / "report.html").read_text()
    strict = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "b"), "--strict"])
    assert strict.exit_code == 1 and "--strict: The input contract was guessed" in strict.output
    fixed = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "c"), "--strict", "--scaling", "0-255"])
    assert fixed.exit_code == 0, fixed.output
    assert "contract_check" not in json.loads((tmp_path / "c" / "results.json").read_text())["extras"]


def test_suggest_scaling_names_the_scaling_that_works(tmp_path):
    spec = _guessed_spec(tmp_path)
    y = np.repeat([0, 1, 2], 5)
    flat = np.tile([0.7, 0.2, 0.1], (15, 1))
    check = contract_check(spec, y, flat)

    def predict(alt):  # only minus1-1 classifies; 0-255 gives one class again
        return np.eye(3)[y] * 0.9 + 0.03 if alt.scaling == "minus1-1" else flat

    out = suggest_scaling(check, spec, y, predict)
    assert out["suggested"] == "minus1-1" and out["tried"] == {"minus1-1": 1.0}
    assert out["fix"].startswith("--scaling minus1-1 gives 100.0% clean accuracy on 15 of the images")
    none_works = suggest_scaling(check, spec, y, lambda alt: flat)
    assert "suggested" not in none_works and none_works["fix"] == check["fix"]
