"""Calibration of the detectors of :mod:`auditor.defenses.detect` to a target false-positive rate.

* :func:`conformal_budget`: how many benign calibration scores may lie beyond a threshold (the
  split-conformal quantile), and the order-statistic thresholds that respect that budget;
* :func:`make_benign_pairs`: the benign counterparts of clean images (JPEG quality 85-95 or uniform
  noise of +-2/255) the reference-based detector is calibrated on.
"""

from __future__ import annotations

import math

import numpy as np

from auditor.defenses.base import check_batch
from auditor.errors import UsageError

DEFAULT_TARGET_FPR = 0.05


def _check_target(target_fpr: float) -> float:
    t = float(target_fpr)
    if not 0.0 < t < 1.0:
        raise UsageError(f"target false-positive rate {target_fpr!r} must be between 0 and 1")
    return t


def conformal_budget(n: int, target_fpr: float) -> int:
    """How many of ``n`` calibration scores may exceed the threshold: ``n - ceil((n + 1)(1 - target))``.

    This is the split-conformal quantile (Vovk et al. 2005; Angelopoulos and Bates, arXiv
    2107.07511): with exchangeable benign scores, a new benign score exceeds the threshold with
    probability at most ``target`` (averaged over calibration sets). It is one fewer than
    ``floor(target * n)`` for most ``n``; never negative.
    """
    return max(0, n - int(math.ceil((n + 1) * (1.0 - target_fpr) - 1e-9)))


def _budget_threshold_above(scores: np.ndarray, budget: int) -> float:
    """Smallest order statistic T with at most ``budget`` scores strictly above T."""
    if len(scores) == 0:
        return float("inf")
    desc = np.sort(scores)[::-1]
    if budget >= len(desc):
        return float(np.nextafter(desc[-1], -np.inf))
    return float(desc[max(budget, 0)])


def _budget_threshold_below(scores: np.ndarray, budget: int) -> float:
    """Largest order statistic T with at most ``budget`` scores strictly below T."""
    if len(scores) == 0:
        return float("-inf")
    asc = np.sort(scores)
    if budget >= len(asc):
        return float(np.nextafter(asc[-1], np.inf))
    return float(asc[max(budget, 0)])


# ---------------------------------------------------------------------------- benign pairs
def make_benign_pairs(
    x: np.ndarray,
    seed: int = 0,
    jpeg_quality: tuple[int, int] = (85, 95),
    noise: float = 2.0 / 255.0,
    return_kinds: bool = False,
):
    """Benign counterparts of ``x`` for calibrating the reference-based detector.

    A random half of the images (by a seeded permutation) is re-encoded as JPEG at a quality
    drawn uniformly from ``jpeg_quality`` (inclusive; default 85-95, i.e. q ~ 90); the other
    half gets uniform noise in ``[-noise, +noise]`` (default 2/255), clipped to ``[0, 1]``.

    Returns the ``(N, 1, H, W)`` float32 batch, plus the list of kinds (``"jpeg:Q"`` /
    ``"noise"``) when ``return_kinds`` is True.
    """
    from auditor.defenses.transforms import JpegCompression

    arr = check_batch(x, "benign pairs")
    rng = np.random.default_rng(seed)
    n = len(arr)
    perm = rng.permutation(n)
    is_jpeg = np.zeros(n, bool)
    is_jpeg[perm[: (n + 1) // 2]] = True
    qualities = rng.integers(jpeg_quality[0], jpeg_quality[1] + 1, size=n)
    # the noise is drawn one image at a time: the same stream of doubles as one (N, 1, H, W) draw, without
    # holding it in float64 (~0.4 GB of transients for a 500-image detector subset at 224 px otherwise)
    out = np.empty_like(arr)
    for i in range(n):
        np.add(arr[i], rng.uniform(-noise, noise, size=arr.shape[1:]).astype(np.float32), out=out[i])
    np.clip(out, 0.0, 1.0, out=out)
    kinds = ["noise"] * n
    for q in np.unique(qualities[is_jpeg]):
        idx = np.flatnonzero(is_jpeg & (qualities == q))
        out[idx] = JpegCompression(int(q))(arr[idx])
        for i in idx.tolist():
            kinds[i] = f"jpeg:{int(q)}"
    return (out, kinds) if return_kinds else out
