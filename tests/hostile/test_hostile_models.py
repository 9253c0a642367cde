"""Hostile ONNX models: refused at load with exit 3 and one line, before any allocation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.hostile.helpers import assert_outcome, invoke, run_and_check, scan_args, tiny_model


def _save(model, path: Path, check: bool = True) -> Path:
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _graph(inputs, outputs, nodes, inits=(), domain_opsets=()):
    g = helper.make_graph(nodes, "hostile", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), *domain_opsets])


def _two_inputs(path):
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3, 32, 32])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 32, 32])
    return _save(_graph([a, b], [y], [helper.make_node("Add", ["a", "b"], ["y"])]), path)


def _rank3_output(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 1024])
    shape = numpy_helper.from_array(np.array([0, 3, 1024], np.int64), "shape")
    return _save(_graph([x], [y], [helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]), path)


def _custom_op(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    node = helper.make_node("Exfiltrate", ["x"], ["y"], domain="com.evil")
    return _save(_graph([x], [y], [node], domain_opsets=[helper.make_opsetid("com.evil", 1)]), path, check=False)


def _external_traversal(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    w = numpy_helper.from_array(np.ones((3, 3), np.float32), "w")
    model = _graph([x], [y], [helper.make_node("MatMul", ["x", "w"], ["y"])], [w])
    t = model.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", "36")):
        e = t.external_data.add()
        e.key, e.value = k, v
    return _save(model, path, check=False)


def _rank2_input(path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    return _save(_graph([x], [y], [helper.make_node("Identity", ["x"], ["y"])]), path)


def _string_input(path):
    x = helper.make_tensor_value_info("x", TensorProto.STRING, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.STRING, ["N", 3, 32, 32])
    return _save(_graph([x], [y], [helper.make_node("Identity", ["x"], ["y"])]), path)


def _no_graph(path):
    path.write_bytes(onnx.ModelProto(ir_version=8).SerializeToString())
    return path


def _truncated(path):
    tiny_model(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


BROKEN_MODELS = {
    "not_onnx": lambda p: (p.write_text("#!/bin/sh\necho pwned\n"), p)[1],
    "empty": lambda p: (p.write_bytes(b""), p)[1],
    "random_bytes": lambda p: (p.write_bytes(np.random.default_rng(1).bytes(4096)), p)[1],
    "truncated": _truncated,
    "no_graph": _no_graph,
    "two_inputs": _two_inputs,
    "rank3_output": _rank3_output,
    "rank2_input": _rank2_input,
    "string_input": _string_input,
    "custom_op": _custom_op,
    "external_data_traversal": _external_traversal,
    "huge_fixed_input": lambda p: tiny_model(p, size=20000),
    "huge_fixed_input_nhwc": lambda p: tiny_model(p, size=9000, layout="NHWC"),
    "metadata_mean_abc": lambda p: tiny_model(p, declare_scaling=False, metadata={"mean": "abc", "std": "1"}),
    "metadata_std_json_object": lambda p: tiny_model(
        p, declare_scaling=False, metadata={"mean": "0.5", "std": '{"a": 1}'}
    ),
    "spec_height_abc": lambda p: tiny_model(p, size=None, metadata={"xray_audit.spec": json.dumps({"height": "abc"})}),
    "spec_huge_dynamic_size": lambda p: tiny_model(
        p, size=None, metadata={"xray_audit.spec": json.dumps({"height": 100_000, "width": 100_000})}
    ),
    "spec_class_names_number": lambda p: tiny_model(
        p, class_names=None, metadata={"xray_audit.spec": json.dumps({"class_names": 3})}
    ),
    "spec_class_names_string": lambda p: tiny_model(
        p, class_names=None, metadata={"xray_audit.spec": json.dumps({"class_names": "abc"})}
    ),
    "spec_class_names_nested": lambda p: tiny_model(
        p, class_names=None, metadata={"xray_audit.spec": json.dumps({"class_names": [["a"], {"b": 1}, None]})}
    ),
    "spec_mean_strings": lambda p: tiny_model(
        p, metadata={"xray_audit.spec": json.dumps({"scaling": "custom", "mean": ["a", "b", "c"], "std": [1, 1, 1]})}
    ),
    "spec_channels_bool": lambda p: tiny_model(p, metadata={"xray_audit.spec": json.dumps({"channels": True})}),
    "spec_layout_number": lambda p: tiny_model(p, metadata={"xray_audit.spec": json.dumps({"layout": 4})}),
    "spec_not_json": lambda p: tiny_model(p, metadata={"xray_audit.spec": "{height: 3"}),
    "spec_json_list": lambda p: tiny_model(p, metadata={"xray_audit.spec": "[1, 2]"}),
    "class_names_wrong_count": lambda p: tiny_model(p, class_names=("a", "b")),
    "class_names_duplicate": lambda p: tiny_model(p, class_names=("a", "A", "b")),
    "labels_metadata_bad_json": lambda p: tiny_model(p, class_names=None, metadata={"labels": '["a", '}),
    "scaling_unknown": lambda p: tiny_model(p, metadata={"scaling": "0-65535"}, declare_scaling=False),
}


#: inspect reads the contract only (no ONNX Runtime session), so an unknown operator surfaces in scan
RUNTIME_ONLY = {"custom_op"}


@pytest.mark.parametrize("case", sorted(set(BROKEN_MODELS) - RUNTIME_ONLY))
def test_inspect_refuses_broken_model(case, tmp_path):
    path = BROKEN_MODELS[case](tmp_path / "model.onnx")
    assert_outcome(invoke("inspect", path), 3)


@pytest.mark.parametrize(
    "case", ["huge_fixed_input", "custom_op", "spec_class_names_string", "external_data_traversal"]
)
def test_scan_refuses_broken_model_and_keeps_outputs(case, data, tmp_path):
    path = BROKEN_MODELS[case](tmp_path / "model.onnx")
    out = tmp_path / "out"
    run_and_check(out, scan_args(path, data, out), 3)


def test_huge_input_refused_before_any_allocation(tmp_path, monkeypatch):
    """The pixel limit is checked on the graph: no ONNX Runtime session is ever created."""
    import auditor.models.onnx as onnx_mod

    def no_session(*a, **k):
        raise AssertionError("a session was created for a model above the pixel limit")

    monkeypatch.setattr(onnx_mod, "make_session", no_session)
    path = tiny_model(tmp_path / "big.onnx", size=20000)
    r = invoke("inspect", path)
    assert_outcome(r, 3)
    assert "above the limit" in r.stderr


def test_sidecar_with_wrong_types(tmp_path):
    path = tiny_model(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(json.dumps({"class_names": "normal", "height": [1]}))
    assert_outcome(invoke("inspect", path), 3)


def test_model_path_is_a_folder(tmp_path):
    assert_outcome(invoke("inspect", tmp_path), 2)
