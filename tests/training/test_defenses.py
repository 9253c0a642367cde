"""Denoiser and CycleGAN recipes end to end on tiny SYNTHETIC data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auditor.errors import UsageError


def _cfg(phantom_dir, out, surrogate, **kw):
    from auditor.training.imagepairs import DefenseConfig

    args = dict(
        data=str(phantom_dir),
        out=str(out),
        surrogate=surrogate,
        epochs=1,
        batch_size=4,
        max_images=8,
        max_steps=2,
        attack_steps=2,
        n_boot=0,
        quiet=True,
        progress=False,
        device="cpu",
    )
    args.update(kw)
    return DefenseConfig(**args)


def test_denoiser_end_to_end(reference_run, phantom_dir, tmp_path):
    from auditor.models.onnx import OnnxImageModel
    from auditor.training.denoiser import train_denoiser

    res = train_denoiser(_cfg(phantom_dir, tmp_path / "den", reference_run["checkpoint"]))
    x = np.random.default_rng(0).random((3, 1, 32, 32), dtype=np.float32)
    y = OnnxImageModel(res["onnx"], device="cpu")(x)
    assert y.shape == x.shape
    card = json.loads(open(res["card_json"], encoding="utf-8").read())
    assert "surrogate_accuracy_adversarial_after_defense" in card["extra_metrics"]
    assert card["recipe"]["hyperparameters"]["architecture"]["enc_widths"] == [32, 64, 128, 128]


def test_cyclegan_end_to_end_and_resume(reference_run, phantom_dir, tmp_path):
    from auditor.models.onnx import OnnxImageModel
    from auditor.training.cyclegan import train_cyclegan

    out = tmp_path / "cg"
    first = train_cyclegan(
        _cfg(phantom_dir, out, reference_run["checkpoint"], epochs=1, decay_epochs=0, width=4, n_res=1)
    )
    assert [h["epoch"] for h in first["history"]] == [1]
    second = train_cyclegan(
        _cfg(phantom_dir, out, reference_run["checkpoint"], epochs=1, decay_epochs=1, width=4, n_res=1, resume=True)
    )
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    y = OnnxImageModel(second["onnx"], device="cpu")(np.full((1, 1, 32, 32), 0.5, np.float32))
    assert y.shape == (1, 1, 32, 32)


def test_defense_needs_an_existing_surrogate(phantom_dir, tmp_path):
    from auditor.training.denoiser import train_denoiser

    with pytest.raises(UsageError, match="checkpoint not found"):
        train_denoiser(_cfg(phantom_dir, tmp_path / "d", str(tmp_path / "missing.pt")))
