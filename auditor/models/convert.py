"""ONNX -> torch conversion of the target (onnx2torch) for white-box attacks, checked against ONNX Runtime.

:func:`convert_onnx_to_torch` returns a :class:`~auditor.models.torch.TorchClassifier`
or raises :class:`ConversionFailed`, which the caller records as a Skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from auditor.errors import RuntimeFailure
from auditor.hashing import sha256_file
from auditor.models.torch import TorchClassifier, check_finite_weights
from auditor.types import ModelSpec

#: agreement tolerance of a converted target vs ONNX Runtime (max |prob diff|)
AGREEMENT_TOL = 1e-3


class ConversionFailed(RuntimeFailure):
    """The ONNX target cannot be turned into an equivalent torch module; the caller records a Skipped."""


_sha256 = sha256_file


def _sample_images(spec: ModelSpec, n: int = 6, seed: int = 0) -> np.ndarray:
    """Deterministic smooth test images (blobs and gradients) at the spec's size, for agreement checks."""
    rng = np.random.default_rng(seed)
    h, w = spec.height, spec.width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, 1, h, w), np.float32)
    for i in range(n):
        img = rng.uniform(0.2, 0.6) + 0.2 * (xx / w) * rng.uniform(-1, 1) + 0.2 * (yy / h) * rng.uniform(-1, 1)
        for _ in range(4):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.3) * min(h, w)
            img = img + rng.uniform(-0.3, 0.3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out[i, 0] = np.clip(img + rng.normal(0, 0.02, (h, w)), 0, 1)
    return out


def convert_onnx_to_torch(
    onnx_path: str | Path, spec: ModelSpec, images: np.ndarray | None = None, tol: float = AGREEMENT_TOL
) -> TorchClassifier:
    """The ONNX target as a :class:`TorchClassifier` (onnx2torch), checked against ONNX Runtime.

    Agreement on ``images`` (default: 6 seeded synthetic images; real ones are
    better): max |prob diff| <= ``tol`` and the same argmax wherever ORT's top
    two classes differ by more than ``2 * tol``. Anything else raises
    :class:`ConversionFailed` (unsupported op, non-float input, disagreement).
    """
    from auditor.models.inputs import decode_output
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.onnx_file import inline_initializer_aliases, load_onnx_proto

    if spec.dtype != "float32":
        raise ConversionFailed(f"{onnx_path}: input dtype {spec.dtype} cannot carry gradients; white-box needs float32")
    proto = load_onnx_proto(onnx_path)
    try:
        import onnx2torch

        net = onnx2torch.convert(inline_initializer_aliases(proto))
    except Exception as exc:  # noqa: BLE001 - onnx2torch raises NotImplementedError, KeyError, ...
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConversionFailed(
            f"{onnx_path}: onnx2torch cannot convert the model ({type(exc).__name__}: {msg})"
        ) from None
    check_finite_weights(net, str(onnx_path))
    model = TorchClassifier(net, spec).eval().requires_grad_(False)
    x = _sample_images(spec) if images is None else np.asarray(images[:8], dtype=np.float32)
    try:
        ref = OnnxClassifier(onnx_path, spec=spec, device="cpu").predict_proba(x)
        with torch.inference_mode():
            raw = model.network(model.network_input(torch.from_numpy(x))).float().numpy()
        got = decode_output(raw, spec)
    except ConversionFailed:
        raise
    except Exception as exc:  # noqa: BLE001
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConversionFailed(f"{onnx_path}: the converted model does not run ({type(exc).__name__}: {msg})") from None
    diff = float(np.abs(ref - got).max())
    top2 = np.sort(ref, axis=1)[:, -2:] if ref.shape[1] > 1 else np.zeros((len(ref), 2))
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
    if diff > tol or not np.array_equal(ref.argmax(1)[clear], got.argmax(1)[clear]):
        raise ConversionFailed(
            f"{onnx_path}: converted model disagrees with ONNX Runtime "
            f"(max |prob diff| {diff:.2e} > {tol:g} or different top class)"
        )
    model.meta = {
        "arch": "onnx2torch",
        "path": str(onnx_path),
        "sha256": _sha256(onnx_path),
        "agreement_max_prob_diff": diff,
    }
    return model
