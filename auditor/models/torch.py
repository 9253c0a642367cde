"""Torch classifiers for attacks: the one place torch-side resizing, channel replication and normalisation live.

* :class:`TorchClassifier` wraps a network so it takes ``(N, 1, H, W)`` grey
  images in ``[0, 1]`` and returns logits in the *target's* class order:
  antialiased bilinear resize (:func:`resize_for_network`, to the network's H x W when different) ->
  channel replication -> ``(x * factor - mean) / std`` from the ModelSpec ->
  layout -> network -> logits (probabilities/sigmoid outputs are mapped back
  to logits) -> optional class permutation.
* :func:`encode_tensor` / :class:`InputEncoder` -- the torch form of the
  model-input contract of :mod:`auditor.models.inputs`.
* :class:`Ensemble` averages the logits of several surrogates.
* :func:`fold_batchnorm` folds eval-mode BatchNorm into the preceding convolutions.

Checkpoints are read by :mod:`auditor.models.checkpoints`, the ONNX target is
converted by :mod:`auditor.models.convert` and a scan's surrogate is built by
:mod:`auditor.models.surrogate`.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from auditor.errors import ModelContractError
from auditor.models.inputs import input_scaling
from auditor.types import ModelSpec


def resize_for_network(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` to ``size`` with antialiasing (a widened triangle filter when shrinking).

    Without antialiasing a 4x reduction samples only 2 of every 4 rows and
    columns: 3/4 of the set's pixels would get a zero gradient and never be
    attacked. With it every input pixel contributes to (and receives gradient
    from) the output, which is also what an area/anti-aliased resize in the
    target's own preprocessing does.
    """
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def grey_to_channels_t(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Torch form of :func:`auditor.models.inputs.grey_to_channels` (a view, no copy)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] != 1:
        raise ValueError(f"expected grey (N, 1, H, W) input, got {tuple(x.shape)}")
    return x.expand(-1, channels, -1, -1)


def channels_to_grey_t(y: torch.Tensor) -> torch.Tensor:
    """Torch form of :func:`auditor.models.inputs.channels_to_grey` (3 channels averaged, 1 kept)."""
    return y.mean(dim=1, keepdim=True) if y.shape[1] == 3 else y


def scaling_buffers(module: nn.Module, spec: ModelSpec, channels: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Register non-persistent ``mean``/``std`` buffers of :func:`input_scaling` on ``module``; returns the factor.

    Non-persistent: they follow ``module.to(device)`` but stay out of state dicts and checkpoints.
    """
    factor, mean, std = input_scaling(spec, channels)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    module.register_buffer("mean", mean_t, persistent=False)
    module.register_buffer("std", std_t, persistent=False)
    return factor, mean_t, std_t


def encode_tensor(
    x: torch.Tensor,
    size: tuple[int, int],
    channels: int,
    factor: float,
    mean: torch.Tensor,
    std: torch.Tensor,
    layout: str,
    channels_last: bool = False,
) -> torch.Tensor:
    """Torch form of :func:`auditor.models.inputs.encode_input`, differentiable, for float32 networks.

    Grey ``(N, 1, H, W)`` in ``[0, 1]`` -> antialiased resize to ``size`` (when
    different) -> ``channels`` -> ``(x * factor - mean) / std`` -> ``layout``
    (``channels_last`` memory format on request for NCHW).
    """
    if tuple(x.shape[-2:]) != tuple(size):
        x = resize_for_network(x, size)
    x = (grey_to_channels_t(x, channels) * factor - mean) / std
    if channels_last and layout == "NCHW":
        x = x.contiguous(memory_format=torch.channels_last)
    if layout == "NHWC":
        x = x.permute(0, 2, 3, 1).contiguous()
    return x


@runtime_checkable
class SupportsChannelsLast(Protocol):
    """A model that sets its own memory format (:class:`TorchClassifier`, :class:`Ensemble`, or any module with
    the method): the attacks and ensembles ask it rather than converting its parameters."""

    def set_channels_last(self, flag: bool = True) -> None:
        """Run in channels_last memory format when ``flag``, else in the contiguous format."""
        ...


class InputEncoder(nn.Module):
    """:func:`encode_tensor` of a :class:`ModelSpec` as a module (the training recipes put it before the network)."""

    mean: torch.Tensor  #: buffer of :func:`scaling_buffers`
    std: torch.Tensor  #: buffer of :func:`scaling_buffers`

    def __init__(self, spec: ModelSpec, channels: int | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.channels = int(channels or spec.channels)
        self.size = (int(spec.height), int(spec.width))
        self.factor, _, _ = scaling_buffers(self, spec, self.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return encode_tensor(x, self.size, self.channels, self.factor, self.mean, self.std, self.spec.layout)


class TorchClassifier(nn.Module):
    """``(N, 1, H, W)`` in ``[0, 1]`` -> logits, driven by a :class:`ModelSpec`.

    ``network`` receives the tensor the spec describes (size, channels,
    scaling, layout). ``class_index`` (optional) re-orders the logits so that
    column ``j`` is the target's class ``j``. Attributes ``spec``, ``meta``
    (arch, path, sha256 when loaded from a checkpoint).
    """

    mean: torch.Tensor  #: buffer of :func:`scaling_buffers`
    std: torch.Tensor  #: buffer of :func:`scaling_buffers`
    class_index: torch.Tensor | None  #: buffer: the network's column of each target class, or None

    def __init__(
        self, network: nn.Module, spec: ModelSpec, in_channels: int | None = None, class_index: list[int] | None = None
    ) -> None:
        super().__init__()
        self.network = network
        self.spec = spec
        self.in_channels = int(in_channels or spec.channels)
        if spec.dtype != "float32":
            raise ModelContractError(
                f"input dtype {spec.dtype} has no gradient path; torch surrogates need float32 input"
            )
        self.factor, mean, std = scaling_buffers(self, spec, self.in_channels)
        self.size = (int(spec.height), int(spec.width))
        self.register_buffer(
            "class_index",
            None if class_index is None else torch.tensor(class_index, dtype=torch.long),
            persistent=False,
        )
        self.channels_last = False
        self.meta: dict[str, Any] = {}

    def set_channels_last(self, flag: bool = True) -> None:
        """Run the network (and its input) in channels_last memory format (faster convolutions on CPU)."""
        self.channels_last = bool(flag)
        self.network.to(memory_format=torch.channels_last if flag else torch.contiguous_format)

    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """What ``self.network`` receives for a grey ``(N, 1, H, W)`` batch in ``[0, 1]``."""
        return encode_tensor(
            x,
            self.size,
            self.in_channels,
            self.factor,
            self.mean,
            self.std,
            self.spec.layout,
            channels_last=self.channels_last,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.network(self.network_input(x))
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = self._to_logits(out.float())
        return out if self.class_index is None else out.index_select(1, self.class_index)

    def _to_logits(self, out: torch.Tensor) -> torch.Tensor:
        kind = self.spec.output_kind
        if kind == "logits":
            return out
        if kind == "probabilities":
            return out.clamp_min(1e-12).log()
        if kind == "sigmoid_logit":
            z = out[:, :1]
            return torch.cat([torch.zeros_like(z), z], dim=1)
        if kind == "sigmoid_probability":
            p = out[:, :1].clamp(1e-7, 1 - 1e-7)
            return torch.cat([(1 - p).log(), p.log()], dim=1)
        raise ModelContractError(f"unknown output kind {kind!r}")


class Ensemble(nn.Module):
    """Mean of the members' logits (TransferAttack's ensemble surrogate)."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def set_channels_last(self, flag: bool = True) -> None:
        """Propagate to every member."""
        for m in self.members:
            if isinstance(m, SupportsChannelsLast):
                m.set_channels_last(flag)
            else:
                m.to(memory_format=torch.channels_last if flag else torch.contiguous_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.stack([m(x) for m in self.members]).mean(0)


def check_finite_weights(module: nn.Module, where: str) -> None:
    """Refuse a network whose parameters or buffers hold NaN or infinite values (:class:`ModelContractError`).

    Such a network has no meaningful gradient: an "attack" on it would move
    pixels by noise and still be reported as a result.
    """
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise ModelContractError(
                f"{where}: weights hold NaN or infinite values ({bad} in {name!r}); the surrogate cannot be used"
            )


def _has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _fold(net: nn.Module) -> nn.Module:
    """An fx copy of ``net`` with every conv -> BatchNorm pair folded into one conv; ``net`` itself on failure."""
    import copy

    if not _has_batchnorm(net):
        return net
    try:
        from torch.fx.experimental.optimization import fuse

        return fuse(copy.deepcopy(net).eval(), inplace=True).eval().requires_grad_(False)
    except Exception:  # noqa: BLE001 - not fx-traceable: keep the unfused network
        return net


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` with eval-mode BatchNorm folded into the preceding convolutions.

    Same function up to float rounding (BN in eval mode is an affine map), but
    forward and backward-to-input skip the BN passes: 25-45 % faster in fp32
    and 5-12 % in bf16 for ResNet18/50 on the project's CPU. The original
    module is left untouched; modules without BatchNorm are returned as they are.
    """
    if not _has_batchnorm(module):
        return module
    if isinstance(module, TorchClassifier):
        index = None if module.class_index is None else module.class_index.tolist()
        out = TorchClassifier(_fold(module.network), module.spec, module.in_channels, class_index=index)
        out.meta = dict(module.meta)
        return out.eval().requires_grad_(False).to(module.mean.device)
    if isinstance(module, Ensemble):
        return Ensemble([fold_batchnorm(m) for m in module.members]).eval()
    return _fold(module)
