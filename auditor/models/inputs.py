"""The model-input contract applied to numpy batches: scaling, mean/std, channels, layout, outputs.

Everything between the data loader and a model sees ``(N, 1, H, W)`` float32
grey images in ``[0, 1]``. A :class:`ModelSpec` says what the model wants
instead; this module is the one place that decides how to get there:

* :func:`scaling_mean_std` -- a named scaling (``unit``, ``0-255``,
  ``imagenet``, ``minus1-1``, ``custom``) -> per-channel mean and std;
* :func:`input_scaling` -- the ``(factor, mean, std)`` of the affine map
  ``(x * factor - mean) / std`` for a given channel count (shared by the numpy
  form here and the torch form, :func:`auditor.models.torch.encode_tensor`);
* :func:`grey_to_channels` -- grey -> the model's channel count, and
  :func:`channels_to_grey` -- an image->image model's output back to grey (the torch forms are
  :func:`auditor.models.torch.grey_to_channels_t` and :func:`auditor.models.torch.channels_to_grey_t`);
* :func:`encode_input` / :func:`decode_output` -- the ONNX Runtime side.

No torch here: a scan without attacks must not import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.errors import ModelContractError, UsageError
from auditor.types import IMAGENET_MEAN, IMAGENET_STD, SCALINGS, ModelSpec


def scaling_mean_std(scaling: str, channels: int, mean=None, std=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in the model's input units for a named scaling.

    The model input is ``(x * factor - mean) / std`` with ``factor`` = 255 for
    ``0-255`` and 1 otherwise (``x`` in ``[0, 1]``). ``custom`` takes explicit
    mean/std given in ``[0, 1]`` units.
    """
    m: tuple[float, ...]
    s: tuple[float, ...]
    if scaling == "unit":
        m, s = (0.0,), (1.0,)
    elif scaling == "0-255":
        m, s = (0.0,), (1.0,)
    elif scaling == "imagenet":
        m, s = IMAGENET_MEAN, IMAGENET_STD
        if channels == 1:
            m, s = (float(np.mean(IMAGENET_MEAN)),), (float(np.mean(IMAGENET_STD)),)
    elif scaling == "minus1-1":
        m, s = (0.5,), (0.5,)
    elif scaling == "custom":
        if mean is None or std is None:
            raise UsageError("scaling 'custom' needs --mean and --std")
        m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if any(v <= 0 for v in s):
            raise UsageError(f"std must be positive, got {list(s)}")
    else:
        raise UsageError(f"unknown scaling {scaling!r}; choose one of {', '.join(SCALINGS)}")
    if len(m) == 1 and channels > 1:
        m, s = m * channels, s * channels
    if len(m) != channels or len(s) != channels:
        raise UsageError(f"mean/std need 1 or {channels} values, got {len(m)}/{len(s)}")
    return tuple(float(v) for v in m), tuple(float(v) for v in s)


def input_scaling(spec: ModelSpec, channels: int | None = None) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
    """``(factor, mean, std)`` with one mean/std per input channel: the input is ``(x * factor - mean) / std``.

    ``channels`` defaults to ``spec.channels``. A spec whose mean/std have a
    different length (one value for three channels, or the reverse for a
    network built with another channel count) uses the average of its values
    on every channel.
    """
    channels = int(channels or spec.channels)
    mean, std = tuple(float(v) for v in spec.mean), tuple(float(v) for v in spec.std)
    if len(mean) != channels:
        mean = (float(np.mean(mean)),) * channels
        std = (float(np.mean(std)),) * channels
    factor = 255.0 if spec.scaling == "0-255" else 1.0
    return factor, mean, std


def grey_to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """An ``(N, 1, H, W)`` grey batch as ``(N, channels, H, W)`` (the grey value on every channel)."""
    return np.repeat(x, 3, axis=1) if channels == 3 else x


def channels_to_grey(y: np.ndarray) -> np.ndarray:
    """An image->image model's ``(N, C, H, W)`` output as grey: a 3-channel output is averaged, 1 channel kept."""
    return y.mean(axis=1, keepdims=True) if y.shape[1] == 3 else y


def encode_input(x: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Turn an ``(N, 1, H, W)`` grey batch in ``[0, 1]`` into the model's input tensor."""
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"expected an (N, 1, H, W) batch, got shape {x.shape}")
    x = grey_to_channels(np.asarray(x, dtype=np.float32), spec.channels)
    if spec.dtype == "uint8":
        out = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    else:
        out = _scaled(x, *input_scaling(spec)).astype(np.float16 if spec.dtype == "float16" else np.float32, copy=False)
    if spec.layout == "NHWC":
        out = np.ascontiguousarray(out.transpose(0, 2, 3, 1))
    return out


def _scaled(x: np.ndarray, factor: float, m: tuple[float, ...], s: tuple[float, ...]) -> np.ndarray:
    """``(x * factor - mean) / std`` in float32, operation for operation, with the operations that leave every
    value unchanged (``* 1``, ``- 0``, ``/ 1``) skipped and the others done in one buffer: the same bits, without
    the three full-size temporaries (a decode-bound scan spent more time here than in ONNX Runtime). ``x`` itself
    comes back when no operation is left; callers do not write to the result."""
    steps: list[tuple[Any, Any]] = []
    if factor != 1.0:
        steps.append((np.multiply, np.float32(factor)))
    if any(v != 0.0 for v in m):
        steps.append((np.subtract, np.asarray(m, dtype=np.float32).reshape(1, -1, 1, 1)))
    if any(v != 1.0 for v in s):
        steps.append((np.divide, np.asarray(s, dtype=np.float32).reshape(1, -1, 1, 1)))
    out = x
    for i, (op, v) in enumerate(steps):
        out = op(out, v) if i == 0 else op(out, v, out=out)
    return out


def _checked_output(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """``raw`` as float64 ``(N, K)``, K the number of class names (a model with a dynamic number of classes
    is read with the names given; its outputs must match them)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.ndim != 2:
        raise ModelContractError(f"model returned shape {raw.shape}, expected (N, K)")
    if not spec.output_kind.startswith("sigmoid") and raw.shape[1] != spec.num_classes:
        raise ModelContractError(
            f"model returned {raw.shape[1]} class scores per image for {spec.num_classes} class names"
        )
    return raw


def decode_scores(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Model outputs -> ``(N, K)`` float64 scores whose differences are log-odds, for any output kind.

    Logits pass as given; softmax probabilities become log-probabilities (floored at 1e-300); one sigmoid
    unit ``z`` becomes ``[0, z]`` (a sigmoid probability ``p`` becomes ``[log(1 - p), log p]``). A query
    attack's margin loss (score of the true class minus the best other score) is then the same quantity for
    every kind of model.
    """
    raw = _checked_output(raw, spec)
    kind = spec.output_kind
    if kind == "sigmoid_logit":
        return np.concatenate([np.zeros_like(raw[:, :1]), raw[:, :1]], axis=1)
    if kind == "sigmoid_probability":
        p = np.clip(raw[:, :1], 1e-300, 1.0)
        return np.concatenate([np.log(np.clip(1.0 - p, 1e-300, 1.0)), np.log(p)], axis=1)
    if kind == "probabilities":
        s = raw.sum(axis=1, keepdims=True)
        return np.log(np.clip(raw / np.where(s > 0, s, 1.0), 1e-300, None))
    return raw


def decode_output(raw: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Model outputs -> class probabilities ``(N, K)`` as float64."""
    raw = _checked_output(raw, spec)
    kind = spec.output_kind
    if kind in ("sigmoid_logit", "sigmoid_probability"):
        p = raw[:, :1]
        if kind == "sigmoid_logit":
            p = 1.0 / (1.0 + np.exp(-p))
        return np.concatenate([1.0 - p, p], axis=1)
    if kind == "probabilities":
        s = raw.sum(axis=1, keepdims=True)
        return raw / np.where(s > 0, s, 1.0)
    z = raw - raw.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
