"""Perturbation statistics of an adversarial set against its clean images (norms, SSIM, PSNR)."""

from __future__ import annotations

import numpy as np


def perturbation_stats(x, x_adv, batch_size: int = 64) -> dict[str, float]:
    """Mean/max L-inf, mean L2, mean SSIM (scikit-image, ``data_range=1``) and mean PSNR (dB, capped at 100).

    Both are ``(N, 1, H, W)`` in ``[0, 1]`` (arrays or :class:`~auditor.data.stream.LazyImages`, read
    ``batch_size`` images at a time); norms are per image, in ``[0, 1]`` units.
    """
    from skimage.metrics import structural_similarity

    from auditor.data.stream import iter_batches

    if tuple(x.shape) != tuple(x_adv.shape) or len(x.shape) != 4:
        raise ValueError(f"shapes differ or are not (N, C, H, W): {tuple(x.shape)} vs {tuple(x_adv.shape)}")
    if x.shape[0] == 0:
        return {"linf_mean": 0.0, "linf_max": 0.0, "l2_mean": 0.0, "ssim_mean": 1.0, "psnr_mean": 100.0}
    linf: list[np.ndarray] = []
    l2: list[np.ndarray] = []
    psnr: list[np.ndarray] = []
    ssim: list[float] = []
    for (_, xa), (_, xb) in zip(iter_batches(x, batch_size), iter_batches(x_adv, batch_size)):
        a = np.asarray(xa, dtype=np.float64)
        b = np.asarray(xb, dtype=np.float64)
        d = (b - a).reshape(a.shape[0], -1)
        linf.append(np.abs(d).max(1))
        l2.append(np.sqrt((d**2).sum(1)))
        mse = (d**2).mean(1)
        psnr.append(np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0))
        ssim.extend(structural_similarity(a[i, 0], b[i, 0], data_range=1.0) for i in range(a.shape[0]))
    linf_a, l2_a, psnr_a = np.concatenate(linf), np.concatenate(l2), np.concatenate(psnr)
    return {
        "linf_mean": float(linf_a.mean()),
        "linf_max": float(linf_a.max()),
        "l2_mean": float(l2_a.mean()),
        "ssim_mean": float(np.mean(ssim)),
        "psnr_mean": float(psnr_a.mean()),
    }
