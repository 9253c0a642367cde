"""Preprocessor defenses: ``x -> x`` input transforms applied before the target model.

The split follows the idea of ART's ``defences/preprocessor`` (Nicolae et al., "Adversarial
Robustness Toolbox v1.0", arXiv 1807.01069): a preprocessor maps an image batch to an image
batch and, for gradient-based (adaptive) attacks, offers a *gradient estimate* that is the
identity by default — the Backward Pass Differentiable Approximation (BPDA) of Athalye, Carlini
and Wagner, "Obfuscated Gradients Give a False Sense of Security", ICML 2018. That paper is the
reference on the limits of every defense in this package: a transform that only hides the
gradient is broken by an attacker who differentiates through ``f(x) ~ x``.

Conventions: numpy float32 ``(N, 1, H, W)`` in ``[0, 1]`` in and out; torch tensors of the same
shape for :meth:`Preprocessor.torch_forward`. Torch is imported lazily so that parsing the
``--defenses`` flag does not import it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from auditor.errors import DataError

#: how gradients pass through a preprocessor in :meth:`Preprocessor.torch_forward`
GRADIENT_EXACT = "exact"  #: a differentiable torch implementation of the same transform
GRADIENT_STRAIGHT_THROUGH = "straight-through"  #: forward = real transform, backward = identity (BPDA)


def check_batch(x: np.ndarray, who: str) -> np.ndarray:
    """Validate an image batch ``(N, 1, H, W)`` and return it as contiguous float32.

    Raises a one-line :class:`DataError` naming ``who`` on a wrong rank or channel count.
    """
    arr = np.asarray(x)
    if arr.ndim != 4 or arr.shape[1] != 1:
        raise DataError(f"{who}: expected an image batch of shape (N, 1, H, W), got {tuple(arr.shape)}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """``[0, 1]`` floats to 8-bit grey (round half to even, clipped)."""
    return np.clip(np.rint(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def match_size(clean: np.ndarray, suspect: np.ndarray) -> np.ndarray:
    """Resize each suspect image to the clean image size when they differ (area/linear filter)."""
    if clean.shape[2:] == suspect.shape[2:]:
        return suspect
    import cv2

    h, w = clean.shape[2:]
    interp = cv2.INTER_AREA if suspect.shape[2] > h else cv2.INTER_LINEAR
    out = np.empty((len(suspect), 1, h, w), np.float32)
    for i in range(len(suspect)):
        out[i, 0] = cv2.resize(suspect[i, 0], (w, h), interpolation=interp)
    return np.clip(out, 0.0, 1.0)


class Preprocessor(ABC):
    """An input-transform defense ``x -> x`` with an optional torch path for BPDA.

    Subclasses set :attr:`name` (canonical, e.g. ``"jpeg:75"``), :attr:`label` (human-readable),
    :attr:`params` and implement :meth:`_apply` on a validated float32 batch. The base class
    checks the input, clips the output to ``[0, 1]`` and checks the shape is unchanged.

    Attributes:
        name: canonical spec string, parseable by :func:`auditor.defenses.registry.parse_defenses`.
        label: human-readable description for reports.
        params: JSON-compatible parameters.
        differentiable: True when :meth:`torch_forward` is an exact differentiable implementation.
        gradient: ``"exact"``, ``"straight-through"`` or ``None`` (no torch path; BPDA is skipped).
        cost_ms_per_image: set by :meth:`measure_cost` (median wall time per image), else None.
    """

    name: str = "preprocessor"
    label: str = "preprocessor"

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.cost_ms_per_image: float | None = None

    # read-only: a subclass overrides them with its own property or class attribute
    @property
    def differentiable(self) -> bool:
        """True when :meth:`torch_forward` is an exact differentiable implementation (not by default)."""
        return False

    @property
    def gradient(self) -> str | None:
        """The torch path's gradient: straight-through by default (see :meth:`torch_forward`)."""
        return GRADIENT_STRAIGHT_THROUGH

    # ---------------------------------------------------------------- numpy path
    @abstractmethod
    def _apply(self, x: np.ndarray) -> np.ndarray:
        """Transform a validated float32 ``(N, 1, H, W)`` batch."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Apply the defense to ``(N, 1, H, W)`` float32 images in ``[0, 1]``; same shape and dtype out."""
        arr = check_batch(x, self.name)
        if len(arr) == 0:
            return arr.copy()
        y = np.asarray(self._apply(arr), dtype=np.float32)
        if y.shape != arr.shape:
            raise DataError(f"{self.name}: output shape {y.shape} differs from input shape {arr.shape}")
        return np.clip(y, 0.0, 1.0, out=y)

    # ---------------------------------------------------------------- gradients (BPDA)
    def estimate_gradient(self, x: np.ndarray, grad: np.ndarray) -> np.ndarray:
        """Gradient of the loss w.r.t. the input given the gradient w.r.t. the output.

        Identity by default (BPDA with ``f(x) ~ x``), as in ART's preprocessors.
        """
        return grad

    def torch_forward(self, x_t):
        """Torch version of the transform for adaptive attacks on ``surrogate(defense(x))``.

        The default is straight-through: the forward value is the real (numpy) transform, the
        backward pass is the identity (``y = x + (f(x) - x).detach()``). Subclasses with an
        exact differentiable implementation override this and set ``gradient = "exact"``.
        Raises :class:`NotImplementedError` when ``gradient`` is None.
        """
        if self.gradient is None:
            raise NotImplementedError(f"{self.name} has no torch path")
        import torch

        with torch.no_grad():
            y_np = self(x_t.detach().float().cpu().numpy())
        y = torch.from_numpy(y_np).to(device=x_t.device, dtype=x_t.dtype)
        return x_t + (y - x_t).detach()

    # ---------------------------------------------------------------- cost
    def measure_cost(self, x_sample: np.ndarray, repeats: int = 3) -> float:
        """Median wall time of a call, in ms per image, over ``repeats`` calls on ``x_sample``.

        One warm-up call is made first (session start-up, lazy imports). The value is stored in
        :attr:`cost_ms_per_image` and returned. An empty sample gives ``nan``.
        """
        arr = check_batch(x_sample, self.name)
        if len(arr) == 0:
            self.cost_ms_per_image = float("nan")
            return self.cost_ms_per_image
        self(arr)
        times = []
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            self(arr)
            times.append(time.perf_counter() - t0)
        self.cost_ms_per_image = float(np.median(times) * 1000.0 / len(arr))
        return self.cost_ms_per_image

    # ---------------------------------------------------------------- description
    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible description (name, label, params, gradient mode, cost)."""
        return {
            "name": self.name,
            "label": self.label,
            "params": dict(self.params),
            "differentiable": self.differentiable,
            "gradient": self.gradient,
            "cost_ms_per_image": self.cost_ms_per_image,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
