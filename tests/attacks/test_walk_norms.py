"""The set walk's one-pass ε check and statistics give the verdicts and the bits of the plain formulas.

:func:`~auditor.attacks.quantize.level_difference` checks stored levels in integer arithmetic on the 8-bit grid and
hands its float64 differences to :func:`~auditor.attacks.perturbation.image_norms`; the statistics record of a cached
set is trusted only when its cheap statistics are *equal* to the walk's, so these must match the plain computation
bit for bit, and the check must refuse exactly the pixels the interval definition refuses.
"""

from __future__ import annotations

import numpy as np
import pytest

from auditor.attacks.perturbation import PerturbationStats, image_norms
from auditor.attacks.quantize import allowed_levels, budget_levels, check_levels, level_difference
from auditor.errors import DataError


def _plain_norms(clean, adv):
    """The statistics as written before the walk shared its differences: float64, one formula per value."""
    a = np.asarray(clean, dtype=np.float64)
    b = np.asarray(adv, dtype=np.float64)
    d = (b - a).reshape(a.shape[0], -1)
    mse = (d**2).mean(1)
    psnr = np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0)
    return np.abs(d).max(1), np.sqrt((d**2).sum(1)), psnr


def _batch(rng, k=5, h=24, w=20, eps_levels=4, on_grid=True):
    g = rng.integers(0, 256, (k, 1, h, w))
    clean = (g.astype(np.float32) / 255.0) if on_grid else rng.random((k, 1, h, w), dtype=np.float32)
    base = g if on_grid else np.rint(clean.astype(np.float64) * 255)
    levels = np.clip(base + rng.integers(-eps_levels, eps_levels + 1, base.shape), 0, 255).astype(np.uint8)
    levels[0] = base[0].astype(np.uint8)  # one image unchanged: PSNR capped at 100
    return clean, levels


@pytest.mark.parametrize("on_grid", [True, False])
def test_the_walk_norms_have_the_bits_of_the_plain_statistics(on_grid):
    rng = np.random.default_rng(1)
    clean, levels = _batch(rng, on_grid=on_grid)
    eps = 5 / 255  # off the grid a level may lie up to 4.5 levels away: within 5
    adv = levels.astype(np.float32) / 255.0
    got = image_norms(level_difference(levels, clean, eps))
    for g, w in zip(got, _plain_norms(clean, adv)):
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes()
    assert (got[2][0] == 100.0) == on_grid  # an unchanged image equals its clean one only on the grid
    a, b = PerturbationStats(ssim=False), PerturbationStats(ssim=False)
    a.add(clean, adv, got)
    b.add(clean, adv)
    assert a.result() == b.result()
    assert check_levels(levels, clean, eps) == float(np.abs(adv.astype(np.float64) - clean).max())


@pytest.mark.parametrize("grid", ["on", "off", "outside [0, 1]"])
@pytest.mark.parametrize("eps_levels", [0, 1, 3])
def test_the_check_refuses_exactly_the_levels_outside_the_allowed_interval(grid, eps_levels):
    rng = np.random.default_rng(eps_levels)
    g = rng.integers(0, 256, (6, 1, 9, 7))
    x = g / 255.0
    if grid == "off":
        x = x + rng.uniform(-0.4, 0.4, x.shape) / 255
    elif grid == "outside [0, 1]":
        x = x * 1.5 - 0.25  # on the grid, but with levels below 0 and above 255
    x = x.astype(np.float32)
    eps = eps_levels / 255
    lo, hi = allowed_levels(x, eps)
    for trial in range(20):
        k = np.clip(np.rint(x.astype(np.float64) * 255) + rng.integers(-4, 5, x.shape), 0, 255).astype(np.uint8)
        if trial % 2:
            k = np.clip(k, lo, hi).astype(np.uint8)  # inside the budget everywhere
            k.reshape(-1)[trial] = np.uint8(min(255, hi.reshape(-1)[trial] + 1))  # but one pixel (unless at 255)
        bad = int(((k < lo) | (k > hi)).sum())
        if bad:
            with pytest.raises(DataError, match=rf"^{bad} pixel\(s\) lie outside .*\({budget_levels(eps)} grey"):
                level_difference(k, x, eps)
        else:
            assert level_difference(k, x, eps).shape == (6, 63)


def test_an_empty_batch_has_no_differences():
    d = level_difference(np.zeros((0, 1, 4, 4), np.uint8), np.zeros((0, 1, 4, 4), np.float32), 2 / 255)
    assert d.shape == (0, 16)
    assert check_levels(np.zeros((0, 1, 4, 4), np.uint8), np.zeros((0, 1, 4, 4), np.float32), 2 / 255) == 0.0
    assert all(v.shape == (0,) for v in image_norms(d))
