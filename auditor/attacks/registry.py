"""Building attacks from the registry (:mod:`auditor.attack_specs`, which lists them), imported lazily
(``xray-audit --help`` never imports torch).

``make_attack("usmm", surrogate, epsilon=8/255)`` validates every parameter by name before constructing:
an unknown attack or parameter is a one-line :class:`~auditor.errors.UsageError` listing what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditor.attack_specs import (
    ATTACKS,
    KINDS,
    TRAINING_BANK_ATTACK,
    AttackSpec,
    default_attacks,
    get_spec,
    help_text,
    list_attacks,
    strong_attack_advice,
)
from auditor.errors import UsageError

__all__ = [
    "ATTACKS",
    "KINDS",
    "TRAINING_BANK_ATTACK",
    "AttackSpec",
    "JobInputs",
    "default_attacks",
    "get_attack_class",
    "get_spec",
    "help_text",
    "list_attacks",
    "make_attack",
    "scan_params",
    "strong_attack_advice",
]


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
