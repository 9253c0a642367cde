"""Cheap perturbations used *inside* training (adversarial training, denoiser and CycleGAN pairs).

These are training-time data generators, not the audited attacks (those live
in :mod:`auditor.attacks`):

* :func:`fgsm_rs` -- FGSM with a uniform random start, step 1.25*eps (Wong,
  Rice & Kolter, "Fast is better than free: Revisiting adversarial training",
  ICLR 2020);
* :func:`mifgsm` -- momentum iterative FGSM (Dong et al., "Boosting
  Adversarial Attacks with Momentum", CVPR 2018), L1-mean normalised gradient,
  decay 1.0, step eps/T;
* :func:`uniform_noise_perturb` -- U[-eps, eps] noise.

``model`` maps a ``[0, 1]`` batch to logits (normalisation included); ``eps``
is a float or an ``(N,)`` tensor; results are clamped to ``[0, 1]`` and lie in
the L-inf ball of radius eps around ``x``.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Model = Callable[[torch.Tensor], torch.Tensor]


def _eps(eps, x: torch.Tensor) -> torch.Tensor:
    if isinstance(eps, torch.Tensor):
        return eps.to(x.device, x.dtype).view(-1, 1, 1, 1)
    return torch.full((x.shape[0], 1, 1, 1), float(eps), device=x.device, dtype=x.dtype)


def _project(x_adv: torch.Tensor, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return torch.max(torch.min(x_adv, x + e), x - e).clamp(0.0, 1.0)


def fgsm_rs(model: Model, x: torch.Tensor, y: torch.Tensor, eps, gen: torch.Generator, alpha_ratio: float = 1.25) -> torch.Tensor:
    """FGSM with random start (Fast-AT); returns the adversarial batch (detached)."""
    e = _eps(eps, x)
    delta = ((torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * e)
    x0 = (x + delta).clamp(0.0, 1.0).detach().requires_grad_(True)
    loss = F.cross_entropy(model(x0), y)
    (grad,) = torch.autograd.grad(loss, x0)
    return _project(x0.detach() + alpha_ratio * e * grad.sign(), x, e).detach()


def mifgsm(model: Model, x: torch.Tensor, y: torch.Tensor, eps, steps: int = 5, decay: float = 1.0) -> torch.Tensor:
    """MI-FGSM, untargeted; returns the adversarial batch (detached)."""
    e = _eps(eps, x)
    alpha = e / steps
    x_adv = x.clone().detach()
    g = torch.zeros_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
        g = decay * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        x_adv = _project(x_adv.detach() + alpha * g.sign(), x, e).detach()
    return x_adv


def uniform_noise_perturb(x: torch.Tensor, eps, gen: torch.Generator) -> torch.Tensor:
    """x + U[-eps, eps], clamped to [0, 1]."""
    e = _eps(eps, x)
    return (x + (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * e).clamp(0.0, 1.0)
