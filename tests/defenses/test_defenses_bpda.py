"""BPDA: surrogate(defense(x)) has the numpy defense's forward value and non-zero input gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auditor.defenses.base import Preprocessor
from auditor.defenses.bpda import DefendedModule, defended_module
from auditor.defenses.transforms import BitDepthReduction, JpegCompression, MedianSmoothing
from auditor.types import Skipped


def tiny_surrogate() -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return net.eval()


@pytest.fixture()
def x() -> np.ndarray:
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    base = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy)
    noise = np.random.default_rng(0).uniform(-0.05, 0.05, (2, 1, 32, 32))
    return np.clip(base + noise, 0, 1).astype(np.float32)


@pytest.mark.parametrize("pre", [JpegCompression(75), BitDepthReduction(3), MedianSmoothing(3)], ids=lambda p: p.name)
def test_straight_through_forward_and_gradient(x, pre):
    sur = tiny_surrogate()
    mod = defended_module(sur, pre)
    assert isinstance(mod, DefendedModule) and mod.gradient == "straight-through"
    xt = torch.from_numpy(x).requires_grad_(True)
    # forward equals the numpy defense (within one 8-bit level)
    np.testing.assert_allclose(pre.torch_forward(xt).detach().numpy(), pre(x), atol=1 / 255)
    out = mod(xt)
    with torch.no_grad():
        ref = sur(torch.from_numpy(pre(x)))
    np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), atol=1e-5)
    out[:, 0].sum().backward()
    assert xt.grad is not None and float(xt.grad.abs().sum()) > 0
    # backward is the identity: same gradient as the surrogate alone evaluated at defense(x)
    z = torch.from_numpy(pre(x)).requires_grad_(True)
    sur(z)[:, 0].sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), z.grad.numpy(), atol=1e-6)


def test_no_torch_path_is_skipped():
    class NumpyOnly(Preprocessor):
        name = "numpy-only"
        gradient = None

        def _apply(self, x):
            return x

    out = defended_module(tiny_surrogate(), NumpyOnly())
    assert isinstance(out, Skipped) and out.name == "bpda:numpy-only" and out.kind == "defense"
    with pytest.raises(NotImplementedError):
        NumpyOnly().torch_forward(torch.zeros(1, 1, 4, 4))
