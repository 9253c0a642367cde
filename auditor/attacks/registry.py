"""The attack registry: every attack xray-audit knows, one :class:`AttackSpec` each, in :data:`ATTACKS`.

This module is the one place outside an attack's own module that names an attack
(``tests/test_attack_registry.py`` checks that no other module of ``auditor/`` does). Adding an attack is
one new module under ``auditor/attacks/`` plus one entry here: the scan, ``xray-audit attack``, the CLI
help, the set cache, the stage clock's time projection and the reports all read what they need from the
spec. The static facts (name, kind, display name, cost) need no import of the attack's module, so
``xray-audit --help`` never imports torch; the class is imported only when an attack is made
(:func:`make_attack`).

Kinds (:data:`KINDS`):

* ``gradient`` -- needs a differentiable torch model: a surrogate (transfer) or the converted target
  (white-box, ``--surrogate target``);
* ``query`` -- needs only the target's outputs through ONNX Runtime (no conversion, no surrogate);
* ``visible`` -- needs no model at all (a visible manipulation such as a style blend).

``make_attack("usmm", surrogate, epsilon=8/255)`` validates every parameter by name before constructing:
an unknown attack or parameter is a one-line :class:`~auditor.errors.UsageError` listing what is accepted.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from auditor.errors import UsageError

#: what an attack needs to run (see the module docstring)
KINDS = ("gradient", "query", "visible")

#: the registered attack the defenses' training banks run (``auditor.training.imagepairs``: a few MI-FGSM steps)
TRAINING_BANK_ATTACK = "mifgsm"


@dataclass(frozen=True)
class JobInputs:
    """What an attack's :meth:`scan_params` hook may use to add parameters to a scan's job.

    ``shared`` is one dictionary per call of :func:`auditor.scan.jobs.attack_jobs`: a hook caches work that
    every budget of its attack reuses there (USMM's mask pool).
    """

    images: Any
    labels: Any
    seed: int = 0
    style_backend: str | None = None
    stm_checkpoint: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)


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

    def cost(self, params: Mapping[str, Any] | None = None) -> float:
        """Forward+backward-pass equivalents per image of one set with ``params``."""
        steps = (params or {}).get(self.steps_param, self.default_steps)
        try:
            steps = float(steps)
        except (TypeError, ValueError):
            steps = float(self.default_steps)
        return self.passes_per_step * steps

    def load(self) -> type:
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


def get_attack_class(name: str):
    """The attack class registered as ``name`` (imports its module)."""
    return get_spec(name).load()


def scan_params(name: str, inputs: JobInputs) -> dict[str, Any]:
    """Extra parameters a scan gives attack ``name`` (its class's ``scan_params`` hook; none by default)."""
    spec = get_spec(name)
    if spec.kind == "visible":
        return {}
    hook = getattr(spec.load(), "scan_params", None)
    return dict(hook(inputs)) if hook is not None else {}


def make_attack(name: str, surrogate: Any, **params: Any):
    """Build attack ``name`` on ``surrogate`` with validated ``params``.

    ``surrogate`` is a Surrogate or an ``nn.Module`` for a gradient attack, the target's query function
    (:class:`~auditor.attacks.square.QueryModel`) for a query attack.
    """
    spec = get_spec(name)
    if spec.kind == "visible":
        raise UsageError(f"attack {name} needs no model and is not built per batch")
    cls = spec.load()
    accepted = cls.accepted_params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UsageError(f"attack {name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    eps = params.get("epsilon", 16 / 255)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < float(eps) <= 1:
        raise UsageError(
            f"attack {name}: epsilon {eps!r} is outside (0, 1] (epsilons are fractions of the [0,1] range)"
        )
    model = surrogate if spec.kind == "query" else getattr(surrogate, "module", surrogate)
    return cls(model, **params)
