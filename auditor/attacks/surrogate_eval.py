"""The surrogate's own view of a scan: its predictions on clean and adversarial images, its input size.

Used by :mod:`auditor.scan.attack` for the per-set transfer diagnostics of
:mod:`auditor.transfer`, on the surrogate object the attacks already use (no
second load).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def surrogate_predict(module: nn.Module, images: np.ndarray, batch_size: int = 32, device: Any = None) -> np.ndarray:
    """Class indices (the target's order) the surrogate ``module`` predicts for ``(N, 1, H, W)`` images in [0, 1].

    Runs in fp32, eval mode, without gradients, ``batch_size`` images at a time.
    """
    if device is None:
        p = next(iter(module.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    from auditor.data.stream import iter_batches

    out = np.empty(len(images), dtype=np.int64)
    with torch.inference_mode():
        # lazy images (files, cached PNGs) are decoded ahead on the loader threads while the surrogate runs
        for start, batch in iter_batches(images, batch_size):
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
            out[start : start + len(x)] = module(x).float().argmax(1).cpu().numpy()
    return out


def input_sizes(module: nn.Module) -> list[list[int]]:
    """``[H, W]`` of every member network (one entry for a single surrogate)."""
    members = getattr(module, "members", None)
    if members is not None:
        return [s for m in members for s in input_sizes(m)]
    size = getattr(module, "size", None)
    return [[int(size[0]), int(size[1])]] if size is not None else []
