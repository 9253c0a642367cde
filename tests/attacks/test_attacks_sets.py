"""Adversarial sets: 8-bit quantisation, PNG cache, cache hits, resume after interruption, statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from auditor.attacks.sets import (
    batch_seed,
    build_adversarial_set,
    output_names,
    perturbation_stats,
    quantize,
)
from auditor.models.torch import Surrogate

H = W = 32


class CountingNet(nn.Module):
    """Tiny fixed-weight CNN over grey images that counts the rows it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.rows = 0

    def forward(self, x):  # noqa: D102
        self.rows += x.shape[0]
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _surrogate() -> Surrogate:
    return Surrogate(CountingNet(), ("a", "b", "c"), {"kind": "checkpoint", "sha256": ["0" * 64]}, "transfer")


def _data(n: int = 5):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, 1, H, W)).astype(np.float32)
    y = (np.arange(n) % 3).astype(np.int64)
    names = [f"{'abc'[i % 3]}/img{i}.png" for i in range(n)]
    return x, y, names


def test_quantize_rounds_and_keeps_the_budget():
    x = np.array([0.5, 0.5, 10.3 / 255, 0.999, 0.0], np.float64)
    eps = 2 / 255
    x_adv = np.array([0.5 + 2 / 255, 0.5 - 2 / 255, (10.3 + 2) / 255, 1.0, 0.0])
    k = quantize(x_adv, x, eps)
    assert np.abs(k / 255 - x).max() <= eps + 1e-9
    assert k[2] == 12  # 12.3 rounds to 12 (floor would give the same; 12.6 -> 12 by the budget)
    assert quantize(np.array([12.6 / 255]), np.array([10.6 / 255]), eps)[0] == 12
    assert quantize(np.array([0.7]), np.array([0.7]), 0.1 / 255)[0] == round(0.7 * 255)  # no level in the ball


def test_output_names_keep_sources():
    assert output_names(["normal/a.png", "pneumonia/a.jpg", "../b.dcm"]) == ["normal/a.png", "pneumonia/a.png", "b.png"]


def test_build_then_cache_hit(tmp_path):
    x, y, names = _data()
    sur = _surrogate()
    params = {"epsilon": 8 / 255, "steps": 2}
    s1 = build_adversarial_set("mifgsm", params, sur, x, y, names, tmp_path, "m" * 64, seed=3, batch_size=2)
    assert not s1.cache_hit and s1.batches_computed == 3 and s1.label == "MI-FGSM"
    assert np.abs(s1.images - x).max() <= 8 / 255 + 1e-6
    assert np.allclose(s1.images * 255, np.rint(s1.images * 255), atol=1e-4)
    index = json.loads((s1.dir / "index.json").read_text())
    assert index["key"] == s1.key and len(index["files"]) == 5
    assert (s1.dir / "mifgsm_eps8" / "a" / "img0.png").is_file()
    rows = sur.module.rows
    s2 = build_adversarial_set("mifgsm", params, sur, x, y, names, tmp_path, "m" * 64, seed=3, batch_size=2)
    assert s2.cache_hit and s2.key == s1.key and sur.module.rows == rows
    np.testing.assert_array_equal(s2.images, s1.images)
    s3 = build_adversarial_set("mifgsm", params, sur, x, y, names, tmp_path, "m" * 64, seed=4, batch_size=2)
    assert s3.key != s1.key and not s3.cache_hit


def test_resume_after_interruption_computes_only_missing_batches(tmp_path):
    x, y, names = _data(5)
    params = {"epsilon": 4 / 255, "steps": 2, "mask_pool": x, "mask_pool_labels": y}
    full = build_adversarial_set("usmm", params, _surrogate(), x, y, names, tmp_path / "a", "m", seed=1, batch_size=2)

    calls = []

    def stop_after_first(n):
        calls.append(n)
        raise KeyboardInterrupt

    sur = _surrogate()
    with pytest.raises(KeyboardInterrupt):
        build_adversarial_set("usmm", params, sur, x, y, names, tmp_path / "b", "m", seed=1, batch_size=2,
                              progress=stop_after_first)
    assert calls == [2] and sur.module.rows == 2 * 15 * 2
    assert not (tmp_path / "b" / full.key / "index.json").exists()
    sur2 = _surrogate()
    seen = []
    resumed = build_adversarial_set("usmm", params, sur2, x, y, names, tmp_path / "b", "m", seed=1, batch_size=2,
                                    progress=seen.append)
    assert resumed.key == full.key and not resumed.cache_hit
    assert resumed.batches_loaded == 1 and resumed.batches_computed == 2
    assert sur2.module.rows == 3 * 15 * 2  # images 2..4 only, 15 copies, 2 steps
    assert seen == [2, 2, 1]
    np.testing.assert_array_equal(resumed.images, full.images)
    assert not list((tmp_path / "b").rglob(".tmp-*"))


def test_batch_seeds_differ_and_are_stable():
    assert batch_seed(0, 0) == batch_seed(0, 0) != batch_seed(0, 1) != batch_seed(1, 1)


def test_perturbation_stats_by_hand():
    x = np.zeros((2, 1, 8, 8), np.float32) + 0.5
    xa = x.copy()
    xa[0, 0, 0, 0] += 0.1
    st = perturbation_stats(x, xa)
    assert st["linf_max"] == pytest.approx(0.1, abs=1e-6)
    assert st["linf_mean"] == pytest.approx(0.05, abs=1e-6)
    assert st["l2_mean"] == pytest.approx(0.05, abs=1e-6)
    assert st["psnr_mean"] == pytest.approx((10 * np.log10(64 / 0.01) + 100) / 2, rel=1e-4)
    assert 0 < st["ssim_mean"] < 1
    assert perturbation_stats(x, x)["ssim_mean"] == pytest.approx(1.0)
