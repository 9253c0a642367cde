"""Input-transform defenses, the BPDA adaptive check and the detectors.

Public API (imported lazily, so ``import auditor.defenses`` does not import torch):

* :func:`parse_defenses` (``registry``) -> list of :class:`Preprocessor` / ``Skipped``;
* :class:`Preprocessor` (``base``): ``pre(x)``, ``pre.measure_cost(x)``, ``pre.torch_forward(x_t)``;
* :func:`defended_module` (``bpda``): ``surrogate(defense(x))`` for adaptive attacks;
* detectors (``detect``, ``calibration``): :func:`make_benign_pairs`, :func:`calibrate_reference_detector`,
  :func:`evaluate_detector`, :class:`FeatureSqueezingDetector`;
* the report's FFT figure (``spectra``): :func:`fft_spectra`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Preprocessor": "base",
    "parse_defenses": "registry",
    "list_defenses": "registry",
    "JpegCompression": "transforms",
    "BitDepthReduction": "transforms",
    "MedianSmoothing": "transforms",
    "OnnxImagePreprocessor": "image_models",
    "FeatureConsistencyDefense": "feature",
    "ConvFeatureExtractor": "feature",
    "defended_module": "bpda",
    "make_benign_pairs": "calibration",
    "calibrate_reference_detector": "detect",
    "evaluate_detector": "detect",
    "ReferenceDetector": "detect",
    "FeatureSqueezingDetector": "detect",
    "fft_spectra": "spectra",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"auditor.defenses.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'auditor.defenses' has no attribute {name!r}")
