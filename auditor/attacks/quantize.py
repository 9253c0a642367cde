"""8-bit quantisation of an adversarial set within its ε budget, and the check a stored set must pass.

Quantisation rounds to the nearest 8-bit level (the reference code floors) in
integer arithmetic: each pixel stays within ``E = eps * 255`` levels of the
clean image's own 8-bit level, so pixels the attack put on the ε edge stay on
it (see :func:`quantize` for clean images that are not on the 8-bit grid).
:func:`check_levels` re-checks stored levels against the clean image.
"""

from __future__ import annotations

import numpy as np

from auditor.data.decode import from_levels
from auditor.errors import DataError


def budget_levels(eps: float) -> int:
    """The budget ``eps`` in whole 8-bit grey levels: the largest integer ``E`` with ``E / 255 <= eps``.

    ``eps`` is a float, so a budget meant as ``k/255`` may arrive as ``k/255``
    plus or minus one float ulp; values within 1e-6 of a level count as that
    level. This is the only tolerance of the quantisation.
    """
    v = float(eps) * 255.0
    r = round(v)
    return int(r) if abs(v - r) < 1e-6 else int(np.floor(v))


#: A clean value within this many grey levels of an 8-bit level counts as on the grid. float32
#: stores ``k/255`` with an error below 2e-5 levels; so an on-grid pixel may end up to 4e-7 (1e-4/255)
#: beyond eps in float terms, never a whole level.
GRID_TOLERANCE_LEVELS = 1e-4


def allowed_levels(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The range ``[lo, hi]`` of 8-bit levels (``int32``) that keep each pixel within ``eps`` of the clean ``x``.

    With ``E = budget_levels(eps)``: a clean value on the 8-bit grid (level
    ``g``) allows ``[g - E, g + E]`` in exact integer arithmetic; a value off the
    grid (``v = 255 x`` not a whole number: a resized or >8-bit image) allows
    ``[ceil(v - E), floor(v + E)]``, the levels whose float distance to ``x``
    is at most ``E / 255 <= eps``. Both are clipped to ``[0, 255]``. Where the
    range is empty (``E = 0`` off the grid) it is the nearest level alone, and
    the measured L-inf (reported as ``linf_max``) then exceeds ``eps`` by
    less than half a level.
    """
    v = np.asarray(x, dtype=np.float64) * 255.0
    e = budget_levels(eps)
    g = np.rint(v)
    on_grid = np.abs(v - g) <= GRID_TOLERANCE_LEVELS
    lo = np.where(on_grid, g - e, np.ceil(v - e))
    hi = np.where(on_grid, g + e, np.floor(v + e))
    empty = lo > hi
    lo, hi = np.where(empty, g, lo), np.where(empty, g, hi)
    lo = np.clip(lo, 0, 255).astype(np.int32)
    hi = np.clip(hi, 0, 255).astype(np.int32)
    return lo, hi


def quantize(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """8-bit levels of ``x_adv`` that use the whole budget and never exceed it; returns ``uint8``.

    Each pixel is ``rint(255 * x_adv)`` clamped into :func:`allowed_levels`.
    For clean images on the 8-bit grid (8-bit files at the model's size) the
    clamp is integer arithmetic around the clean level, so a pixel the attack
    left on the ε edge stays exactly on the edge whatever the float rounding
    of ``x_adv``, and the stored L-inf is exactly ``eps``. For clean images off
    the grid the stored image stays within ``eps`` of the *float* clean image
    (up to one level of the budget on one side cannot be reached by any 8-bit
    value); callers measure and report the true L-inf.
    """
    lo, hi = allowed_levels(x, eps)
    a = np.rint(np.asarray(x_adv, dtype=np.float64) * 255.0)
    return np.clip(a, lo, hi).astype(np.uint8)


def check_levels(levels: np.ndarray, x: np.ndarray, eps: float) -> float:
    """Check stored ``levels`` against the clean ``x`` (:func:`allowed_levels`); returns the true float L-inf.

    Raises :class:`DataError` when a level lies outside the budget.
    """
    d = level_difference(levels, x, eps)
    return float(np.abs(d).max()) if d.size else 0.0


def level_difference(levels: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """:func:`check_levels`' test, then the float64 differences ``levels / 255 - x`` per image, ``(k, H*W)``.

    ``levels / 255`` is taken in float32 (the pixels every later pass sees) and ``x`` as float32, both compared in
    float64: the differences the perturbation statistics are made of
    (:func:`auditor.attacks.perturbation.image_norms`), so a set walk forms them once per batch. Raises
    :class:`DataError` when a level lies outside the budget.
    """
    x32 = np.asarray(x, dtype=np.float32)
    x64 = x32.astype(np.float64)  # the clean side of the differences
    grid = x64 if np.asarray(x).dtype == np.float32 else np.asarray(x, dtype=np.float64)  # the grid test's values
    over = _outside_on_grid(levels, grid, eps)
    if over is None:  # some clean pixel off the 8-bit grid: the general intervals
        lo, hi = allowed_levels(x, eps)
        k = levels.astype(np.int32)
        over = (k < lo) | (k > hi)
    if over.any():
        raise DataError(
            f"{int(over.sum())} pixel(s) lie outside the epsilon budget of the clean image "
            f"({budget_levels(eps)} grey level(s))"
        )
    d = from_levels(levels).astype(np.float64)
    d -= x64
    return d.reshape(d.shape[0], int(np.prod(d.shape[1:], dtype=np.int64)))


def _outside_on_grid(levels: np.ndarray, grid: np.ndarray, eps: float) -> np.ndarray | None:
    """:func:`check_levels`' test when every clean pixel is on the 8-bit grid (the usual case: 8-bit files at the
    model's size), else None. There :func:`allowed_levels` is ``clip([g - E, g + E], 0, 255)`` and a stored level
    ``k`` (0..255) lies in it exactly when ``|k - g| <= E``: the same verdict in a third of the array passes. The
    grid test is the float64 one of :func:`allowed_levels`; the comparison is exact integer arithmetic (``int16``)
    when the clean values lie in ``[0, 1]`` (so ``g`` in ``[0, 255]``), else in float64 as before."""
    v = grid * 255.0
    g = np.rint(v)
    v -= g
    np.abs(v, out=v)
    if v.size and v.max() > GRID_TOLERANCE_LEVELS:
        return None
    e = budget_levels(eps)
    if g.size and 0.0 <= g.min() and g.max() <= 255.0:
        return np.abs(levels.astype(np.int16) - g.astype(np.int16)) > e
    return np.abs(levels.astype(np.float64) - g) > e
