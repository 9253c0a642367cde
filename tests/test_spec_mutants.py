"""ModelSpec details that mutation testing (``make mutation``, docs/mutation.md) showed unpinned.

Each test names the contract rule it pins: which input shapes are read as which layout, which
dimensions count as dynamic, which override values are refused, and the exact normalisation
constants of every named scaling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from auditor.errors import ModelContractError, UsageError
from auditor.models.inputs import decode_output, scaling_mean_std
from auditor.models.spec import read_spec
from auditor.types import IMAGENET_MEAN, IMAGENET_STD, ModelSpec
from onnx_factory import make_classifier

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _graph_model(in_dims, out_dims=("N", 3), op="Flatten", metadata=None):
    """A model proto whose graph declares ``in_dims`` -> ``out_dims`` (read_spec never runs it)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_dims))
    model = helper.make_model(helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g", [x], [y]))
    for k, v in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def _spec(tmp_path: Path, in_dims, **kw):
    return read_spec(str(tmp_path / "m.onnx"), model=_graph_model(in_dims, **kw))


@pytest.mark.parametrize(
    "dims,layout,channels,hw",
    [
        (("N", 1, 4, 4), "NCHW", 1, (4, 4)),  # a size of 4 is not a channel axis
        (("N", 3, 2, 2), "NCHW", 3, (2, 2)),  # nor is a size of 2
        (("N", 4, 6, 1), "NHWC", 1, (4, 6)),
        (("N", 5, 2, 3), "NHWC", 3, (5, 2)),
        (("N", 1, 32, 3), "NCHW", 1, (32, 3)),  # both ends 1 or 3: ambiguous, NCHW assumed
        (("N", 3, 32, 1), "NCHW", 3, (32, 1)),
    ],
)
def test_layout_is_read_from_the_axis_of_size_1_or_3(tmp_path, dims, layout, channels, hw):
    spec = _spec(tmp_path, dims)
    assert (spec.layout, spec.channels, (spec.height, spec.width)) == (layout, channels, hw)
    assert any("ambiguous" in w for w in spec.warnings) == (dims[1] in (1, 3) and dims[3] in (1, 3))


@pytest.mark.parametrize(
    "dims", [("N", 2, 32, 32), ("N", 4, 32, 32), ("N", 32, 32, 2), ("N", 32, 32, 4), ("N", 2, 32, 4), ("N", 4, 4, 4)]
)
def test_two_or_four_channel_inputs_are_refused(tmp_path, dims):
    """RGBA or two-channel inputs have no grey/RGB channel axis: a contract error, never a guessed layout."""
    with pytest.raises(ModelContractError, match="no channel axis of size 1 or 3"):
        _spec(tmp_path, dims)
    with pytest.raises(ModelContractError, match=r"shape \['\?', 2, 32, 32\]"):  # dynamic dimensions shown as ?
        _spec(tmp_path, ("N", 2, 32, 32))


@pytest.mark.parametrize("value", [0, -1])
def test_zero_or_negative_dimension_is_dynamic(tmp_path, value):
    """Exporters write 0 or -1 for a free dimension: it is dynamic (default size), not a size of 0 or -1."""
    spec = _spec(tmp_path, ("N", 1, value, value))
    assert spec.dynamic_size and (spec.height, spec.width) == (224, 224)
    spec = read_spec(str(tmp_path / "m.onnx"), model=_graph_model(("N", 1, value, value)), overrides={"image_size": 32})
    assert (spec.height, spec.width) == (32, 32)


def test_fixed_batch_of_one_is_not_dynamic(tmp_path):
    assert not _spec(tmp_path, (1, 1, 8, 8)).dynamic_batch
    assert _spec(tmp_path, ("N", 1, 8, 8)).dynamic_batch


def test_single_unit_output_must_be_a_sigmoid(tmp_path):
    """A (N, 1) output declared 'logits' or 'probabilities' would give every image probability 1 for
    class 0 (a softmax over one value): refused, not turned into a constant classifier."""
    for kind in ("logits", "probabilities"):
        model = _graph_model(("N", 1, 8, 8), out_dims=("N", 1), metadata={"output_kind": kind})
        with pytest.raises(ModelContractError, match=r"\(N, 1\) output"):
            read_spec(str(tmp_path / "m.onnx"), model=model)
    spec = read_spec(str(tmp_path / "m.onnx"), model=_graph_model(("N", 1, 8, 8), out_dims=("N", 1), op="Sigmoid"))
    assert spec.output_kind == "sigmoid_probability" and spec.class_names == ("negative", "positive")


@pytest.mark.parametrize(
    "layer",
    [
        {"channels": 2},
        {"channels": True},
        {"channels": 3.0},
        {"channels": "3"},
        {"height": 0, "width": 8},
        {"height": 8, "width": -4},
        {"mean": "0.5"},
        {"mean": [0.1, 0.2, 0.3, 0.4]},
        {"mean": []},
        {"std": [0.2, "x"]},
        {"std": [float("nan")]},
        {"class_names": [["a"], "b", "c"]},
        {"class_names": ["a", "", "c"]},
        {"layout": 1},
        {"scaling": "unit8"},
    ],
)
def test_bad_sidecar_values_are_contract_errors(tmp_path, layer):
    path = make_classifier(tmp_path / "m.onnx", size=None, class_names=CLASSES)
    (tmp_path / "m.onnx.json").write_text(json.dumps(layer))
    with pytest.raises(ModelContractError, match=r"\(sidecar\)"):
        read_spec(path)


def test_good_sidecar_values_are_taken(tmp_path):
    path = make_classifier(
        tmp_path / "m.onnx",
        size=None,
        channels=3,
        scaling="custom",
        mean=[0.1, 0.2, 0.3],
        std=[0.4, 0.5, 0.6],
        class_names=CLASSES,
    )
    (tmp_path / "m.onnx.json").write_text(
        json.dumps({"height": 1, "width": 3, "mean": 0.25, "std": 0.5, "channels": 3})
    )
    spec = read_spec(path)
    assert (spec.height, spec.width) == (1, 3) and spec.sources["height"] == "sidecar"
    assert spec.mean == (0.25, 0.25, 0.25) and spec.std == (0.5, 0.5, 0.5)


def test_nested_json_class_list_in_metadata_is_refused(tmp_path):
    model = _graph_model(("N", 1, 8, 8), metadata={"class_names": '[["a", "b"], "c", "d"]'})
    with pytest.raises(ModelContractError, match="class_names"):
        read_spec(str(tmp_path / "m.onnx"), model=model)
    model = _graph_model(("N", 1, 8, 8), metadata={"labels": '{"1": "b", "0": "a", "2": "c"}'})
    assert read_spec(str(tmp_path / "m.onnx"), model=model).class_names == ("a", "b", "c")


def test_sidecar_that_is_not_utf8_or_not_readable_is_a_contract_error(tmp_path, monkeypatch):
    path = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    side = tmp_path / "m.onnx.json"
    side.write_bytes(b'{"scaling": "\xff\xfe"}')
    with pytest.raises(ModelContractError, match="sidecar is not readable JSON"):
        read_spec(path)
    side.write_text('{"scaling": "unit"}')
    real = Path.read_text

    def failing(self, *a, **kw):
        if self == side:
            raise OSError(5, "Input/output error")
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", failing)
    with pytest.raises(ModelContractError, match="sidecar is not readable JSON"):
        read_spec(path)


def test_scaling_constants_are_exact():
    assert scaling_mean_std("unit", 1) == ((0.0,), (1.0,))
    assert scaling_mean_std("0-255", 3) == ((0.0,) * 3, (1.0,) * 3)
    assert scaling_mean_std("minus1-1", 1) == ((0.5,), (0.5,))
    assert scaling_mean_std("imagenet", 3) == (IMAGENET_MEAN, IMAGENET_STD)
    m, s = scaling_mean_std("imagenet", 1)
    assert m == pytest.approx((np.mean(IMAGENET_MEAN),)) and s == pytest.approx((np.mean(IMAGENET_STD),))
    assert scaling_mean_std("custom", 3, [0.1, 0.2, 0.3], [0.4, 0.5, 0.6]) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert scaling_mean_std("custom", 3, [0.2], [0.3]) == ((0.2,) * 3, (0.3,) * 3)


@pytest.mark.parametrize(
    "args,match",
    [
        (("-1-1", 1), "unknown scaling"),
        (("+unit", 1), "unknown scaling"),
        (("custom", 1, None, [0.5]), "needs --mean"),
        (("custom", 1, [0.5], None), "needs --mean"),
        (("custom", 1, [0.5], [0.0]), "positive"),
        (("custom", 3, [0.1, 0.2], [0.3, 0.4]), "1 or 3 values"),
        (("custom", 3, [0.1, 0.2, 0.3], [0.3, 0.4]), "1 or 3 values"),
        (("custom", 1, [0.1, 0.2, 0.3], [0.3]), "1 or 1 values"),
    ],
)
def test_bad_scalings_are_usage_errors(args, match):
    with pytest.raises(UsageError, match=match):
        scaling_mean_std(*args)


def test_probabilities_are_renormalised_and_zero_rows_stay_zero():
    spec = ModelSpec(output_kind="probabilities", class_names=("a", "b"))
    np.testing.assert_allclose(
        decode_output(np.array([[2.0, 6.0], [0.0, 0.0], [0.3, 0.7]]), spec), [[0.25, 0.75], [0.0, 0.0], [0.3, 0.7]]
    )
    sp = ModelSpec(output_kind="sigmoid_probability", class_names=("a", "b"))
    np.testing.assert_allclose(decode_output(np.array([[0.2]]), sp), [[0.8, 0.2]])
    with pytest.raises(ModelContractError, match="expected"):
        decode_output(np.zeros((2, 2, 1)), spec)


def test_outputs_that_are_not_tensors_are_passed_over(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    seq = helper.make_value_info(
        "seq", helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, None))
    )
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("SequenceConstruct", ["x"], ["seq"]), helper.make_node("Flatten", ["x"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [seq, y]))
    spec = read_spec(str(tmp_path / "m.onnx"), model=model)
    assert spec.output_name == "y" and spec.num_classes == 3


def test_a_bad_flag_is_a_usage_error_and_a_bad_sidecar_a_contract_error(tmp_path):
    path = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    with pytest.raises(UsageError, match=r"\(flag\): layout 'NCWH'"):
        read_spec(path, overrides={"layout": "NCWH"})
    (tmp_path / "m.onnx.json").write_text(json.dumps({"layout": "NCWH"}))
    with pytest.raises(ModelContractError, match=r"\(sidecar\): layout 'NCWH'"):
        read_spec(path)


def test_a_fixed_graph_size_wins_over_a_declared_one(tmp_path):
    path = make_classifier(tmp_path / "m.onnx", size=32, class_names=CLASSES)
    (tmp_path / "m.onnx.json").write_text(json.dumps({"height": 16, "width": 16}))
    spec = read_spec(path)
    assert (spec.height, spec.width) == (32, 32) and spec.sources["height"] == "graph"
    (tmp_path / "m.onnx.json").write_text(json.dumps({"height": 64, "width": 64}))
    assert (read_spec(path).height, read_spec(path).width) == (32, 32)
    (tmp_path / "m.onnx.json").write_text(json.dumps({"height": 32, "width": 32}))
    assert read_spec(path).sources["height"] == "sidecar"  # agreeing values are taken (and attributed)


def test_the_pixel_limit_is_inclusive(tmp_path):
    from auditor.models.spec_graph import check_input_size
    from auditor.types import MAX_IMAGE_PIXELS

    check_input_size(8000, 8000, "x")  # exactly 64 000 000 pixels: allowed
    with pytest.raises(ModelContractError, match="above the limit"):
        check_input_size(8000, 8001, "x")
    path = make_classifier(tmp_path / "m.onnx", size=None, class_names=CLASSES)
    (tmp_path / "m.onnx.json").write_text(json.dumps({"height": MAX_IMAGE_PIXELS, "width": 1}))
    assert read_spec(path).height == MAX_IMAGE_PIXELS


def test_encode_refuses_other_than_one_grey_channel_batches():
    from auditor.models.inputs import encode_input

    spec = ModelSpec(class_names=("a", "b"))
    for shape in ((1, 1, 1, 4, 4), (1, 4, 4), (1, 2, 4, 4)):
        with pytest.raises(ValueError, match="expected an"):
            encode_input(np.zeros(shape, np.float32), spec)


def test_output_kind_from_a_flag_string_decodes_the_same():
    """An output kind parsed at run time (not an interned literal) must select the same decoding."""
    for kind, raw, want in (
        ("sigmoid_logit", [[0.0]], [[0.5, 0.5]]),
        ("sigmoid_probability", [[0.2]], [[0.8, 0.2]]),
        ("probabilities", [[1.0, 3.0]], [[0.25, 0.75]]),
    ):
        spec = ModelSpec(output_kind="".join(list(kind)), class_names=("a", "b"))
        np.testing.assert_allclose(decode_output(np.array(raw), spec), want)
