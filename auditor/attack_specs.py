"""The attack registry: every attack xray-audit knows, one :class:`AttackSpec` each, in :data:`ATTACKS`.

This module and :mod:`auditor.attacks.registry` (which builds attacks from these entries) are the one place
outside an attack's own module that names an attack (``tests/test_attack_registry.py`` checks that no other
module of ``auditor/`` does). Adding an attack is one new module under ``auditor/attacks/`` plus one entry
here: the scan, ``xray-audit attack``, the CLI help, the set cache, the stage clock's time projection, the
gates' advice and the reports all read what they need from the spec. The table is a foundation module
(it imports nothing but the error types), so every layer, the report included, can read it without torch;
:meth:`AttackSpec.load` imports an attack's module only when it is made.

Kinds (:data:`KINDS`):

* ``gradient`` -- needs a differentiable torch model: a surrogate (transfer) or the converted target
  (white-box, ``--surrogate target``);
* ``query`` -- needs only the target's outputs through ONNX Runtime (no conversion, no surrogate);
* ``visible`` -- needs no model at all (a visible manipulation such as a style blend).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from auditor.errors import UsageError

#: what an attack needs to run (see the module docstring)
KINDS = ("gradient", "query", "visible")

#: the registered attack the defenses' training banks run (``auditor.training.imagepairs``: a few MI-FGSM steps)
TRAINING_BANK_ATTACK = "mifgsm"


class AttackClass(Protocol):
    """What the registry uses of a gradient or query attack's class: its keyword parameters, and its
    constructor (the model or query function, then those parameters)."""

    def accepted_params(self) -> list[str]:
        """Keyword parameters the constructor accepts."""
        ...

    def __call__(self, model: Any, /, **params: Any) -> Any:
        """A new attack on ``model``."""
        ...


@dataclass(frozen=True)
class AttackSpec:
    """One registered attack: where its class lives and the facts the rest of the tool needs about it.

    ``passes_per_step`` and ``default_steps`` are the cost model of the stage clock
    (:mod:`auditor.attack_eta`): model passes per image and iteration, counted as forward+backward passes
    (a query-only attack's forward pass counts 1/3), and the iterations when ``--attack-params`` gives none.
    ``steps_param`` names the parameter that sets the iterations (``steps``, or ``queries``).
    """

    name: str
    module: str
    cls: str
    display_name: str
    kind: str
    summary: str
    passes_per_step: float = 1.0
    default_steps: int = 10
    steps_param: str = "steps"
    #: the condition name carries the style backend (``stm[randconv]@8``)
    names_style_backend: bool = False
    #: one of the attacks a scan runs by default when it has a surrogate
    default_with_surrogate: bool = False
    #: one of the attacks the adaptive (BPDA) check may run through a defense
    adaptive: bool = True
    #: the attack to recommend for a white-box bound (``--surrogate target``)
    white_box_bound: bool = False

    def cost(self, params: Mapping[str, Any] | None = None) -> float:
        """Forward+backward-pass equivalents per image of one set with ``params``."""
        steps = (params or {}).get(self.steps_param, self.default_steps)
        try:
            steps = float(steps)
        except (TypeError, ValueError):
            steps = float(self.default_steps)
        return self.passes_per_step * steps

    def load(self) -> AttackClass:
        """The attack's class (imports its module)."""
        return getattr(importlib.import_module(self.module), self.cls)


#: name -> spec; the order is the order of ``--help`` and of the reports
ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in (
        AttackSpec(
            "mifgsm",
            "auditor.attacks.mifgsm",
            "MIFGSM",
            "MI-FGSM",
            "gradient",
            "momentum iterative FGSM, the baseline (Dong et al. 2018)",
        ),
        AttackSpec(
            "usmm",
            "auditor.attacks.usmm",
            "USMM",
            "USMM",
            "gradient",
            "uniform scale + mix mask transfer attack (Wang et al. 2023)",
            passes_per_step=15,
            default_with_surrogate=True,
        ),
        AttackSpec(
            "stm",
            "auditor.attacks.stm",
            "STM",
            "STM",
            "gradient",
            "style transfer method transfer attack (Ge et al. 2023)",
            passes_per_step=20,
            names_style_backend=True,
            default_with_surrogate=True,
        ),
        AttackSpec(
            "apgd",
            "auditor.attacks.apgd",
            "APGD",
            "APGD-CE/DLR",
            "gradient",
            "auto-PGD with the cross-entropy and DLR losses (Croce & Hein 2020); strongest with --surrogate target",
            default_steps=100,
            passes_per_step=2,  # the DLR run repeats the CE run's iterations on the images CE left standing
            white_box_bound=True,
        ),
        AttackSpec(
            "square",
            "auditor.attacks.square",
            "SquareAttack",
            "Square",
            "query",
            "Square attack, queries the ONNX model only (Andriushchenko et al. 2020)",
            default_steps=1000,
            steps_param="queries",
            passes_per_step=1 / 3,
            adaptive=False,
        ),
        AttackSpec(
            "blend",
            "auditor.attacks.style_blend",
            "style_blend_set",
            "style blend",
            "visible",
            "visible style-texture blend at fixed opacities (no model)",
            passes_per_step=0,
            default_steps=0,
            adaptive=False,
        ),
    )
}


def list_attacks(kind: str | None = None) -> list[str]:
    """Registered attack names (of one ``kind`` when given), in registry order."""
    return [name for name, spec in ATTACKS.items() if kind is None or spec.kind == kind]


def default_attacks() -> tuple[str, ...]:
    """The attacks a scan with a surrogate runs when ``--attacks`` is not given."""
    return tuple(name for name, spec in ATTACKS.items() if spec.default_with_surrogate)


def get_spec(name: str) -> AttackSpec:
    """The spec registered as ``name`` (case-insensitive); an unknown name is a UsageError."""
    key = (name or "").strip().lower()
    if key not in ATTACKS:
        raise UsageError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    return ATTACKS[key]


def help_text() -> str:
    """One line per attack for ``--help`` and the README: ``name (kind): summary``."""
    return "; ".join(f"{s.name} ({s.kind}): {s.summary}" for s in ATTACKS.values())


def strong_attack_advice() -> str:
    """What a transfer-only audit should add for a bound from the attacker's side (gates, headline)."""
    query = ",".join(list_attacks("query"))
    white = ",".join(n for n, s in ATTACKS.items() if s.white_box_bound)
    return f"--attacks {query} (query-only, on the ONNX file) or --surrogate target --attacks {white} (white-box)"
