"""The shared MI-FGSM loop every gradient attack of xray-audit runs on.

Momentum Iterative FGSM (Dong et al., "Boosting Adversarial Attacks with
Momentum", CVPR 2018, arXiv:1710.06081)::

    x_adv = x ; m = 0
    repeat T times:
        g  = gradient of CE(model(copies), y) (see below)
        m  = mu * m + g / mean(|g|)            # per image, over (C, H, W)
        x_adv = project(x_adv + alpha * sign(m), x, eps)   # L2: alpha * m / ||m||_2

Input-transformation attacks plug in through hooks, never by re-writing the loop:

* :meth:`GradientAttack.setup` -- load heavy resources once (style networks);
* :meth:`GradientAttack.start` -- the first iterate (``x``; a random start for FGSM-RS);
* :attr:`GradientAttack.num_copies` and :meth:`GradientAttack.transform` -- the
  ``k`` transformed copies of the batch, stacked copy-major into ``k*N`` rows;
* :attr:`GradientAttack.grad_wrt_copies` -- ``True`` makes the copies detached
  leaves and takes the gradient w.r.t. them (USMM and STM, as in their papers
  and reference code); ``False`` back-propagates through the transform to
  ``x_adv`` (the chain rule then sums the copies);
* :meth:`GradientAttack.aggregate` -- how per-copy gradients become one
  gradient per image (sum for USMM, mean for STM).

The surrogate passes run in chunks of at most ``max_batch_rows`` rows. The
loss is a *sum* of per-row cross-entropies divided by the total row count, so
the gradient of every row is the same whether the ``k*N`` rows run as one
batch or in chunks. Attacks work in ``[0, 1]`` pixel space only; the model
(:class:`auditor.models.torch.TorchClassifier`) owns resizing, channel
replication and normalisation, and :func:`auditor.attacks.projection.project`
is the only clamp of the returned image.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from auditor.attacks.device import precision_context, resolve_precision
from auditor.attacks.projection import NORMS, project
from auditor.errors import ModelContractError, UsageError
from auditor.models.device import pick_device

#: pixels x rows of one surrogate chunk at the default (20 rows of 224x224)
_ROW_BUDGET = 20 * 224 * 224
_MAX_ROWS = 32


def default_batch_rows(height: int, width: int) -> int:
    """Rows per surrogate chunk: about 20 images of 224x224 worth of pixels, at most 32."""
    return int(max(1, min(_MAX_ROWS, round(_ROW_BUDGET / float(height * width)))))


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise UsageError(message)


class GradientAttack:
    """MI-FGSM with hooks for input transformations; the base class *is* MI-FGSM.

    Arguments (keyword-only; defaults are the TransferAttack/paper settings):

    * ``model`` -- ``nn.Module`` mapping ``(N, 1, H, W)`` images in ``[0, 1]``
      to logits (a surrogate's ``.module``);
    * ``epsilon=16/255`` -- perturbation budget, in ``(0, 1]``;
    * ``steps=10`` -- iterations ``T``;
    * ``alpha=None`` -- step size, default ``epsilon / steps``;
    * ``decay=1.0`` -- momentum ``mu``;
    * ``norm="linf"`` -- ``"linf"`` (sign steps) or ``"l2"``;
    * ``max_batch_rows=None`` -- rows per surrogate pass (default from the image size);
    * ``precision="fp32"`` -- ``fp32``, ``bf16`` (autocast) or ``auto`` (= fp32);
    * ``channels_last=True`` -- run the surrogate in channels_last memory format;
    * ``fold_bn=True`` -- attack a copy of the surrogate with eval-mode BatchNorm folded into
      its convolutions (same function, fewer passes; the caller's module is not changed);
    * ``device=None`` -- where to run (default: where the model's parameters are).

    Calling the attack with ``x`` (``(N, 1, H, W)`` float tensor in ``[0, 1]``),
    ``y`` (class indices) and a ``seed`` or ``generator`` returns ``x_adv`` with
    ``||x_adv - x|| <= epsilon`` and values in ``[0, 1]``.

    Example::

        atk = MIFGSM(surrogate.module, epsilon=8 / 255)
        x_adv = atk(x, y, seed=0)
    """

    #: the registry name (:mod:`auditor.attacks.registry`); each registered subclass sets its own
    name: ClassVar[str] = "gradient-loop"
    display_name: ClassVar[str] = "MI-FGSM"
    grad_wrt_copies: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        *,
        epsilon: float = 16 / 255,
        steps: int = 10,
        alpha: float | None = None,
        decay: float = 1.0,
        norm: str = "linf",
        max_batch_rows: int | None = None,
        precision: str = "fp32",
        channels_last: bool = True,
        fold_bn: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        _check(
            isinstance(model, nn.Module),
            f"attack {self.name}: model must be a torch nn.Module, got {type(model).__name__}",
        )
        _check(
            isinstance(epsilon, (int, float)) and 0 < float(epsilon) <= 1,
            f"attack {self.name}: epsilon {epsilon!r} is outside (0, 1]",
        )
        _check(isinstance(steps, int) and steps >= 1, f"attack {self.name}: steps {steps!r} must be an integer >= 1")
        _check(
            alpha is None or (isinstance(alpha, (int, float)) and alpha > 0),
            f"attack {self.name}: alpha {alpha!r} must be positive",
        )
        _check(isinstance(decay, (int, float)) and decay >= 0, f"attack {self.name}: decay {decay!r} must be >= 0")
        _check(norm in NORMS, f"attack {self.name}: norm {norm!r} is not one of {', '.join(NORMS)}")
        _check(
            max_batch_rows is None or (isinstance(max_batch_rows, int) and max_batch_rows >= 1),
            f"attack {self.name}: max_batch_rows {max_batch_rows!r} must be an integer >= 1",
        )
        self.model = model
        self.epsilon = float(epsilon)
        self.steps = int(steps)
        self.alpha = float(alpha) if alpha is not None else self.epsilon / self.steps
        #: True when alpha is the default epsilon / steps (per-image budgets then use eps_i / steps)
        self.default_alpha = alpha is None
        self.decay = float(decay)
        self.norm = norm
        self.max_batch_rows = max_batch_rows
        if device is None:
            p = next(iter(model.parameters()), None)
            device = p.device if p is not None else torch.device("cpu")
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.channels_last = bool(channels_last)
        self.fold_bn = bool(fold_bn)
        #: free-text notes about how the attack ran (fallbacks), for reports
        self.notes: list[str] = []
        #: surrogate rows (forward+backward-to-input passes) computed so far
        self.surrogate_rows = 0
        self._ready = False

    # ------------------------------------------------------------------ hooks
    def setup(self) -> None:
        """Prepare once: eval mode, frozen parameters, BN folding, device, memory format. Override to load resources."""
        self.model.eval()
        self.model.requires_grad_(False)
        if self.fold_bn:
            from auditor.models.torch import fold_batchnorm

            self.model = fold_batchnorm(self.model)
        self.model.to(self.device)
        if self.channels_last:
            from auditor.models.torch import SupportsChannelsLast

            if isinstance(self.model, SupportsChannelsLast):
                self.model.set_channels_last(True)
            else:
                self.model.to(memory_format=torch.channels_last)

    @property
    def num_copies(self) -> int:
        """Transformed copies per image and iteration (rows per image in the surrogate batch)."""
        return 1

    def transform(self, x_adv: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(num_copies * N, C, H, W)``, copy-major. Identity here."""
        return x_adv

    def aggregate(self, grads: torch.Tensor, n: int) -> torch.Tensor:
        """Per-copy gradients ``(k * N, ...)`` -> one gradient per image ``(N, ...)``; sum here."""
        return grads.view(-1, n, *grads.shape[1:]).sum(0)

    @property
    def label(self) -> str:
        """Human-readable name for reports."""
        return self.display_name

    def key_extras(self) -> dict[str, Any]:
        """Facts beyond the constructor parameters that change the output (for cache keys)."""
        return {}

    # ------------------------------------------------------------------ loop
    def ensure_setup(self) -> None:
        """Run :meth:`setup` once."""
        if not self._ready:
            self.setup()
            self._ready = True

    def start(self, x: torch.Tensor, eps: float | torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The first iterate; ``x`` itself here (a random start overrides this, see :mod:`auditor.attacks.fgsm_rs`)."""
        return x.clone()

    def budget(
        self, x: torch.Tensor, epsilon: torch.Tensor | None
    ) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """``(eps, alpha)`` of one call: the attack's own, or per-image ``(N, 1, 1, 1)`` tensors for ``epsilon``.

        Per-image budgets (the training recipes draw ε per image) keep the step
        size proportional: ``alpha_i = eps_i / steps`` with the default step size,
        else ``alpha_i = eps_i * alpha / epsilon``.
        """
        if epsilon is None:
            return self.epsilon, self.alpha
        eps = torch.as_tensor(epsilon, dtype=torch.float32).to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
        if eps.shape[0] not in (1, x.shape[0]) or not bool(((eps > 0) & (eps <= 1)).all()):
            raise ValueError(f"attack {self.name}: per-image epsilon must be in (0, 1], one per image")
        return eps, (eps / self.steps if self.default_alpha else eps * (self.alpha / self.epsilon))

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        epsilon: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Adversarial images for ``x`` (``(N, C, H, W)`` in ``[0, 1]``) with true labels ``y``.

        ``epsilon`` (optional, ``(N,)``) replaces the attack's budget per image for this call.
        """
        self.ensure_setup()
        if generator is None:
            generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        x = x.detach().to(self.device, torch.float32)
        y = y.detach().to(self.device, torch.long)
        if x.dim() != 4 or y.shape != (x.shape[0],):
            raise ValueError(f"expected x (N, C, H, W) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
        return self.attack_batch(x, y, epsilon, generator)

    def attack_batch(
        self, x: torch.Tensor, y: torch.Tensor, epsilon: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """The attack proper on a checked batch on the attack's device (the MI-FGSM loop here; APGD overrides it)."""
        eps, alpha = self.budget(x, epsilon)
        x_adv = self.start(x, eps, generator)
        momentum = torch.zeros_like(x)
        dims = tuple(range(1, x.dim()))
        for _ in range(self.steps):
            g = self.gradient(x_adv, y, generator)
            g = g / g.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
            momentum = self.decay * momentum + g
            if self.norm == "linf":
                step = momentum.sign()
            else:
                step = momentum / momentum.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))
            x_adv = project(x_adv + alpha * step, x, eps, self.norm)
        return x_adv.detach()

    def gradient(self, x_adv: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Loss gradient per image for the current iterate (transform, surrogate passes, aggregate)."""
        n = x_adv.shape[0]
        k = self.num_copies
        labels = y.repeat(k)
        if self.grad_wrt_copies:
            with torch.no_grad():
                copies = self.transform(x_adv.detach(), y, gen)
            return self.aggregate(self.surrogate_grad(copies, labels), n)
        leaf = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            copies = self.transform(leaf, y, gen)
        g_copies = self.surrogate_grad(copies.detach(), labels)
        if copies is leaf:
            return g_copies
        (g,) = torch.autograd.grad(copies, leaf, grad_outputs=g_copies)
        return g

    def chunk_rows(self, x: torch.Tensor) -> int:
        """Rows per surrogate chunk for this image size."""
        return self.max_batch_rows or default_batch_rows(x.shape[-2], x.shape[-1])

    def surrogate_grad(self, copies: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """d(sum of CE over rows / rows)/d(row) for every row, computed in chunks."""
        total = copies.shape[0]
        rows = self.chunk_rows(copies)
        out = torch.empty_like(copies, dtype=torch.float32)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for start in range(0, total, rows):
            stop = min(total, start + rows)
            leaf = copies[start:stop].detach().to(torch.float32).contiguous(memory_format=fmt).clone()
            leaf.requires_grad_(True)
            with torch.enable_grad():
                with precision_context(self.precision, self.device):
                    logits = self.model(leaf)
                loss = F.cross_entropy(logits.float(), labels[start:stop], reduction="sum") / total
                (g,) = torch.autograd.grad(loss, leaf)
            if not bool(torch.isfinite(g).all()):
                rows = int((~torch.isfinite(g.flatten(1))).any(1).sum())
                raise ModelContractError(
                    f"attack {self.name}: the surrogate gave NaN or infinite gradients for {rows} "
                    "image(s); the attack is refused (an attack on such gradients is noise)"
                )
            out[start:stop] = g
            self.surrogate_rows += stop - start
        return out

    # ------------------------------------------------------------------ introspection
    @classmethod
    def accepted_params(cls) -> list[str]:
        """Keyword parameters the constructor accepts (this class and the base loop)."""
        names: list[str] = []
        for klass in (cls, GradientAttack):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.kind == p.KEYWORD_ONLY and p.name not in names:
                    names.append(p.name)
        return names

    def params(self) -> dict[str, Any]:
        """The effective loop parameters (JSON-compatible)."""
        return {
            "epsilon": self.epsilon,
            "steps": self.steps,
            "alpha": self.alpha,
            "decay": self.decay,
            "norm": self.norm,
            "precision": self.precision,
        }
