"""Learned image->image defenses given as ONNX files: a denoiser (HGD) or a CycleGAN generator.

* HGD: Liao, Liang, Dong, Pang, Hu and Zhu, "Defense against Adversarial Attacks Using
  High-Level Representation Guided Denoiser", CVPR 2018.
* CycleGAN: Zhu, Park, Isola and Efros, "Unpaired Image-to-Image Translation using
  Cycle-Consistent Adversarial Networks", ICCV 2017 (used here as an adversarial->clean mapper).
* Limits: Athalye, Carlini and Wagner, ICML 2018 (a denoiser in front of the classifier is just
  a deeper network; attacking the composition with gradients removes most of its benefit).

The numpy path runs the model through :class:`auditor.models.onnx.OnnxImageModel` (the only
place that imports onnxruntime). The torch path for BPDA is the same graph converted with
``onnx2torch`` (exact gradients) or a torch module given by the caller; when the conversion
fails the preprocessor falls back to straight-through gradients and says so in ``params``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from auditor.defenses.base import GRADIENT_EXACT, GRADIENT_STRAIGHT_THROUGH, Preprocessor
from auditor.errors import AuditError, ModelContractError

KINDS = {
    "denoiser": "denoiser (HGD-style, Liao et al. CVPR 2018)",
    "cyclegan": "CycleGAN generator (Zhu et al. ICCV 2017)",
}


class OnnxImagePreprocessor(Preprocessor):
    """Run an ONNX image->image model (denoiser or CycleGAN generator) before the classifier.

    Contract (checked by :class:`OnnxImageModel`): one input, one output of the same shape
    ``(N, C, H, W)`` with C in {1, 3}, values in ``[0, 1]``; a 3-channel output is averaged to grey.
    An output shape that differs from the input raises a one-line :class:`ModelContractError`.

    Args:
        path: the ONNX file.
        kind: ``"denoiser"`` or ``"cyclegan"`` (only changes name and label).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` for ONNX Runtime (default ``"auto"``).
        torch_module: optional torch ``nn.Module`` implementing the same mapping on the model's
            channel count, used for BPDA instead of converting the ONNX graph.
        batch_size: images per ONNX Runtime call (default 16).
    """

    def __init__(
        self,
        path: str | Path,
        kind: str = "denoiser",
        device: str = "auto",
        torch_module: Any = None,
        batch_size: int = 16,
    ) -> None:
        super().__init__()
        from auditor.models.onnx import OnnxImageModel

        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        self.path = str(path)
        self.kind = kind
        self.batch_size = int(batch_size)
        self.model = OnnxImageModel(self.path, device=device)
        self.name = f"{kind}:{Path(self.path).name}"  # full path and hash are in params
        self.label = f"{KINDS[kind]}: {Path(self.path).name}"
        self.params = {"path": self.path, "sha256": self.model.sha256, "channels": self.model.channels}
        self._torch_module = torch_module
        self._torch_tried = torch_module is not None

    def _apply(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.model(x, batch_size=self.batch_size)
        except AuditError:
            raise
        except Exception as exc:  # onnxruntime errors: wrong fixed size, bad graph, ...
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelContractError(
                f"{self.path}: {self.kind} failed on input of shape {x.shape} ({msg[:160]})"
            ) from None

    # ---------------------------------------------------------------- torch path
    def _ensure_torch(self) -> None:
        if self._torch_tried:
            return
        self._torch_tried = True
        try:
            import onnx
            from onnx2torch import convert

            from auditor.models.onnx_file import inline_initializer_aliases, load_onnx_proto

            load_onnx_proto(self.path)  # validates size and external-data paths first
            module = convert(inline_initializer_aliases(onnx.load(self.path)))
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)
            self._torch_module = module
            self.params["torch_path"] = "onnx2torch"
        except Exception as exc:  # any conversion failure -> straight-through, recorded
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._torch_module = None
            self.params["torch_path"] = f"straight-through (onnx2torch failed: {msg[:120]})"

    @property
    def gradient(self) -> str:
        """``"exact"`` when a torch module is available (given or converted), else straight-through."""
        self._ensure_torch()
        return GRADIENT_EXACT if self._torch_module is not None else GRADIENT_STRAIGHT_THROUGH

    @property
    def differentiable(self) -> bool:
        """True when the torch path is the model itself (exact gradients)."""
        return self.gradient == GRADIENT_EXACT

    def torch_forward(self, x_t):
        """Differentiable ``defense(x)`` on a ``(N, 1, H, W)`` tensor (straight-through if no module)."""
        from auditor.models.torch import channels_to_grey_t, grey_to_channels_t

        self._ensure_torch()
        if self._torch_module is None:
            return super().torch_forward(x_t)
        module = self._torch_module
        try:
            dev = next(module.parameters()).device
            if dev != x_t.device:
                module.to(x_t.device)
        except StopIteration:
            pass
        # a copy, not an expanded view: the module may write to its input in place
        feed = grey_to_channels_t(x_t, self.model.channels).contiguous()
        y = module(feed)
        if isinstance(y, (list, tuple)):
            y = y[0]
        if y.shape[0] != x_t.shape[0] or y.shape[2:] != x_t.shape[2:]:
            raise ModelContractError(
                f"{self.path}: torch output shape {tuple(y.shape)} differs from input shape {tuple(feed.shape)}"
            )
        return channels_to_grey_t(y).clamp(0.0, 1.0)
