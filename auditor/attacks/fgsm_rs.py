"""FGSM with a random start (Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial
training", ICLR 2020): the adversarial examples of the ``adversarial`` training recipe.

One step of the shared loop of :mod:`auditor.attacks.base` from a uniform random point of the
ε-ball, step size ``1.25 * eps``. Unlike the audited attacks it runs on a network *being trained*:
:meth:`FGSMRS.setup` leaves the model's mode, parameters and memory format alone (no freezing, no
BatchNorm folding), and the caller switches it to eval mode around the call.
"""

from __future__ import annotations

import torch

from auditor.attacks.base import GradientAttack
from auditor.attacks.projection import project


class FGSMRS(GradientAttack):
    """FGSM-RS: random start in the ε-ball, one signed-gradient step of ``alpha_ratio * epsilon``.

    Example::

        x_adv = FGSMRS(net, epsilon=8 / 255)(x, y, generator=gen)
    """

    name = "fgsm-rs"
    display_name = "FGSM-RS"

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        epsilon: float = 8 / 255,
        alpha_ratio: float = 1.25,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__(
            model,
            epsilon=epsilon,
            steps=1,
            alpha=alpha_ratio * epsilon,
            decay=1.0,
            channels_last=False,
            fold_bn=False,
            device=device,
        )
        self.alpha_ratio = float(alpha_ratio)

    def budget(
        self, x: torch.Tensor, epsilon: torch.Tensor | None
    ) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """Per-image budgets step ``alpha_ratio * eps_i`` (Fast-AT's 1.25 ε)."""
        eps, alpha = super().budget(x, epsilon)
        return (eps, self.alpha_ratio * eps) if epsilon is not None else (eps, alpha)

    def setup(self) -> None:
        """Nothing to prepare: the network under training keeps its parameters trainable."""

    def start(self, x: torch.Tensor, eps: float | torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A uniform random point of the ε-ball around ``x`` (drawn on the CPU generator ``gen``)."""
        noise = torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1
        return project(x + noise * eps, x, eps)
