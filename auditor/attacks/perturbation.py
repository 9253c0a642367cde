"""Perturbation statistics of an adversarial set against its clean images (norms, SSIM, PSNR).

:class:`PerturbationStats` accumulates the per-image values batch by batch, so the set builder
(:func:`auditor.attacks.sets.build_adversarial_set`) computes them on the clean and adversarial batches it
has just verified, without a second pass over both sets; :func:`perturbation_stats` is the same over two
whole sets. Both give identical numbers: every value is per image, and the means are taken once over all.
"""

from __future__ import annotations

import numpy as np

#: the statistics computed from the pixel differences alone (cheap); SSIM is the one that costs (~3 ms per 224 px image)
CHEAP_KEYS = ("linf_mean", "linf_max", "l2_mean", "psnr_mean")


class PerturbationStats:
    """Per-image L-inf, L2, PSNR and SSIM of batches added in image order; :meth:`result` gives the summary.

    ``ssim=False`` leaves SSIM out (the set builder then takes it from the set's checked statistics record,
    :mod:`auditor.attacks.stats_record`).
    """

    def __init__(self, ssim: bool = True) -> None:
        self.ssim = ssim
        self._linf: list[np.ndarray] = []
        self._l2: list[np.ndarray] = []
        self._psnr: list[np.ndarray] = []
        self._ssim: list[float] = []

    def add(self, clean, adv, norms: "tuple[np.ndarray, np.ndarray, np.ndarray] | None" = None) -> None:
        """Add a batch: ``clean`` and ``adv`` ``(k, 1, H, W)`` in ``[0, 1]`` (compared in float64). ``norms`` are
        their :func:`image_norms` when the caller has them already (the set walk, from its ε check)."""
        from skimage.metrics import structural_similarity

        if norms is None or self.ssim:
            a = np.asarray(clean, dtype=np.float64)
            b = np.asarray(adv, dtype=np.float64)
            if norms is None:
                norms = image_norms((b - a).reshape(a.shape[0], -1))
            if self.ssim:
                self._ssim.extend(structural_similarity(a[i, 0], b[i, 0], data_range=1.0) for i in range(a.shape[0]))
        linf, l2, psnr = norms
        self._linf.append(linf)
        self._l2.append(l2)
        self._psnr.append(psnr)

    def __len__(self) -> int:
        return sum(len(v) for v in self._linf)

    def result(self, ssim_mean: float | None = None) -> dict[str, float]:
        """Mean/max L-inf, mean L2, mean SSIM (``data_range=1``) and mean PSNR (dB, capped at 100); SSIM is
        ``ssim_mean`` when given (and None when it was neither computed nor given)."""
        if not len(self):
            return {"linf_mean": 0.0, "linf_max": 0.0, "l2_mean": 0.0, "ssim_mean": 1.0, "psnr_mean": 100.0}
        linf_a, l2_a, psnr_a = np.concatenate(self._linf), np.concatenate(self._l2), np.concatenate(self._psnr)
        if ssim_mean is None and self.ssim:
            ssim_mean = float(np.mean(self._ssim))
        return {
            "linf_mean": float(linf_a.mean()),
            "linf_max": float(linf_a.max()),
            "l2_mean": float(l2_a.mean()),
            "ssim_mean": ssim_mean,  # type: ignore[dict-item]
            "psnr_mean": float(psnr_a.mean()),
        }


def image_norms(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image L-inf, L2 and PSNR (dB, capped at 100) of the float64 differences ``d`` ``(k, P)``
    (adversarial minus clean, ``[0, 1]`` units): one pass for the absolute values, one for the squares."""
    a = np.abs(d)
    linf = a.max(1) if d.shape[1] else np.zeros(d.shape[0])
    np.square(d, out=a)
    s = a.sum(1)
    mse = s / d.shape[1] if d.shape[1] else s
    psnr = np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0)
    return linf, np.sqrt(s), psnr


def perturbation_stats(x, x_adv, batch_size: int = 64) -> dict[str, float]:
    """Mean/max L-inf, mean L2, mean SSIM (scikit-image, ``data_range=1``) and mean PSNR (dB, capped at 100).

    Both are ``(N, 1, H, W)`` in ``[0, 1]`` (arrays or :class:`~auditor.data.stream.LazyImages`, read
    ``batch_size`` images at a time); norms are per image, in ``[0, 1]`` units.
    """
    from auditor.data.stream import iter_batches

    if tuple(x.shape) != tuple(x_adv.shape) or len(x.shape) != 4:
        raise ValueError(f"shapes differ or are not (N, C, H, W): {tuple(x.shape)} vs {tuple(x_adv.shape)}")
    stats = PerturbationStats()
    for (_, xa), (_, xb) in zip(iter_batches(x, batch_size), iter_batches(x_adv, batch_size)):
        stats.add(xa, xb)
    return stats.result()


def set_stats(clean, aset) -> dict[str, float]:
    """The statistics of a built set (a :class:`~auditor.attacks.set_records.GeneratedSet`) against ``clean``: the
    ones its builder computed on the batches it verified, else :func:`perturbation_stats` over both sets."""
    known = getattr(aset, "perturbation", None)
    return dict(known) if known is not None else perturbation_stats(clean, aset.images)
