"""Simple input-transform defenses: JPEG re-encoding, bit-depth reduction, median smoothing.

* JPEG compression as a defense: Guo, Rana, Cisse and van der Maaten, "Countering Adversarial
  Images using Input Transformations", ICLR 2018 (their code re-encodes at quality 75);
  Dziugaite, Ghahramani and Roy, arXiv 1608.00853 (helps against small FGSM steps only).
* Bit-depth reduction and median smoothing ("feature squeezing"): Xu, Evans and Qi,
  "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks", NDSS 2018.
* Limits: Athalye, Carlini and Wagner, ICML 2018 (BPDA breaks all three with straight-through
  gradients); Shin and Song, "JPEG-resistant adversarial images", NIPS MLSec 2017.

All three are evaluated on grey 8-bit-like images; none of them is differentiable, so their
torch path (:meth:`Preprocessor.torch_forward`) is straight-through: forward = the real
transform, backward = identity.
"""

from __future__ import annotations

import numpy as np

from auditor.defenses.base import Preprocessor, to_uint8
from auditor.errors import DataError, UsageError

#: JPEG qualities swept when ``jpeg`` is given without a value (75 is Guo et al.'s value)
JPEG_DEFAULT_SWEEP = (90, 75, 50, 30)
#: largest median window: its cost grows with the square of the kernel, and beyond this the
#: filter erases the anatomy as well as any perturbation
MAX_MEDIAN_KERNEL = 31


class JpegCompression(Preprocessor):
    """Re-encode each image as an 8-bit grey JPEG and decode it (OpenCV ``imencode``/``imdecode``).

    Args:
        quality: JPEG quality in 1..100 (default 75, Guo et al. ICLR 2018). The CLI sweeps
            {90, 75, 50, 30} when ``jpeg`` is given without a quality.

    Example:
        >>> d = JpegCompression(75); d.name
        'jpeg:75'
    """

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= int(quality) <= 100:
            raise UsageError(f"jpeg quality {quality!r} is out of range (expected an integer 1-100)")
        self.quality = int(quality)
        self.name = f"jpeg:{self.quality}"
        self.label = f"JPEG re-encoding, quality {self.quality}"
        self.params = {"quality": self.quality, "backend": "opencv", "bits": 8}

    def _apply(self, x: np.ndarray) -> np.ndarray:
        import cv2

        out = np.empty_like(x)
        flags = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]
        for i in range(len(x)):
            ok, buf = cv2.imencode(".jpg", to_uint8(x[i, 0]), flags)
            if not ok:
                raise DataError(f"{self.name}: OpenCV could not encode image {i} of shape {x[i, 0].shape}")
            dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            if dec is None:
                raise DataError(f"{self.name}: OpenCV could not decode its JPEG of image {i}")
            out[i, 0] = dec.astype(np.float32) / 255.0
        return out


class BitDepthReduction(Preprocessor):
    """Round every pixel to one of ``2**bits`` evenly spaced levels in ``[0, 1]``.

    ``y = round(x * (2**bits - 1)) / (2**bits - 1)`` (round half to even), as in Xu et al.
    NDSS 2018. ``bits = 1`` thresholds at 0.5; ``bits = 8`` is the usual 8-bit quantisation.

    Args:
        bits: bit depth in 1..8 (default 4, the squeezer used by feature squeezing here).
    """

    def __init__(self, bits: int = 4) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= int(bits) <= 8:
            raise UsageError(f"bitdepth {bits!r} is out of range (expected an integer 1-8)")
        self.bits = int(bits)
        self.levels = 2**self.bits
        self.name = f"bitdepth:{self.bits}"
        self.label = f"bit-depth reduction to {self.bits} bit ({self.levels} levels)"
        self.params = {"bits": self.bits, "levels": self.levels}

    def _apply(self, x: np.ndarray) -> np.ndarray:
        m = np.float32(self.levels - 1)
        return (np.rint(x * m) / m).astype(np.float32)


class MedianSmoothing(Preprocessor):
    """Median filter over a ``kernel x kernel`` window of each image.

    Works on float32 (no 8-bit quantisation). Border handling is scipy's ``mode="reflect"``:
    the image is extended by mirroring about the edge *including* the edge pixel
    (``d c b a | a b c d | d c b a``); for ``k = 3`` this equals repeating the edge pixel.
    For k = 3 and 5 the image is padded that way (``np.pad(mode="symmetric")``) and filtered
    with ``cv2.medianBlur`` (float32 is supported for these sizes), then cropped, which gives
    exactly ``scipy.ndimage.median_filter(mode="reflect")`` much faster; larger kernels use
    scipy directly with a ``(1, 1, k, k)`` window over the batch.

    Args:
        kernel: odd window size in 3..:data:`MAX_MEDIAN_KERNEL` (default 3).
    """

    def __init__(self, kernel: int = 3) -> None:
        super().__init__()
        if (
            isinstance(kernel, bool)
            or not isinstance(kernel, (int, np.integer))
            or not 3 <= int(kernel) <= MAX_MEDIAN_KERNEL
            or int(kernel) % 2 == 0
        ):
            raise UsageError(
                f"median kernel {kernel!r} is invalid (expected an odd integer from 3 to {MAX_MEDIAN_KERNEL})"
            )
        self.kernel = int(kernel)
        self.name = f"median:{self.kernel}"
        self.label = f"median filter {self.kernel}x{self.kernel} (reflect border)"
        self.params = {
            "kernel": self.kernel,
            "border": "reflect",
            "backend": "opencv" if self.kernel in (3, 5) else "scipy.ndimage",
        }

    def _apply(self, x: np.ndarray) -> np.ndarray:
        if self.kernel in (3, 5):  # OpenCV filters float32 only for k = 3, 5; ~50x faster than scipy
            import cv2

            r = self.kernel // 2
            padded = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="symmetric")  # == scipy "reflect"
            out = np.empty_like(x)
            for i in range(len(x)):
                out[i, 0] = cv2.medianBlur(padded[i, 0], self.kernel)[r:-r, r:-r]
            return out
        from scipy.ndimage import median_filter

        return median_filter(x, size=(1, 1, self.kernel, self.kernel), mode="reflect")
