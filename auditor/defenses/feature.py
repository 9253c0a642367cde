"""Feature-consistency defense: pull a suspect image back toward trusted image statistics.

The project's source document describes it as neural-style optimisation (Gatys, Ecker and
Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016): starting from
the suspect image C, minimise

    L(M) = w_c * || phi_c(M) - phi_c(C) ||^2  +  w_s * sum_l || Gram(phi_l(M)) - Gram(phi_l(S)) ||^2

where S is a trusted reference (clean) X-ray and phi are conv features of a fixed CNN (here
the project's torch surrogate, since pretrained VGG weights cannot be downloaded offline).
The numeric settings are not given by the source; the defaults follow the PyTorch
neural-style tutorial (content = deepest layer, style = all given layers, Gram divided by
C*H*W, MSE losses, style weight 1e6, content weight 1) with a bounded Adam budget
(20 steps, lr 0.01) and a clamp to [0, 1] after every step (docs/algorithms.md §7.6).

Limits: the optimisation is not differentiable in any useful closed form, so BPDA uses the
identity (Athalye, Carlini and Wagner, ICML 2018); it is also slow (T forward/backward passes
of the feature CNN per image), hence optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from auditor.defenses.base import Preprocessor
from auditor.errors import UsageError


def _infer_device(fe: Any):
    import torch

    for obj in (fe, getattr(fe, "__self__", None)):
        if obj is None:
            continue
        dev = getattr(obj, "device", None)
        if isinstance(dev, (str, torch.device)):
            return torch.device(dev)
        if isinstance(obj, torch.nn.Module):
            p = next(obj.parameters(), None)
            if p is not None:
                return p.device
    return torch.device("cpu")


class ConvFeatureExtractor:
    """``features(x) -> list[Tensor]``: outputs of evenly spaced conv layers of a torch module.

    Forward hooks on up to ``max_layers`` ``nn.Conv2d`` modules (the first and the last always
    included, others evenly spaced in ``module.modules()`` order) record their outputs while
    ``module(x)`` runs; the returned list is shallow-to-deep, so index -1 is the deepest (the
    content layer of :class:`FeatureConsistencyDefense`). Use it with a surrogate whose module
    takes ``(N, 1, H, W)`` in ``[0, 1]`` (e.g. ``auditor.models.surrogate.Surrogate.module``), so
    normalisation stays inside the model wrapper.

    Args:
        module: the torch model (kept in its current train/eval mode; use eval).
        max_layers: how many conv layers to tap (default 5, like conv_1..conv_5 of the tutorial).
    """

    def __init__(self, module: Any, max_layers: int = 5) -> None:
        import torch

        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        if not convs:
            raise UsageError("feature defense: the surrogate has no Conv2d layer to take features from")
        idx = sorted({int(round(i)) for i in np.linspace(0, len(convs) - 1, min(max_layers, len(convs)))})
        self.module = module
        self.layers = [convs[i] for i in idx]
        self._store: list | None = None
        for layer in self.layers:
            layer.register_forward_hook(self._hook)
        p = next(module.parameters(), None)
        self.device = p.device if p is not None else torch.device("cpu")

    def _hook(self, _module, _inputs, output) -> None:
        if self._store is not None:
            self._store.append(output)

    def __call__(self, x) -> list:
        """Run the module on ``x`` and return the tapped conv outputs (shallow to deep)."""
        self._store = []
        try:
            self.module(x)
            return list(self._store)
        finally:
            self._store = None


def gram_matrix(f):
    """Gram matrix per sample: ``(N, C, C)`` = F F^T / (C * H * W) for features ``(N, C, ...)``."""
    n, c = f.shape[0], f.shape[1]
    flat = f.reshape(n, c, -1)
    return flat @ flat.transpose(1, 2) / float(flat.shape[1] * flat.shape[2])


class FeatureConsistencyDefense(Preprocessor):
    """Iterative content + Gram-style optimisation toward a trusted reference image.

    Args:
        reference_path: path of a trusted grey image S (any format ``auditor.data`` reads); it is
            centre-cropped and resized to each batch's size.
        feature_extractor: ``features(x) -> list[Tensor]`` taking ``(N, 1, H, W)`` tensors in
            ``[0, 1]`` (e.g. the surrogate's conv layers); a single tensor is also accepted.
        iterations: Adam steps per batch (default 20).
        lr: Adam learning rate (default 0.01).
        content_weight: weight of the content loss (default 1.0).
        style_weight: weight of the Gram (style) loss (default 1e6, tutorial value).
        content_layer: index of the content layer in the feature list (default -1, the deepest).
        batch_size: images optimised together (default 8).
        device: torch device; default inferred from the extractor (its ``device`` attribute or
            parameters), else CPU.
    """

    def __init__(
        self,
        reference_path: str | Path,
        feature_extractor: Callable,
        iterations: int = 20,
        lr: float = 0.01,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        content_layer: int = -1,
        batch_size: int = 8,
        device: Any = None,
    ) -> None:
        super().__init__()
        from auditor.data import ImageReadError, load_image

        if not callable(feature_extractor):
            raise UsageError("feature defense: the feature extractor is not callable")
        if int(iterations) < 1:
            raise UsageError(f"feature defense: iterations {iterations!r} must be >= 1")
        self.reference_path = str(reference_path)
        try:
            load_image(self.reference_path)  # validate now; re-read at each batch size (cached)
        except ImageReadError as exc:
            raise UsageError(f"{self.reference_path}: cannot read the reference image ({exc})") from None
        self.features = feature_extractor
        self.iterations = int(iterations)
        self.lr = float(lr)
        self.content_weight = float(content_weight)
        self.style_weight = float(style_weight)
        self.content_layer = int(content_layer)
        self.batch_size = int(batch_size)
        self._device = device
        self._ref_cache: dict[tuple[int, int], list] = {}
        self.name = f"feature:{Path(self.reference_path).name}"
        self.label = (
            f"feature-consistency optimisation toward {Path(self.reference_path).name} ({self.iterations} Adam steps)"
        )
        self.params = {
            "reference": self.reference_path,
            "iterations": self.iterations,
            "lr": self.lr,
            "content_weight": self.content_weight,
            "style_weight": self.style_weight,
            "content_layer": self.content_layer,
            "optimizer": "adam",
        }

    def _feats(self, x_t) -> list:
        out = self.features(x_t)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def _reference_grams(self, size: tuple[int, int], device) -> list:
        import torch

        from auditor.data import load_image

        if size not in self._ref_cache:
            s = torch.from_numpy(load_image(self.reference_path, size)[None, None]).to(device)
            with torch.no_grad():
                self._ref_cache[size] = [gram_matrix(f).detach() for f in self._feats(s)]
        return self._ref_cache[size]

    def _apply(self, x: np.ndarray) -> np.ndarray:
        import torch

        device = torch.device(self._device) if self._device is not None else _infer_device(self.features)
        size = (int(x.shape[2]), int(x.shape[3]))
        out = np.empty_like(x)
        with torch.enable_grad():
            grams_s = self._reference_grams(size, device)
            for i in range(0, len(x), self.batch_size):
                c = torch.from_numpy(x[i : i + self.batch_size]).to(device)
                with torch.no_grad():
                    content = self._feats(c)[self.content_layer].detach()
                m = c.clone().requires_grad_(True)
                opt = torch.optim.Adam([m], lr=self.lr)
                for _ in range(self.iterations):
                    opt.zero_grad(set_to_none=True)
                    feats = self._feats(m)
                    loss_c = torch.mean((feats[self.content_layer] - content) ** 2)
                    loss_s = sum(torch.mean((gram_matrix(f) - g) ** 2) for f, g in zip(feats, grams_s))
                    loss = self.content_weight * loss_c + self.style_weight * loss_s
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        m.clamp_(0.0, 1.0)
                out[i : i + self.batch_size] = m.detach().cpu().numpy()
        return out
