"""The single clamp of xray-audit's attacks: projection onto the ε-ball and the pixel range.

Every attack calls :func:`project` after each step and nowhere else clamps the
adversarial image (USMM's transform clamps its *gradient copies*, never the
image that is returned).
"""

from __future__ import annotations

import torch

NORMS = ("linf", "l2")


def project(
    x_adv: torch.Tensor,
    x: torch.Tensor,
    eps: float | torch.Tensor,
    norm: str = "linf",
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Project ``x_adv`` onto ``{z : ||z - x|| <= eps} ∩ [lo, hi]``.

    ``linf``: element-wise clamp to ``[x - eps, x + eps]`` then to ``bounds``
    (an exact projection, the two boxes intersect). ``l2``: rescale each
    image's perturbation to norm ``<= eps``, then clamp to ``bounds``
    (clamping towards ``x`` never increases the L2 norm). ``eps`` is a number
    or a per-image tensor of shape ``(N, 1, 1, 1)``.
    """
    lo, hi = bounds
    if norm == "linf":
        # torch's clamp overloads take numbers or tensors as bounds, not a union of the two
        delta = (x_adv - x).clamp(-eps, eps)  # type: ignore[arg-type]
    elif norm == "l2":
        delta = x_adv - x
        flat = delta.flatten(1).norm(p=2, dim=1).clamp_min(1e-12)
        radius = eps.flatten() if isinstance(eps, torch.Tensor) else eps
        factor = (radius / flat).clamp(max=1.0).view(-1, *([1] * (delta.dim() - 1)))
        delta = delta * factor
    else:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return (x + delta).clamp(lo, hi)
