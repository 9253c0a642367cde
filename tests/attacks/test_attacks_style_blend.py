"""The visible style-blend manipulation (the seeds' 'style transfer manipulation')."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auditor.attacks.style_blend import (
    BLEND_ALPHAS,
    gatys_stylise,
    procedural_texture,
    style_blend,
    style_blend_set,
)
from auditor.errors import UsageError


def test_blend_formula_and_alphas():
    assert BLEND_ALPHAS == (0.1, 0.3, 0.5, 1.0)
    x = np.full((2, 1, 4, 4), 0.2, np.float32)
    s = np.full((4, 4), 1.0, np.float32)
    np.testing.assert_allclose(style_blend(x, s, 0.3), 0.2 * 0.7 + 0.3)
    np.testing.assert_allclose(style_blend(x, s, 1.0), 1.0)
    with pytest.raises(UsageError):
        style_blend(x, s, 1.5)


def test_procedural_texture_is_seeded_and_in_range():
    a, b, c = procedural_texture(32, 48, 0), procedural_texture(32, 48, 0), procedural_texture(32, 48, 1)
    assert a.shape == (32, 48) and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() > 0.1


def test_blend_set_with_user_style_image(tmp_path):
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255
    Image.fromarray(img).save(tmp_path / "style.png")
    x = np.zeros((3, 1, 32, 32), np.float32)
    out, label = style_blend_set(x, 0.5, style_image=str(tmp_path / "style.png"))
    assert out.shape == x.shape
    assert out[:, :, :, :12].max() < 0.05 and out[:, :, :, 20:].min() > 0.45
    assert label == "style blend alpha=0.5 (style image style.png)"
    _, label2 = style_blend_set(x, 0.1, seed=3)
    assert "built-in procedural texture" in label2
    with pytest.raises(UsageError):
        style_blend_set(x, 0.1, style_image=str(tmp_path / "missing.png"))


def test_gatys_is_bounded_and_uses_surrogate_features():
    import torch

    from auditor.reference_models.registry import build_model

    torch.manual_seed(0)
    net = build_model("small_cnn", 3, 1).eval()
    x = np.random.default_rng(0).uniform(0, 1, (2, 1, 32, 32)).astype(np.float32)
    out = gatys_stylise(x, procedural_texture(32, 32), net, steps=3)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1 and not np.array_equal(out, x)
    with pytest.raises(UsageError):
        gatys_stylise(x, procedural_texture(32, 32), net, steps=10_000)
