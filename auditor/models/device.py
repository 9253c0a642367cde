"""``--device auto|cpu|cuda`` -> :class:`torch.device`: the one device chooser of attacks, defenses and training."""

from __future__ import annotations

import torch

from auditor.errors import RuntimeFailure, UsageError

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA if present, else CPU), ``"cpu"`` or ``"cuda"`` -> :class:`torch.device`.

    Raises :class:`RuntimeFailure` when CUDA is asked for but absent, and
    :class:`UsageError` for an unknown name.
    """
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeFailure(f"device {name!r} requested but torch sees no CUDA device here (use --device cpu)")
        return torch.device(name)
    raise UsageError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
