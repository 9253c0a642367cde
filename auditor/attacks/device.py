"""Device and numeric-precision selection for torch work (attacks, surrogates).

Devices are chosen by :func:`auditor.models.device.pick_device`, the one place that turns ``--device
auto|cpu|cuda`` into a :class:`torch.device`; nothing in xray-audit calls ``.cuda()`` directly. Here,
``precision_context`` turns ``--precision auto|fp32|bf16`` into an autocast context for the surrogate's forward
pass.

bf16 caution (docs/algorithms.md §11): on a random-init ResNet50 the bf16 input gradient
had cosine 0.08 with fp32. ``auto`` therefore means fp32 unless the caller opts
in *and* the CPU has native bf16 (``avx512_bf16`` or AMX).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import ContextManager

import torch

from auditor.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists ``avx512_bf16`` or ``amx_bf16`` (Linux only)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device, allow_bf16_auto: bool = False) -> str:
    """``auto|fp32|bf16`` -> ``"fp32"`` or ``"bf16"``.

    ``auto`` gives bf16 only when ``allow_bf16_auto`` is set and the hardware
    runs bf16 natively (CPU with avx512_bf16/AMX, or a CUDA device with bf16);
    otherwise fp32, the correct-by-default choice.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if not allow_bf16_auto:
        return "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def precision_context(precision: str, device: torch.device) -> ContextManager:
    """Autocast context for a resolved precision (``fp32`` -> a no-op context)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise UsageError(f"precision {precision!r} must be resolved to fp32 or bf16 first")
