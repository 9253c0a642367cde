"""``--precision auto``: the decision rule (timings and predictions fixed) and a real measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.attacks import auto_precision as ap
from auditor.attacks.registry import make_attack
from auditor.reference_models.registry import build_model


@pytest.fixture()
def batch():
    torch.manual_seed(0)
    net = build_model("small_cnn", 3, 1).eval()
    x = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    return make_attack("mifgsm", net, epsilon=8 / 255, steps=2, device="cpu"), x, y


def _fixed_timing(fp32, bf16):
    return lambda attack, x, y, passes: {"rows": 4, "fp32_ms_per_row": fp32, "bf16_ms_per_row": bf16}


def _predictions(*seq):
    it = iter(seq)
    return lambda attack, x: np.array(next(it))


def test_fp32_is_kept_when_bf16_is_not_faster(batch, monkeypatch):
    atk, x, y = batch
    monkeypatch.setattr(ap, "_timing", _fixed_timing(2.0, 2.5))
    rec = ap.choose_precision(atk, x, y, seed=0)
    assert rec["chosen"] == "fp32" and rec["check"] is None and atk.precision == "fp32"
    assert rec["fp32_ms_per_row"] == 2.0 and rec["bf16_ms_per_row"] == 2.5 and rec["bf16_speedup"] == 0.8


@pytest.mark.parametrize("bf16_preds, chosen", [([1, 1, 0, 2], "bf16"), ([1, 1, 0, 0], "fp32")])
def test_faster_bf16_must_reproduce_the_white_box_predictions(batch, monkeypatch, bf16_preds, chosen):
    atk, x, y = batch
    monkeypatch.setattr(ap, "_timing", _fixed_timing(2.0, 1.0))
    monkeypatch.setattr(ap, "_surrogate_predictions", _predictions([1, 1, 0, 2], bf16_preds))
    rec = ap.choose_precision(atk, x, y, seed=0)
    assert rec["chosen"] == chosen and atk.precision == chosen
    assert rec["check"]["agreement"] == (1.0 if chosen == "bf16" else 0.75)
    assert rec["check"]["success_fp32"] == 0.75  # y = [0, 1, 2, 0]: three of four flipped
    assert rec["bf16_speedup"] == 2.0


def test_real_measurement_follows_the_rule_and_is_remembered(batch, tmp_path):
    atk, x, y = batch
    rec = ap.choose_precision_cached(atk, x, y, 0, tmp_path, ["ab" * 32])
    assert rec["fp32_ms_per_row"] > 0 and rec["bf16_ms_per_row"] > 0 and "reused" not in rec
    if rec["bf16_ms_per_row"] < rec["fp32_ms_per_row"]:
        assert rec["check"]["n"] == 4
        assert (rec["chosen"] == "bf16") == (rec["check"]["agreement"] >= ap.MIN_AGREEMENT)
    else:
        assert rec["chosen"] == "fp32" and rec["check"] is None
    again = ap.choose_precision_cached(atk, x, y, 0, tmp_path, ["ab" * 32])
    assert again["chosen"] == rec["chosen"] and again["reused"].startswith(str(tmp_path))
    other = ap.choose_precision_cached(atk, x, y, 0, tmp_path, ["cd" * 32])  # another surrogate: measured anew
    assert "reused" not in other
