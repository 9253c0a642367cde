"""APGD: Auto-PGD with the cross-entropy and the DLR loss, L-inf (Croce & Hein, "Reliable evaluation of
adversarial robustness with an ensemble of diverse parameter-free attacks", ICML 2020, arXiv:2003.01690).

APGD is the attack behind AutoAttack and RobustBench: projected gradient ascent with momentum whose step
size needs no tuning. Per image, from a random start in the ε-ball::

    eta = 2 eps ;  x1 = P(x0 + eta * sign(grad f(x0)))
    x(k+1) = P(x(k) + a * (z(k+1) - x(k)) + (1 - a) * (x(k) - x(k-1))),  z(k+1) = P(x(k) + eta * sign(grad f(x(k))))

with momentum ``a = 0.75``. At the checkpoints ``w_j = ceil(p_j * N)``, ``p_0 = 0``, ``p_1 = 0.22``,
``p_(j+1) = p_j + max(p_j - p_(j-1) - 0.03, 0.06)``, the step size of an image halves (and it restarts from
its best point so far) when fewer than ``rho = 0.75`` of the steps since the last checkpoint raised its loss,
or when neither its step size nor its best loss changed since the last checkpoint.

Losses (``losses``, run in order; an image the surrogate already misclassifies skips the later runs, as
AutoAttack's ensemble does):

* ``ce`` -- cross-entropy;
* ``dlr`` -- Difference of Logits Ratio, invariant to the scale of the logits. With ``K >= 3`` classes it is
  the targeted DLR of the paper, ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, run once for each of the
  ``targets`` highest-ranked other classes ``t`` (with ``K = 3`` the denominator is ``z_pi1 - z_pi3``, since
  there is no fourth logit). DLR needs a third logit, so on a 2-class model this run uses the logit margin
  ``-(z_y - z_other)`` (the Carlini-Wagner loss) instead, and the attack says so in :attr:`notes`.

Each run returns, per image, the first iterate that fools the model *as the set stores it* (8-bit levels
within the budget, fp32; :meth:`APGD._fools_when_stored`), else the iterate with the highest loss.
Cost: one forward+backward pass per image and iteration, as an MI-FGSM step (the loss of each iterate comes
from the same pass as its gradient). An image leaves its run once fooled (its output is already fixed), so at
large budgets a run costs far fewer passes than ``steps`` per image.

Specification in our words: docs/algorithms.md §14.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.attacks.base import GradientAttack, _check
from auditor.attacks.device import precision_context
from auditor.attacks.projection import project
from auditor.attacks.quantize import quantize
from auditor.errors import ModelContractError

LOSSES = ("ce", "dlr")
#: the paper's step-size rule: success share below which the step halves, and the momentum
RHO = 0.75
MOMENTUM = 0.75


def checkpoints(steps: int) -> list[int]:
    """The iterations ``w_j`` (``1 <= w_j <= steps``) at which APGD may halve its step size (paper, section 3.2).

    ``p_j`` is kept in integer hundredths (0, 22, 41, 57, 70, 80, 87, 93, 99), so ``w_j = ceil(p_j * steps)``
    has no float rounding: 100 iterations give 22, 41, 57, 70, 80, 87, 93, 99.
    """
    p = [0, 22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 3, 6)
        if nxt > 100:
            break
        p.append(nxt)
    marks = sorted({-(-q * steps // 100) for q in p[1:]})
    return [w for w in marks if 1 <= w <= steps]


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row DLR loss (to maximise); targeted when ``target`` is given. See the module docstring for ``K < 4``."""
    k = logits.shape[1]
    z_y = logits.gather(1, y[:, None])[:, 0]
    if k == 2:  # no third logit: the logit margin
        other = logits.gather(1, (1 - y)[:, None])[:, 0]
        return -(z_y - other)
    srt = logits.sort(dim=1, descending=True).values
    if target is None:
        masked = logits.scatter(1, y[:, None], float("-inf"))
        return -(z_y - masked.max(1).values) / (srt[:, 0] - srt[:, 2] + 1e-12)
    z_t = logits.gather(1, target[:, None])[:, 0]
    low = srt[:, 2] if k == 3 else 0.5 * (srt[:, 2] + srt[:, 3])
    return -(z_y - z_t) / (srt[:, 0] - low + 1e-12)


class APGD(GradientAttack):
    """APGD-CE then APGD-DLR (targeted with ``K >= 3``), L-inf, on a torch model of ``[0, 1]`` images.

    Arguments beyond :class:`~auditor.attacks.base.GradientAttack`'s ``epsilon``, ``precision``,
    ``device``, ``max_batch_rows``, ``channels_last`` and ``fold_bn`` (APGD sets its own step sizes, so
    ``alpha`` and ``decay`` are refused; it is L-inf only):

    * ``steps=100`` -- iterations of each run;
    * ``losses=("ce", "dlr")`` -- the runs, in order;
    * ``restarts=1`` -- random starts of each run (an image fooled by one is done);
    * ``targets=9`` -- target classes of the targeted DLR runs, at most ``K - 1`` (AutoAttack's APGD-T uses 9).

    Example::

        x_adv = APGD(model, epsilon=8 / 255)(x, y, seed=0)
    """

    name = "apgd"
    display_name = "APGD"

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 100,
        losses: tuple[str, ...] | list[str] | str = LOSSES,
        restarts: int = 1,
        targets: int = 9,
        **loop: Any,
    ) -> None:
        _check(loop.get("alpha") is None, "attack apgd: alpha is not a parameter (APGD adapts its step size)")
        _check(loop.get("decay", 1.0) == 1.0, "attack apgd: decay is not a parameter (APGD's momentum is fixed)")
        _check(loop.get("norm", "linf") == "linf", "attack apgd: only the L-inf norm is implemented")
        super().__init__(model, steps=steps, **loop)
        if isinstance(losses, str):
            losses = tuple(x.strip() for x in losses.split("+") if x.strip())
        losses = tuple(losses)
        _check(
            bool(losses) and all(x in LOSSES for x in losses),
            f"attack apgd: losses {losses!r} must be a non-empty list of {', '.join(LOSSES)}",
        )
        _check(isinstance(restarts, int) and restarts >= 1, f"attack apgd: restarts {restarts!r} must be >= 1")
        _check(isinstance(targets, int) and targets >= 1, f"attack apgd: targets {targets!r} must be >= 1")
        self.losses, self.restarts, self.targets = losses, restarts, targets
        #: per loss: images that loss's runs fooled on the attacked model, over every call so far
        self.fooled_by: dict[str, int] = {x: 0 for x in losses}

    @property
    def label(self) -> str:
        """Human-readable name: the losses run."""
        return "APGD-" + "/".join(x.upper() for x in self.losses)

    def params(self) -> dict[str, Any]:
        """The effective parameters (JSON-compatible)."""
        return {
            "epsilon": self.epsilon,
            "steps": self.steps,
            "losses": list(self.losses),
            "restarts": self.restarts,
            "targets": self.targets,
            "rho": RHO,
            "momentum": MOMENTUM,
            "norm": "linf",
            "precision": self.precision,
        }

    def key_extras(self) -> dict[str, Any]:
        """A run counts an image as fooled only when its stored (8-bit, fp32) form fools the model."""
        return {"fooled_when": "stored at 8-bit levels, fp32"}

    # ------------------------------------------------------------------ passes
    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, loss: str, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-row loss, its gradient w.r.t. each row and the predicted class, in chunks of the surrogate."""
        n = x.shape[0]
        rows = self.chunk_rows(x)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        losses = torch.empty(n, device=x.device)
        grads = torch.empty_like(x, dtype=torch.float32)
        preds = torch.empty(n, dtype=torch.long, device=x.device)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            leaf = x[s:e].detach().to(torch.float32).contiguous(memory_format=fmt).clone().requires_grad_(True)
            with torch.enable_grad():
                with precision_context(self.precision, self.device):
                    logits = self.model(leaf)
                logits = logits.float()
                if loss == "ce":
                    per_row = F.cross_entropy(logits, y[s:e], reduction="none")
                else:
                    per_row = dlr_loss(logits, y[s:e], None if target is None else target[s:e])
                (g,) = torch.autograd.grad(per_row.sum(), leaf)
            if not bool(torch.isfinite(g).all()) or not bool(torch.isfinite(per_row).all()):
                raise ModelContractError(
                    f"attack {self.name}: the model gave NaN or infinite losses or gradients; the attack is refused"
                )
            losses[s:e] = per_row.detach()
            grads[s:e] = g
            preds[s:e] = logits.detach().argmax(1)
            self.surrogate_rows += e - s
        return losses, grads, preds

    def _predict(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.chunk_rows(x)
        with torch.no_grad(), precision_context(self.precision, self.device):
            return torch.cat([self.model(x[s : s + rows]).float() for s in range(0, x.shape[0], rows)])

    # ------------------------------------------------------------------ one run
    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        loss: str,
        gen: torch.Generator,
        target: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One APGD run from a random start; returns ``(x_out, fooled)`` per image (see the module docstring)."""
        n_iter, dims = self.steps, (-1, *([1] * (x.dim() - 1)))
        noise = (2 * torch.rand(x.shape, generator=gen) - 1).to(x.device)
        x_adv = project(x + eps * noise, x, eps)
        f, g, pred = self.loss_and_grad(x_adv, y, loss, target)
        fooled = pred != y
        x_fool = torch.where(fooled.view(dims), x_adv, x)
        best_f, x_best, g_best = f.clone(), x_adv.clone(), g.clone()
        eta = (2 * eps).expand(x.shape[0], *([1] * (x.dim() - 1))).clone()
        x_prev = x_adv
        marks = checkpoints(n_iter)
        last_mark, successes = 0, torch.zeros_like(f)
        eta_at_mark, best_at_mark = eta.clone(), best_f.clone()
        for k in range(n_iter):
            z = project(x_adv + eta * g.sign(), x, eps)
            if k == 0:
                x_new = z
            else:
                x_new = project(x_adv + MOMENTUM * (z - x_adv) + (1 - MOMENTUM) * (x_adv - x_prev), x, eps)
            x_prev, x_adv = x_adv, x_new
            f_new, g, pred = self._active_loss_and_grad(x_adv, y, loss, target, fooled, f, g)
            now = (pred != y) & ~fooled
            if bool(now.any()):
                now = self._fools_when_stored(x_adv, x, y, eps, now)
            x_fool = torch.where(now.view(dims), x_adv, x_fool)
            fooled |= now
            successes += (f_new > f).float()
            better = f_new > best_f
            best_f = torch.where(better, f_new, best_f)
            x_best = torch.where(better.view(dims), x_adv, x_best)
            g_best = torch.where(better.view(dims), g, g_best)
            f = f_new
            if k + 1 in marks:
                window = k + 1 - last_mark
                few = successes < RHO * window
                stuck = (eta_at_mark == eta).flatten() & (best_at_mark == best_f)
                halve = few | stuck
                eta = torch.where(halve.view(dims), eta / 2, eta)
                x_adv = torch.where(halve.view(dims), x_best, x_adv)
                g = torch.where(halve.view(dims), g_best, g)
                x_prev = torch.where(halve.view(dims), x_best, x_prev)
                last_mark, successes = k + 1, torch.zeros_like(f)
                eta_at_mark, best_at_mark = eta.clone(), best_f.clone()
            if bool(fooled.all()):
                break
        return torch.where(fooled.view(dims), x_fool, x_best), fooled

    def _fools_when_stored(
        self, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, candidates: torch.Tensor
    ) -> torch.Tensor:
        """Of the ``candidates`` (iterates that fool the model as computed), those that still fool it as the set
        stores them: rounded to the 8-bit levels the budget allows (:func:`quantize`) and run in fp32.

        The first fooling iterate sits at the decision boundary; rounding to 8 bits and the attack's bf16
        arithmetic can move it back (measured on a real ResNet50: APGD left 20-35 % accuracy where 10-step
        MI-FGSM left 0 %). An iterate that fails this check is not counted as fooled: its run goes on and its
        loss keeps rising, so the image leaves the run only when its stored form fools the model.
        """
        idx = candidates.nonzero().flatten()
        stored = []
        for i in idx.tolist():
            levels = quantize(x_adv[i].detach().cpu().numpy(), x[i].detach().cpu().numpy(), float(eps.reshape(-1)[i]))
            stored.append(torch.from_numpy(levels.astype(np.float32) / 255.0))
        batch = torch.stack(stored).to(x.device)
        with torch.no_grad(), precision_context("fp32", self.device):
            pred = self.model(batch).float().argmax(1)
        out = torch.zeros_like(candidates)
        out[idx] = pred != y[idx]
        return out

    def _active_loss_and_grad(
        self,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        loss: str,
        target: torch.Tensor | None,
        fooled: torch.Tensor,
        f: torch.Tensor,
        g: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`loss_and_grad` on the images of the run not fooled yet; fooled rows keep ``f``, ``g``, ``y``.

        An image's iterates depend on its own loss and gradient only (eval-mode model, per-image step
        size), and a fooled image's output is fixed at its first fooling iterate, so leaving it out of
        later passes changes no image's outcome and saves the passes (at large budgets most images fall
        in the first few of the 100 iterations).
        """
        active = (~fooled).nonzero().flatten()
        if active.numel() == fooled.numel():
            return self.loss_and_grad(x_adv, y, loss, target)
        t = None if target is None else target[active]
        f_a, g_a, pred_a = self.loss_and_grad(x_adv[active], y[active], loss, t)
        f_new, g_new, pred = f.clone(), g.clone(), y.clone()
        f_new[active], g_new[active], pred[active] = f_a, g_a, pred_a
        return f_new, g_new, pred

    # ------------------------------------------------------------------ the attack
    def attack_batch(
        self, x: torch.Tensor, y: torch.Tensor, epsilon: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """APGD's runs on a checked batch (called by :meth:`GradientAttack.__call__`)."""
        eps, _ = self.budget(x, epsilon)
        eps = torch.as_tensor(eps, dtype=torch.float32, device=x.device).reshape(-1, *([1] * (x.dim() - 1)))
        eps = eps.expand(x.shape[0], *eps.shape[1:])
        out = x.clone()
        first = True
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for loss in self.losses:
            for target in self._targets(loss, x, y):
                for _ in range(self.restarts):
                    todo = (~fooled).nonzero().flatten()
                    if todo.numel() == 0:
                        return out.detach()
                    t = None if target is None else target[todo]
                    x_run, hit = self.run(x[todo], y[todo], eps[todo], loss, generator, t)
                    keep = hit | first  # the first run's best points stand for images nothing fools
                    out[todo[keep]] = x_run[keep]
                    fooled[todo[hit]] = True
                    self.fooled_by[loss] += int(hit.sum())
                    first = False
        return out.detach()

    def _targets(self, loss: str, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor | None]:
        """The targets of the runs of ``loss``: ``[None]`` (untargeted), or the highest-ranked other classes."""
        if loss != "dlr":
            return [None]
        logits = self._predict(x)
        k = logits.shape[1]
        if k == 2:
            note = "apgd: 2-class model, the DLR run uses the logit-margin loss (DLR needs a third logit)"
            if note not in self.notes:
                self.notes.append(note)
            return [None]
        order = logits.argsort(dim=1, descending=True)
        others = torch.stack([row[row != label] for row, label in zip(order, y)])  # (N, K-1), best first
        return [others[:, i] for i in range(min(self.targets, k - 1))]
