"""The report's FFT figure: log-magnitude spectra of a clean image, its attacked copy and the
perturbation (docs/algorithms.md §9.4). A visual aid only; no detector or verdict uses it."""

from __future__ import annotations

import numpy as np

from auditor.defenses.base import match_size
from auditor.errors import DataError


def _as_2d(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise DataError(f"fft_spectra: expected one grey image (H, W), (1, H, W) or (1, 1, H, W), got {a.shape}")
    return a


def log_spectrum(img: np.ndarray) -> np.ndarray:
    """``log1p(|fftshift(fft2(img))|)`` of one grey image, float32 ``(H, W)`` (zero frequency centred)."""
    return np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(_as_2d(img))))).astype(np.float32)


def fft_spectra(clean: np.ndarray, suspect: np.ndarray) -> dict[str, np.ndarray]:
    """Log-magnitude spectra for the report's FFT figure (docs/algorithms.md §9.4).

    Returns ``{"clean", "suspect", "difference"}``, each float32 ``(H, W)``; ``difference`` is the
    spectrum of the difference image ``suspect - clean`` (the perturbation's spectrum). A visual
    aid only; no decision uses it.
    """
    c = _as_2d(clean)
    s = match_size(c[None, None], _as_2d(suspect)[None, None])[0, 0]
    return {"clean": log_spectrum(c), "suspect": log_spectrum(s), "difference": log_spectrum(s - c)}
