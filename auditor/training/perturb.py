"""Perturbations used *inside* training (adversarial training, denoiser and CycleGAN pairs).

The adversarial ones are made by the audited attack code, :mod:`auditor.attacks` (one loop, one
projection), so a defense is trained on the same attacks the audit later runs:

* :func:`fgsm_rs` -- :class:`auditor.attacks.fgsm_rs.FGSMRS`, FGSM with a uniform random start,
  step 1.25*eps (Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial
  training", ICLR 2020);
* :func:`mifgsm` -- :class:`auditor.attacks.mifgsm.MIFGSM` (Dong et al., "Boosting Adversarial
  Attacks with Momentum", CVPR 2018), L1-mean normalised gradient, decay 1.0, step eps/T;
* :func:`fgsm` -- one MI-FGSM step of size eps, i.e. plain FGSM (Goodfellow, Shlens & Szegedy,
  "Explaining and Harnessing Adversarial Examples", ICLR 2015);
* :func:`uniform_noise_perturb` -- U[-eps, eps] noise (no gradient).

``model`` is an ``nn.Module`` mapping a ``[0, 1]`` batch to logits (the model-input contract
inside, e.g. a :class:`auditor.models.torch.TorchClassifier`); ``eps`` is a float or an ``(N,)``
tensor (one budget per image); results lie in ``[0, 1]`` and in the L-inf ball of radius eps
around ``x``. The frozen-surrogate attacks run without BatchNorm folding and in the contiguous
memory format, as the surrogate is given.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from auditor.attacks.fgsm_rs import FGSMRS
from auditor.attacks.mifgsm import MIFGSM
from auditor.errors import UsageError

if TYPE_CHECKING:
    from auditor.training.recipe_config import TrainConfig


def _eps(eps, x: torch.Tensor) -> torch.Tensor:
    """``eps`` as an ``(N,)`` float32 tensor on ``x``'s device."""
    if isinstance(eps, torch.Tensor):
        return eps.to(x.device, torch.float32).reshape(-1).expand(x.shape[0])
    return torch.full((x.shape[0],), float(eps), device=x.device, dtype=torch.float32)


def fgsm_rs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, gen: torch.Generator, alpha_ratio: float = 1.25
) -> torch.Tensor:
    """FGSM with random start (Fast-AT); returns the adversarial batch (detached)."""
    e = _eps(eps, x)
    attack = FGSMRS(model, epsilon=float(e.max()), alpha_ratio=alpha_ratio, device=x.device)
    return attack(x, y, generator=gen, epsilon=e)


def mifgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps, steps: int = 5, decay: float = 1.0) -> torch.Tensor:
    """MI-FGSM, untargeted; returns the adversarial batch (detached)."""
    e = _eps(eps, x)
    attack = MIFGSM(
        model, epsilon=float(e.max()), steps=steps, decay=decay, channels_last=False, fold_bn=False, device=x.device
    )
    return attack(x, y, epsilon=e)


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps) -> torch.Tensor:
    """Plain FGSM: one signed-gradient step of size eps; returns the adversarial batch (detached)."""
    return mifgsm(model, x, y, eps, steps=1)


def uniform_noise_perturb(x: torch.Tensor, eps, gen: torch.Generator) -> torch.Tensor:
    """x + U[-eps, eps], clamped to [0, 1] (noise, not an attack: it lies in the ε-ball by construction)."""
    e = _eps(eps, x).view(-1, *([1] * (x.dim() - 1)))
    return (x + (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * e).clamp(0.0, 1.0)


def _make_adv_fn(cfg: TrainConfig, init_model: nn.Module | None, norm: nn.Module, device) -> Callable:
    """``adv(net, x, y, gen) -> x_adv`` for the adversarial recipe."""
    eps_choices = torch.tensor(cfg.adv_eps, dtype=torch.float32)
    if cfg.attack == "fgsm-rs":

        def adv(net, x, y, gen):
            eps = eps_choices[torch.randint(0, len(eps_choices), (x.shape[0],), generator=gen)]
            was = net.training
            net.eval()
            out = fgsm_rs(nn.Sequential(norm, net), x, y, eps, gen)
            net.train(was)
            return out

        return adv
    from auditor.attacks.registry import make_attack

    if init_model is None:  # (refused before: auditor.training.recipe_config._resolve)
        raise UsageError(f"--attack {cfg.attack}: the adversarial recipe needs --init CHECKPOINT, its fixed surrogate")
    surrogate = nn.Sequential(copy.deepcopy(norm), copy.deepcopy(init_model)).to(device).eval()
    for p in surrogate.parameters():
        p.requires_grad_(False)
    attacks = {}
    for e in cfg.adv_eps:
        try:
            attacks[e] = make_attack(cfg.attack, surrogate, epsilon=float(e))
        except UsageError:
            raise
        except Exception as exc:  # parameters the attack refuses: report in one line
            raise UsageError(f"--attack {cfg.attack}: cannot be built ({str(exc).splitlines()[0][:160]})") from None

    def adv_external(net, x, y, gen):
        k = int(torch.randint(0, len(cfg.adv_eps), (1,), generator=gen))
        return attacks[cfg.adv_eps[k]](x, y, generator=gen).detach().to(x.device)

    return adv_external
