"""Batch augmentations in torch, seeded by an explicit ``torch.Generator``.

* :func:`seeds_augment` -- the seeds' recipe: rotation within +-5 degrees,
  shifts and zoom within +-5 %, brightness x[0.9, 1.1] (border fill);
* :func:`attack_family_augment` -- the families the audited attacks use
  (docs/algorithms.md §7.7): intensity scaling ``s*x`` with s in [0.1, 1]
  (USMM's uniform scale, Wang et al. arXiv 2311.12051), multiplicative gain
  masks in [0.5, 1.5] made from another image of the batch (USMM's mix mask),
  uniform noise of +-32/255, and random convolutions (Xu et al., "Robust and
  Generalizable Visual Representation Learning via Random Convolutions",
  ICLR 2021) standing in for STM's style randomisation.

All functions take and return ``(N, 1, H, W)`` tensors in ``[0, 1]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def seeds_augment(
    x: torch.Tensor,
    gen: torch.Generator,
    rotation_deg: float = 5.0,
    shift: float = 0.05,
    zoom: float = 0.05,
    brightness: float = 0.1,
) -> torch.Tensor:
    """Random affine (rotation, shift, zoom) plus brightness, per image."""
    n = x.shape[0]
    ang = _uniform(n, -rotation_deg, rotation_deg, gen, x.device) * math.pi / 180.0
    scale = 1.0 / _uniform(n, 1.0 - zoom, 1.0 + zoom, gen, x.device)
    tx = _uniform(n, -shift, shift, gen, x.device) * 2.0
    ty = _uniform(n, -shift, shift, gen, x.device) * 2.0
    cos, sin = torch.cos(ang) * scale, torch.sin(ang) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gain = _uniform(n, 1.0 - brightness, 1.0 + brightness, gen, x.device).view(n, 1, 1, 1)
    return (out * gain).clamp(0.0, 1.0)


def intensity_scale(x: torch.Tensor, gen: torch.Generator, lo: float = 0.1, hi: float = 1.0) -> torch.Tensor:
    """``s * x`` with one s ~ U[lo, hi] per image."""
    return x * _uniform(x.shape[0], lo, hi, gen, x.device).view(-1, 1, 1, 1)


def gain_mask(x: torch.Tensor, gen: torch.Generator, lo: float = 0.5, hi: float = 1.5) -> torch.Tensor:
    """Multiply by a mask in [lo, hi] made from another image of the batch (a random permutation)."""
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    mask = lo + (hi - lo) * x[perm]
    return (x * mask).clamp(0.0, 1.0)


def uniform_noise(x: torch.Tensor, gen: torch.Generator, eps: float = 32.0 / 255.0) -> torch.Tensor:
    """Add U[-eps, eps] noise per pixel."""
    noise = (torch.rand(x.shape, generator=gen) * 2.0 - 1.0).to(x.device) * eps
    return (x + noise).clamp(0.0, 1.0)


def random_conv(x: torch.Tensor, gen: torch.Generator, sizes: tuple[int, ...] = (1, 3, 5, 7)) -> torch.Tensor:
    """Random-convolution "style" change: a random k x k filter per image, rescaled to the image's range,
    mixed with the input with a random weight (Xu et al. 2021)."""
    n = x.shape[0]
    out = torch.empty_like(x)
    ks = torch.randint(0, len(sizes), (n,), generator=gen)
    alpha = _uniform(n, 0.0, 1.0, gen, x.device).view(n, 1, 1, 1)
    for i in range(n):
        k = sizes[int(ks[i])]
        w = (torch.randn((1, 1, k, k), generator=gen) / k).to(x.device, x.dtype)
        y = F.conv2d(x[i : i + 1], w, padding=k // 2)
        lo, hi = y.amin(), y.amax()
        xlo, xhi = x[i].amin(), x[i].amax()
        y = (y - lo) / (hi - lo + 1e-6) * (xhi - xlo) + xlo
        out[i : i + 1] = y
    return (alpha * out + (1 - alpha) * x).clamp(0.0, 1.0)


ATTACK_FAMILIES = ("none", "intensity_scale", "gain_mask", "uniform_noise", "random_conv")


def attack_family_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The seeds' augmentation, then one attack-family transform per image chosen uniformly
    among :data:`ATTACK_FAMILIES` (``none`` keeps the image as it is)."""
    x = seeds_augment(x, gen)
    choice = torch.randint(0, len(ATTACK_FAMILIES), (x.shape[0],), generator=gen).to(x.device)
    out = x.clone()
    funcs = (None, intensity_scale, gain_mask, uniform_noise, random_conv)
    for j, fn in enumerate(funcs):
        if fn is None:
            continue
        sel = choice == j
        if bool(sel.any()):
            # gain masks borrow from the whole batch, the rest act per image
            y = fn(x, gen) if fn is gain_mask else fn(x[sel], gen)
            out[sel] = y[sel] if fn is gain_mask else y
    return out


AUGMENTATIONS = {"seeds": seeds_augment, "attack-families": attack_family_augment, "none": None}
