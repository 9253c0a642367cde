"""Denoiser/CycleGAN preprocessors with tiny ONNX image->image models built by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from auditor.defenses.image_models import OnnxImagePreprocessor
from auditor.defenses.registry import parse_defenses
from auditor.errors import ModelContractError


def _save(path: Path, nodes, inputs, outputs, inits=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def identity_model(path: Path, channels: int = 1) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, "H", "W"])
    return _save(path, [helper.make_node("Identity", ["x"], ["y"])], [x], [y])


def slice_model(path: Path, static: bool) -> Path:
    """Drops the last row: output H = input H - 1."""
    dims_in = ["N", 1, 16, 16] if static else ["N", 1, "H", "W"]
    dims_out = ["N", 1, 15, 16] if static else ["N", 1, "H2", "W"]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims_in)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, dims_out)
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "starts"),
        numpy_helper.from_array(np.array([-1], np.int64), "ends"),
        numpy_helper.from_array(np.array([2], np.int64), "axes"),
    ]
    return _save(path, [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])], [x], [y], inits)


@pytest.fixture()
def batch() -> np.ndarray:
    return np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("kind", ["denoiser", "cyclegan"])
@pytest.mark.parametrize("channels", [1, 3])
def test_identity_model_returns_input(tmp_path, batch, kind, channels):
    pre = OnnxImagePreprocessor(identity_model(tmp_path / "id.onnx", channels), kind=kind, device="cpu")
    np.testing.assert_allclose(pre(batch), batch, atol=1e-6)
    assert pre.name == f"{kind}:id.onnx" and pre.params["path"] == str(tmp_path / "id.onnx")
    assert len(pre.params["sha256"]) == 64


def test_parse_defenses_builds_onnx_preprocessors(tmp_path, batch):
    p = identity_model(tmp_path / "d.onnx")
    pres = parse_defenses(f"denoiser:{p},cyclegan:{p}", device="cpu")
    assert [type(x).__name__ for x in pres] == ["OnnxImagePreprocessor"] * 2
    assert [x.kind for x in pres] == ["denoiser", "cyclegan"]
    np.testing.assert_allclose(pres[1](batch), batch, atol=1e-6)


def test_static_output_shape_mismatch_is_contract_error(tmp_path):
    with pytest.raises(ModelContractError, match="differs") as err:
        OnnxImagePreprocessor(slice_model(tmp_path / "s.onnx", static=True), device="cpu")
    assert "\n" not in str(err.value)


def test_dynamic_output_shape_mismatch_is_contract_error_at_call(tmp_path, batch):
    pre = OnnxImagePreprocessor(slice_model(tmp_path / "s.onnx", static=False), device="cpu")
    with pytest.raises(ModelContractError, match="differs") as err:
        pre(batch)
    assert "\n" not in str(err.value)


def test_not_an_onnx_file_is_contract_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelContractError):
        parse_defenses(f"denoiser:{bad}", device="cpu")


def test_torch_path_is_exact_via_onnx2torch(tmp_path, batch):
    import torch

    pre = OnnxImagePreprocessor(identity_model(tmp_path / "id.onnx", 3), device="cpu")
    assert pre.gradient == "exact" and pre.differentiable
    assert pre.params["torch_path"] == "onnx2torch"
    xt = torch.from_numpy(batch).requires_grad_(True)
    y = pre.torch_forward(xt)
    np.testing.assert_allclose(y.detach().numpy(), pre(batch), atol=1e-6)
    (y * 2).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), 2.0, atol=1e-6)


def test_torch_path_feeds_a_writable_copy_to_a_colour_module(tmp_path, batch):
    """A given torch module may write to its (3-channel) input in place; the grey input is not touched."""
    import torch

    class InPlace(torch.nn.Module):
        def forward(self, x):
            return x.mul_(0.5)

    pre = OnnxImagePreprocessor(identity_model(tmp_path / "id.onnx", 3), device="cpu", torch_module=InPlace())
    xt = torch.from_numpy(batch.copy())
    y = pre.torch_forward(xt)
    np.testing.assert_allclose(y.numpy(), 0.5 * batch, atol=1e-6)
    np.testing.assert_array_equal(xt.numpy(), batch)
