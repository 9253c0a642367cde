"""Parse the ``--defenses`` flag into preprocessors (or :class:`Skipped` entries).

Grammar: a comma-separated list of ``name`` or ``name:value`` items, split at the first colon
(so paths may hold colons but not commas)::

    jpeg                 -> jpeg:90, jpeg:75, jpeg:50, jpeg:30   (default sweep)
    jpeg:Q               -> JPEG quality Q in 1..100
    bitdepth[:B]         -> B bits in 1..8 (default 4)
    median[:K]           -> odd K in 3..31 (default 3)
    denoiser:PATH        -> ONNX image->image denoiser
    cyclegan:PATH        -> ONNX CycleGAN generator (adversarial -> clean)
    feature:REF          -> feature-consistency optimisation toward reference image REF
                            (Skipped when no feature extractor is available)

Items are de-duplicated by canonical name, keeping the first occurrence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from auditor.defenses.base import Preprocessor
from auditor.errors import UsageError
from auditor.types import Skipped

#: known defense names -> short help
KNOWN_DEFENSES = {
    "jpeg": "jpeg[:Q] JPEG re-encoding (no Q: sweep 90,75,50,30)",
    "bitdepth": "bitdepth[:B] bit-depth reduction, B in 1..8",
    "median": "median[:K] median filter, odd K from 3 to 31",
    "denoiser": "denoiser:PATH ONNX image->image denoiser",
    "cyclegan": "cyclegan:PATH ONNX CycleGAN generator",
    "feature": "feature:REF feature-consistency toward reference image REF",
}


def list_defenses() -> list[str]:
    """Names accepted by :func:`parse_defenses`."""
    return list(KNOWN_DEFENSES)


def _int_value(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--defenses {name}:{value}: {value!r} is not an integer") from None


def _check_path(name: str, value: str) -> str:
    if not value:
        raise UsageError(f"--defenses {name}: needs a path ({KNOWN_DEFENSES[name]})")
    p = Path(value).expanduser()
    if not p.exists():
        raise UsageError(f"--defenses {name}:{value}: file not found")
    if not p.is_file():
        raise UsageError(f"--defenses {name}:{value}: not a regular file")
    return str(p)


def _items(spec: str | None) -> list[tuple[str, str]]:
    """``(name, value)`` pairs of the flag, with the names checked."""
    out = []
    for raw in (spec or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, _, value = item.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name not in KNOWN_DEFENSES:
            raise UsageError(f"--defenses: unknown defense {name!r} (known: {', '.join(KNOWN_DEFENSES)})")
        out.append((name, value))
    return out


def check_defenses(spec: str | None) -> None:
    """Validate ``--defenses`` without loading anything heavy (no ONNX session, no torch).

    Run before any image is read or attacked, so ``jpeg:500`` or ``median:999999`` fails at
    once with :class:`UsageError` instead of after the attacks.
    """
    from auditor.defenses.transforms import BitDepthReduction, JpegCompression, MedianSmoothing

    for name, value in _items(spec):
        if name == "jpeg" and value:
            JpegCompression(_int_value(name, value))
        elif name == "bitdepth" and value:
            BitDepthReduction(_int_value(name, value))
        elif name == "median" and value:
            MedianSmoothing(_int_value(name, value))
        elif name in ("denoiser", "cyclegan", "feature"):
            _check_path(name, value)


def parse_defenses(
    spec: str | None, *, feature_extractor: Callable | None = None, device: str = "auto"
) -> list[Preprocessor | Skipped]:
    """Build the preprocessors named in ``spec`` (see the module docstring for the grammar).

    Args:
        spec: e.g. ``"jpeg,bitdepth:4,median:3,denoiser:/p/d.onnx,cyclegan:/p/g.onnx,feature:/p/ref.png"``;
            None or empty gives ``[]``.
        feature_extractor: ``features(x) -> list[Tensor]`` for the ``feature`` defense; without
            it that defense becomes ``Skipped(name, reason, "defense")``.
        device: ONNX Runtime device for denoiser/CycleGAN models (default ``"auto"``).

    Raises:
        UsageError: unknown name (the message lists the known ones), bad value, missing path.
        ModelContractError: a denoiser/CycleGAN file that is not a usable image->image ONNX model.
    """
    from auditor.defenses.transforms import JPEG_DEFAULT_SWEEP, BitDepthReduction, JpegCompression, MedianSmoothing

    out: list[Preprocessor | Skipped] = []
    seen: set[str] = set()

    def add(item: Preprocessor | Skipped) -> None:
        if item.name not in seen:
            seen.add(item.name)
            out.append(item)

    for name, value in _items(spec):
        if name == "jpeg":
            qualities = JPEG_DEFAULT_SWEEP if not value else (_int_value(name, value),)
            for q in qualities:
                add(JpegCompression(q))
        elif name == "bitdepth":
            add(BitDepthReduction(_int_value(name, value) if value else 4))
        elif name == "median":
            add(MedianSmoothing(_int_value(name, value) if value else 3))
        elif name in ("denoiser", "cyclegan"):
            from auditor.defenses.image_models import OnnxImagePreprocessor

            path = _check_path(name, value)
            if f"{name}:{path}" not in seen:
                add(OnnxImagePreprocessor(path, kind=name, device=device))
        elif name == "feature":
            path = _check_path(name, value)
            if feature_extractor is None:
                add(
                    Skipped(
                        f"feature:{Path(path).name}",
                        "no feature extractor available (needs a torch surrogate, --surrogate)",
                        "defense",
                    )
                )
            else:
                from auditor.defenses.feature import FeatureConsistencyDefense

                add(FeatureConsistencyDefense(path, feature_extractor))
    return out
