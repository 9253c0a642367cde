"""Adaptive check: attack ``surrogate(defense(x))`` with BPDA gradients.

Backward Pass Differentiable Approximation (Athalye, Carlini and Wagner, "Obfuscated Gradients
Give a False Sense of Security", ICML 2018): a non-differentiable preprocessor ``f`` is run for
real in the forward pass and replaced by the identity (``f(x) ~ x``) in the backward pass.
Preprocessors with an exact torch implementation (a denoiser converted with onnx2torch) pass
exact gradients instead. Running the project's attacks against the module returned here shows
whether a defense only hides gradients (it then loses most of its benefit).
"""

from __future__ import annotations

import torch
from torch import nn

from auditor.defenses.base import Preprocessor
from auditor.types import Skipped


class DefendedModule(nn.Module):
    """``surrogate(preprocessor.torch_forward(x))`` for ``(N, 1, H, W)`` inputs in ``[0, 1]``.

    The surrogate is registered as a sub-module; the preprocessor is held as a plain attribute
    (its own torch module, if any, follows the input's device on first use).
    """

    def __init__(self, surrogate: nn.Module, preprocessor: Preprocessor) -> None:
        super().__init__()
        self.surrogate = surrogate
        self.preprocessor = preprocessor
        self.gradient = preprocessor.gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.surrogate(self.preprocessor.torch_forward(x))


def defended_module(surrogate_module: nn.Module, preprocessor: Preprocessor) -> DefendedModule | Skipped:
    """Compose a torch surrogate with a preprocessor for adaptive (BPDA) attacks.

    Returns a :class:`DefendedModule` (``.gradient`` says ``"exact"`` or ``"straight-through"``),
    or ``Skipped(f"bpda:{name}", reason, "defense")`` when the preprocessor has no torch path.
    """
    mode = getattr(preprocessor, "gradient", None)
    if mode is None or not hasattr(preprocessor, "torch_forward"):
        return Skipped(
            f"bpda:{getattr(preprocessor, 'name', preprocessor)}",
            "the defense has no torch path (neither differentiable nor straight-through)",
            "defense",
        )
    return DefendedModule(surrogate_module, preprocessor)
