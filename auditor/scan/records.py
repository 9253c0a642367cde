"""The adversarial sets of a scan as typed records (:class:`AdversarialSet`), built by the attack and
defense stages and scored by the evaluation stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from auditor.condition_ids import ConditionId, SetId
from auditor.result_records import SetMeta


@dataclass(frozen=True)
class SurrogateEval:
    """The surrogate's own view of a set (see :mod:`auditor.transfer`): its predictions on the clean and on the
    quantised adversarial images, and the input size it was trained at."""

    clean_pred: np.ndarray
    adv_pred: np.ndarray
    input_sizes: Any


@dataclass(frozen=True)
class AdversarialSet:
    """One set of manipulated images of a scan and what results.json records about it.

    ``kind`` is ``attack`` (a transfer attack on the surrogate), ``style_blend`` (a visible blend) or
    ``adaptive`` (an attack through a defense's torch path, BPDA: the target sees ``defense(x_adv)``).
    """

    id: SetId
    kind: str
    #: (N, 1, H, W) in [0, 1]: an array, a lazy cache reader or a lazily blended view
    images: Any
    #: perturbation norms, SSIM and PSNR against the clean images (:func:`auditor.attacks.perturbation.perturbation_stats`)
    stats: dict[str, float]
    label: str
    #: the set's entry in results.json ``extras.adversarial_sets`` (cache key, timing, cache hit, ...)
    meta: SetMeta
    surrogate: str | None
    threat_model: str
    surrogate_eval: SurrogateEval | None = None
    #: adaptive sets: the defense (a preprocessor) attacked through, and the set the attack repeats
    defense: Any = None
    base: AdversarialSet | None = None
    #: what the attack recorded per image (a query attack: ``queries`` used and ``fooled``), or None
    record: Mapping[str, list] | None = None

    @property
    def condition(self) -> ConditionId:
        """The condition this set is scored as (an adaptive set: through its defense)."""
        if self.base is not None and self.defense is not None:
            return ConditionId(self.base.name, self.defense.name, adaptive=True)
        return ConditionId(self.id.name)

    @property
    def name(self) -> str:
        """The condition name: ``usmm@8``, ``blend@0.3``, ``usmm@16+bpda:jpeg:75``."""
        return self.condition.name

    @property
    def attack(self) -> str | None:
        """The attack's name (``blend`` for a style blend)."""
        return self.id.attack

    @property
    def epsilon(self) -> float | None:
        """The L-inf budget (None for a style blend)."""
        return self.id.epsilon

    @property
    def alpha(self) -> float | None:
        """A style blend's opacity (else None)."""
        return self.id.alpha


@dataclass(frozen=True)
class AttackStage:
    """What the attack stage returns: the sets in a stable order (attack, then ε) and, with ``--precision auto``,
    what was measured and chosen (results.json ``environment.precision_choice``; None otherwise)."""

    sets: tuple[AdversarialSet, ...] = ()
    precision_choice: Mapping[str, Any] | None = None

    def precision(self, asked: str) -> str:
        """The precision the sets were made at: the one ``--precision auto`` chose, else ``asked``."""
        return str(self.precision_choice["chosen"]) if self.precision_choice else asked
