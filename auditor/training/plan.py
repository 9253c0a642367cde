"""What ``train surrogates`` trains when not told: architectures, image size and epochs that fit a time budget.

The full zoo (ResNet-18, SmallCNN, DenseNet-121 at 224 px for 30 epochs) takes many hours on a 2-core
CPU. Unless the user names them, :func:`plan_zoo` picks the members, the input size and the maximum
number of epochs so that the whole zoo finishes in about ``budget`` seconds (default one hour) on this
host, from a measured probe: one training step (forward, backward, Adam update) of each candidate
architecture on a small batch at :data:`PROBE_SIZE` pixels, timed after a warm-up step
(:func:`measure_step`). The cost of a network's convolutions grows with the pixel count, so a step at
``S`` pixels is taken to cost ``(S / PROBE_SIZE)**2`` times the probe (an approximation: small inputs
use the cores less well, so it errs towards over-estimating small sizes).

An epoch of a member trains on 60 % of its fold (the recipe's patient-wise 60/20/20 split) and
evaluates 20 % (about a third of a training step per image). The plan prefers, in order: inputs of at
least 128 pixels, three architectures (the diversity an ensemble of surrogates needs, Liu et al.,
ICLR 2017), the largest size, then as many epochs as fit up to :data:`MAX_EPOCHS`; a combination is
accepted from :data:`MIN_EPOCHS` epochs on. Early stopping usually ends a member sooner, so the
estimate is an upper bound. On a CUDA device the full defaults are kept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from auditor.attack_eta import format_duration

#: the zoo trained when a GPU is present (and the architectures tried first on a CPU)
FULL_ARCHS = ("resnet18", "small_cnn", "densenet121")
#: member sets tried on a CPU, most diverse first
ARCH_SETS = (FULL_ARCHS, ("resnet18", "small_cnn"))
#: input sizes tried on a CPU, largest first
SIZES = (224, 192, 160, 128, 112, 96, 64)
#: sizes from which on a plan is preferred (transfer suffers when the surrogate sees far fewer pixels)
PREFERRED_MIN_SIZE = 128
FULL_SIZE = 224
MAX_EPOCHS = 30
MIN_EPOCHS = 8
DEFAULT_BUDGET_MINUTES = 60
#: side of the probe images and images per probe step
PROBE_SIZE = 96
PROBE_BATCH = 8
#: shares of a member's fold trained on and evaluated each epoch (the recipe's 60/20/20 split)
TRAIN_SHARE, VAL_SHARE = 0.6, 0.2
#: cost of evaluating an image relative to a training step on it (forward only, no backward/update)
EVAL_COST = 1 / 3


@dataclass(frozen=True)
class ZooPlan:
    """What the zoo trains and why: members, size, maximum epochs, the estimate and the probe."""

    archs: tuple[str, ...]
    image_size: int
    epochs: int
    #: upper bound of the wall time of the whole zoo (every member runs all its epochs)
    estimate_seconds: float
    #: estimated seconds of one epoch of each member, in member order
    epoch_seconds: tuple[float, ...]
    reason: str
    #: measured seconds per image of one training step at PROBE_SIZE, per architecture
    probe: dict[str, float] = field(default_factory=dict)
    chosen: tuple[str, ...] = ()  #: which of archs/size/epochs the plan chose (the rest were given)

    def describe(self) -> str:
        """The lines ``train surrogates`` prints before training."""
        picked = ", ".join(self.chosen) if self.chosen else "nothing (all given)"
        probe = ", ".join(f"{a} {1000 * s:.1f} ms" for a, s in self.probe.items())
        lines = [
            f"zoo plan: {','.join(self.archs)} at {self.image_size} px, at most {self.epochs} epochs each "
            f"(picked: {picked})",
            f"  why: {self.reason}",
        ]
        if probe:
            lines.append(f"  probe: one training step per image at {PROBE_SIZE} px: {probe}")
        if self.estimate_seconds == self.estimate_seconds:  # not NaN: a probe was measured
            lines.append(
                f"  estimate: at most {format_duration(self.estimate_seconds)} for the zoo (early stopping "
                "usually ends sooner); give --archs, --image-size, --epochs or --budget-minutes to change it"
            )
        return "\n".join(lines)


def measure_step(arch: str, n_classes: int, size: int = PROBE_SIZE, batch: int = PROBE_BATCH) -> float:
    """Seconds per image of one training step (the seeds' augmentation, forward, loss, backward, Adam) of ``arch``.

    One warm-up step, then the faster of two timed steps, on random ``(batch, 1, size, size)`` images.
    """
    import torch
    import torch.nn.functional as F

    from auditor.reference_models.registry import build_model
    from auditor.training.augment import seeds_augment

    net = build_model(arch, n_classes, 1).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 1, size, size), generator=gen)
    y = torch.randint(0, n_classes, (batch,), generator=gen)
    best = float("inf")
    for i in range(3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(seeds_augment(x, gen)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            best = min(best, time.perf_counter() - t0)
    return best / batch


def _epoch_seconds(per_image: float, size: int, fold_images: float) -> float:
    scale = (size / PROBE_SIZE) ** 2
    return per_image * scale * fold_images * (TRAIN_SHARE + VAL_SHARE * EVAL_COST)


def plan_zoo(
    n_images: int,
    n_classes: int,
    *,
    cuda: bool = False,
    budget_seconds: float = DEFAULT_BUDGET_MINUTES * 60,
    archs: Sequence[str] | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    measure: Callable[[str, int], float] | None = None,
) -> ZooPlan:
    """The zoo to train on ``n_images`` images: the given choices kept, the others picked (module docstring).

    ``measure(arch, n_classes)`` returns seconds per image of a training step at :data:`PROBE_SIZE`
    (default :func:`measure_step`; tests pass a fixed table).
    """
    measure = measure or measure_step
    chosen = tuple(
        name for name, given in (("archs", archs), ("image size", image_size), ("epochs", epochs)) if not given
    )
    if cuda or not chosen:
        a, s, e = tuple(archs or FULL_ARCHS), image_size or FULL_SIZE, epochs or MAX_EPOCHS
        why = (
            "a CUDA device is present: the full defaults (no time budget applied)"
            if chosen
            else "all given on the command line (no probe; the estimate follows the first epoch)"
        )
        return ZooPlan(a, s, e, float("nan"), tuple(float("nan") for _ in a), why, {}, chosen)
    arch_sets = [tuple(archs)] if archs else list(ARCH_SETS)
    probe = {a: float(measure(a, n_classes)) for a in dict.fromkeys(x for s in arch_sets for x in s)}
    sizes = [image_size] if image_size else list(SIZES)
    tiers = [[s for s in sizes if s >= PREFERRED_MIN_SIZE], [s for s in sizes if s < PREFERRED_MIN_SIZE]]
    candidates = [(a, s) for tier in tiers for a in arch_sets for s in tier]
    budget = f"{format_duration(budget_seconds)} budget on this CPU"

    def cost(a: tuple[str, ...], s: int) -> tuple[float, ...]:
        return tuple(_epoch_seconds(probe[x], s, n_images / len(a)) for x in a)

    for a, s in candidates:
        per = cost(a, s)
        fit = int(budget_seconds // max(sum(per), 1e-9))
        if epochs is not None:
            if sum(per) * epochs <= budget_seconds:
                why = f"the largest choice whose {epochs} epochs fit the {budget}"
                return ZooPlan(a, s, epochs, sum(per) * epochs, per, why, probe, chosen)
            continue
        if fit >= MIN_EPOCHS:
            e = min(fit, MAX_EPOCHS)
            why = (
                f"the most diverse zoo at the largest size with at least {MIN_EPOCHS} epochs in the {budget} "
                f"({n_images} images, {len(a)} folds)"
            )
            return ZooPlan(a, s, e, sum(per) * e, per, why, probe, chosen)
    if epochs is None:  # no choice reaches MIN_EPOCHS: the first (preferred) one that fits most epochs
        best = max(candidates, key=lambda c: int(budget_seconds // max(sum(cost(*c)), 1e-9)))
        per = cost(*best)
        fit = int(budget_seconds // max(sum(per), 1e-9))
        if fit >= 1:
            why = f"no choice gives {MIN_EPOCHS} epochs in the {budget}; the one that fits the most epochs"
            return ZooPlan(best[0], best[1], fit, sum(per) * fit, per, why, probe, chosen)
    a, s = candidates[-1]
    per = cost(a, s)
    e = epochs or 1
    why = f"nothing fits the {budget}: the cheapest zoo; it will take longer (lower --image-size or raise the budget)"
    return ZooPlan(a, s, e, sum(per) * e, per, why, probe, chosen)


def count_images(data: str, allow_outside_root: bool = False) -> tuple[int, int]:
    """``(images, classes)`` a data folder or manifest lists (before exclusions and unreadable files)."""
    from auditor.data import open_dataset

    samples = open_dataset(data, allow_outside_root=allow_outside_root).samples
    return len(samples), len({s.label.casefold() for s in samples})
