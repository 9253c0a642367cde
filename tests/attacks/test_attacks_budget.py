"""Per-image budgets of the shared loop and FGSM-RS: what training's adversarial images are made with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attack_nets import CountingNet
from auditor.attacks.fgsm_rs import FGSMRS
from auditor.attacks.mifgsm import MIFGSM
from auditor.training.perturb import fgsm_rs, mifgsm


def _batch(n: int = 6):
    g = torch.Generator().manual_seed(1)
    return torch.rand((n, 1, 16, 16), generator=g), torch.arange(n) % 3


def test_uniform_per_image_budget_equals_the_scalar_budget():
    x, y = _batch()
    scalar = MIFGSM(CountingNet(), epsilon=8 / 255, steps=3)(x, y, seed=0)
    per_image = MIFGSM(CountingNet(), epsilon=8 / 255, steps=3)(x, y, seed=0, epsilon=torch.full((6,), 8 / 255))
    assert torch.allclose(scalar, per_image, rtol=0, atol=1e-6)  # alpha_i = eps_i * alpha / eps rounds differently


def test_per_image_budget_bounds_each_image_by_its_own_epsilon():
    x, y = _batch()
    eps = torch.tensor([2, 4, 8, 16, 2, 16]) / 255
    adv = mifgsm(CountingNet(), x, y, eps, steps=4)
    linf = (adv - x).abs().amax(dim=(1, 2, 3))
    assert bool((linf <= eps + 1e-6).all())
    assert float(linf[3]) > 8 / 255  # the large budgets are used, not capped at the smallest one
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_per_image_budget_outside_range_is_refused():
    x, y = _batch(2)
    with pytest.raises(ValueError, match="per-image epsilon"):
        MIFGSM(CountingNet(), epsilon=8 / 255)(x, y, epsilon=torch.tensor([0.0, 0.1]))


def test_fgsm_rs_leaves_the_network_under_training_trainable():
    net = CountingNet()
    x, y = _batch()
    eps = torch.tensor([4, 8, 16, 4, 8, 16]) / 255
    a = fgsm_rs(net, x, y, eps, torch.Generator().manual_seed(5))
    b = fgsm_rs(net, x, y, eps, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    assert net.training  # FGSMRS.setup does not switch modes; the recipe does, around the call
    linf = (a - x).abs().amax(dim=(1, 2, 3))
    assert bool((linf <= eps + 1e-6).all()) and bool((linf > 0).all())


def test_fgsm_rs_starts_at_a_random_point():
    x, y = _batch()
    a = FGSMRS(CountingNet(), epsilon=8 / 255)(x, y, generator=torch.Generator().manual_seed(1))
    b = FGSMRS(CountingNet(), epsilon=8 / 255)(x, y, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)


def test_the_on_grid_budget_check_equals_the_interval_check():
    """check_levels' shortcut for clean images on the 8-bit grid gives the verdict of allowed_levels, pixel by pixel
    (edges 0 and 255, budgets 0 to 8 levels), and steps aside for an image off the grid."""
    from auditor.attacks.quantize import _outside_on_grid, allowed_levels

    rng = np.random.default_rng(3)
    x = (rng.integers(0, 256, (6, 1, 20, 20)) / 255).astype(np.float32)
    x[0, 0, :2] = 0.0
    x[1, 0, :2] = 1.0
    for e in range(0, 9):
        eps = e / 255
        levels = np.clip(np.rint(x * 255) + rng.integers(-e - 2, e + 3, x.shape), 0, 255).astype(np.uint8)
        lo, hi = allowed_levels(x, eps)
        want = (levels.astype(np.int32) < lo) | (levels.astype(np.int32) > hi)
        got = _outside_on_grid(levels, x, eps)
        assert got is not None and np.array_equal(got, want) and want.any(), e
    off = x.copy()
    off[0, 0, 5, 5] += 0.3 / 255
    assert _outside_on_grid(levels, off, 4 / 255) is None
