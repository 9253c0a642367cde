"""What makes an image file unusable, shared by every decoder (:mod:`auditor.data.decode`,
:mod:`auditor.data.dicom`): the error that carries the reason, the pixel limit, the finiteness check.

Decoders read the limit as ``limits.MAX_PIXELS`` at call time, so one patched value reaches both.
"""

from __future__ import annotations

import numpy as np

#: images above this many pixels are refused (a decompression-bomb guard)
MAX_PIXELS = 64_000_000


class ImageReadError(Exception):
    """An image file cannot be used; the message is the reason."""


def require_finite(arr: np.ndarray) -> None:
    """Raise :class:`ImageReadError` when pixels are NaN or infinite (checked *before* any normalisation,
    which would otherwise turn them into a plausible-looking image)."""
    bad = arr.size - int(np.isfinite(arr).sum())
    if bad:
        raise ImageReadError(f"image holds {bad} NaN or infinite pixel value(s)")
