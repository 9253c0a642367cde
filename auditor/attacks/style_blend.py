"""The seeds' visible "style transfer manipulation": alpha-blending a style image into the X-ray.

This is *not* the STM attack of Ge et al. (see :mod:`auditor.attacks.stm` and
docs/algorithms.md §6): the project's source documents blend a
decorative style image at 100/50/30/10 % opacity, optionally after a
Gatys-style content/Gram optimisation (Gatys, Ecker, Bethge, "Image Style
Transfer Using Convolutional Neural Networks", CVPR 2016). It is
model-agnostic -- no gradient of the target is used -- and clearly visible, so
it measures robustness to a gross appearance change, not to an L-inf attack::

    x_blend = (1 - alpha) * x + alpha * style,   alpha in {0.1, 0.3, 0.5, 1.0}

``style`` is a user image (read grey, centre-cropped and resized) or a built-in
seeded procedural texture; with ``gatys_steps > 0`` it is instead the X-ray
itself optimised towards the style image's Gram statistics on a surrogate's
convolutional features (bounded number of Adam steps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import UsageError

BLEND_ALPHAS = (0.1, 0.3, 0.5, 1.0)
MAX_GATYS_STEPS = 500


def procedural_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded decorative grey texture ``(H, W)`` in ``[0, 1]``: oriented waves, rings and soft noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = yy / max(height, 1), xx / max(width, 1)
    tex = np.zeros((height, width))
    for _ in range(5):
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(4, 18)
        tex += rng.uniform(0.3, 1.0) * np.sin(
            2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 2 * np.pi)
        )
    cy, cx = rng.uniform(0.2, 0.8, size=2)
    tex += 0.8 * np.sin(2 * np.pi * rng.uniform(6, 14) * np.hypot(yy - cy, xx - cx))
    noise = rng.normal(size=(max(2, height // 8), max(2, width // 8)))
    import cv2

    tex += 0.7 * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    tex = (tex - tex.min()) / max(float(tex.max() - tex.min()), 1e-12)
    return tex.astype(np.float32)


def load_style_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A user style image as grey ``(H, W)`` in ``[0, 1]`` at ``size`` (centre crop, then resize)."""
    from auditor.data import ImageReadError, load_image

    try:
        return load_image(path, size)
    except ImageReadError as exc:
        raise UsageError(f"--style-image {path}: {exc}") from None


def style_blend(x: np.ndarray, style: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * x + alpha * style`` for ``x`` ``(N, 1, H, W)`` and ``style`` ``(H, W)`` or ``(N, 1, H, W)``."""
    if not 0 <= alpha <= 1:
        raise UsageError(f"blend alpha {alpha!r} must lie in [0, 1]")
    x = np.asarray(x, dtype=np.float32)
    s = np.asarray(style, dtype=np.float32)
    if s.ndim == 2:
        s = s[None, None]
    return ((1.0 - alpha) * x + alpha * s).astype(np.float32)


def gatys_stylise(
    images: np.ndarray,
    style: np.ndarray,
    feature_model: Any,
    steps: int = 100,
    style_weight: float = 1e4,
    content_weight: float = 1.0,
    lr: float = 0.02,
) -> np.ndarray:
    """Gatys content/Gram optimisation of each image towards ``style`` on ``feature_model``'s conv features.

    ``feature_model`` is a torch module taking ``(N, 1, H, W)`` in ``[0, 1]``
    (e.g. a surrogate's ``.module``); up to five evenly spaced ``Conv2d``
    outputs give the Gram (style) targets, the middle one the content target.
    ``steps`` is capped at 500. Deterministic (starts from the content image,
    no random draws). Returns ``(N, 1, H, W)`` in ``[0, 1]``.
    """
    import torch

    from auditor.attacks.projection import project

    if not 1 <= steps <= MAX_GATYS_STEPS:
        raise UsageError(f"Gatys steps {steps} must lie in [1, {MAX_GATYS_STEPS}]")
    model = getattr(feature_model, "module", feature_model)
    model.eval().requires_grad_(False)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise UsageError("Gatys style transfer needs a surrogate with convolution layers")
    pick = sorted({int(round(i)) for i in np.linspace(0, len(convs) - 1, min(5, len(convs)))})
    layers = [convs[i] for i in pick]
    content_layer = layers[len(layers) // 2]
    feats: dict[Any, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: feats.__setitem__(mod, out)) for m in layers]

    def gram(f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        f = f.reshape(b, c, h * w)
        return f @ f.transpose(1, 2) / (c * h * w)

    try:
        x0 = torch.from_numpy(np.asarray(images, dtype=np.float32))
        s = torch.from_numpy(np.asarray(style, dtype=np.float32)).expand(1, 1, *x0.shape[-2:])
        with torch.no_grad():
            model(s)
            style_grams = {m: gram(feats[m]).detach() for m in layers}
            model(x0)
            content = feats[content_layer].detach()
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            model(x)
            loss = content_weight * torch.mean((feats[content_layer] - content) ** 2)
            loss = loss + style_weight * sum(torch.mean((gram(feats[m]) - style_grams[m]) ** 2) for m in layers)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.copy_(project(x, x0, 1.0))
        return x.detach().numpy().astype(np.float32)
    finally:
        for h in hooks:
            h.remove()


def style_blend_set(
    images: np.ndarray,
    alpha: float,
    style_image: str | Path | None = None,
    seed: int = 0,
    gatys_steps: int = 0,
    surrogate: Any = None,
) -> tuple[np.ndarray, str]:
    """The blended set at one ``alpha`` and its report label.

    ``style_image`` None -> the built-in procedural texture (seeded). With
    ``gatys_steps > 0`` the blend partner is the Gatys-stylised X-ray (needs ``surrogate``).
    """
    images = np.asarray(images, dtype=np.float32)
    h, w = images.shape[-2:]
    if style_image:
        style = load_style_image(style_image, (h, w))
        source = f"style image {Path(style_image).name}"
    else:
        style = procedural_texture(h, w, seed)
        source = "built-in procedural texture"
    if gatys_steps:
        if surrogate is None:
            raise UsageError("Gatys style blending needs a surrogate for its features (--surrogate)")
        style = gatys_stylise(images, style, surrogate, steps=gatys_steps)
        source += f", Gatys {gatys_steps} steps on surrogate features"
    return style_blend(images, style, alpha), f"style blend alpha={alpha:g} ({source})"
