"""ONNX export: the contract, the torch/ONNX Runtime check, and image->image models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.errors import RuntimeFailure
from auditor.reference_models.registry import build_model
from auditor.training.recipe_config import classifier_spec


def _net():
    torch.manual_seed(0)
    return build_model("small_cnn", 3, 1).eval()


def test_broken_export_is_caught_and_not_kept(tmp_path, monkeypatch):
    import auditor.training.export as ex

    real = ex._export_graph

    def broken(module, example, path, *args, **kwargs):
        other = build_model("small_cnn", 3, 1).eval()  # different weights: the ONNX no longer matches torch
        real(other, example, path, *args, **kwargs)

    monkeypatch.setattr(ex, "_export_graph", broken)
    spec = classifier_spec(("a", "b", "c"), 32, "unit")
    x = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    final = tmp_path / "model.onnx"
    with pytest.raises(RuntimeFailure, match="export check failed"):
        ex.export_classifier(_net(), spec, final, x)
    assert list(tmp_path.iterdir()) == []


def test_classifier_export_with_imagenet_scaling_says_so(tmp_path):
    from auditor.models.inputs import encode_input
    from auditor.models.onnx import OnnxClassifier
    from auditor.training.export import export_classifier

    spec = classifier_spec(("normal", "abnormal", "other"), 32, "imagenet")
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    net = _net()
    info = export_classifier(net, spec, tmp_path / "m.onnx", x, recipe={"name": "test"})
    assert info["max_abs_diff"] <= 1e-4
    clf = OnnxClassifier(info["path"], device="cpu")
    assert clf.spec.scaling == "imagenet" and clf.spec.mean == spec.mean
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(encode_input(x, spec))), 1).numpy()
    assert np.allclose(clf.predict_proba(x), ref, atol=1e-4)


def test_image_model_export_is_usable_as_preprocessor(tmp_path):
    from auditor.models.onnx import OnnxImageModel
    from auditor.training.denoiser import HGDDenoiser
    from auditor.training.export import export_image_model

    torch.manual_seed(0)
    den = HGDDenoiser().eval()
    torch.nn.init.normal_(den.final.weight, std=0.01)  # not the identity
    x = np.random.default_rng(0).random((2, 1, 32, 32), dtype=np.float32)
    info = export_image_model(den, tmp_path / "d.onnx", x)
    model = OnnxImageModel(info["path"], device="cpu")
    y = model(x)
    assert y.shape == x.shape and 0.0 <= y.min() and y.max() <= 1.0
    with torch.no_grad():
        assert np.allclose(y, den(torch.from_numpy(x)).numpy(), atol=1e-4)
    y48 = model(np.random.default_rng(1).random((1, 1, 48, 48), dtype=np.float32))  # dynamic size
    assert y48.shape == (1, 1, 48, 48)


def test_untrained_denoiser_is_the_identity():
    from auditor.training.denoiser import HGDDenoiser

    x = torch.rand(2, 1, 40, 40)
    assert torch.equal(HGDDenoiser().eval()(x), x)
