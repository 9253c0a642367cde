"""Acceptance gates as written: ``--fail-under`` specs parsed up front, ``--min-transfer`` checked with
them, and the :class:`GatePolicy` that decides them (evaluated by :mod:`auditor.report.gates`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from auditor.errors import UsageError
from auditor.types import AuditResult

#: gates measured on one number, without a class
SIMPLE_GATES = ("accuracy", "macro_f1", "robust_accuracy", "max_attack_success_rate", "max_flip_rate")
#: gates measured under attack, which ``--min-transfer`` guards
ROBUSTNESS_GATES = ("robust_accuracy", "robust_sensitivity", "max_attack_success_rate", "max_flip_rate")
#: gates that need ``:<class>``
CLASS_GATES = ("sensitivity", "robust_sensitivity")
#: gates whose threshold is an upper bound
UPPER_BOUND_GATES = ("max_attack_success_rate", "max_flip_rate")
GATE_NAMES = SIMPLE_GATES + tuple(f"{g}:<class>" for g in CLASS_GATES)

NOT_MEASURED = "not measured"
PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"
#: statistical status of a gate (``extras.gate_evaluation.records[].status``)
STATUSES = (PASSED, FAILED, INCONCLUSIVE, NOT_MEASURED)
#: statuses shown beside the verdict
UNSURE = (INCONCLUSIVE, NOT_MEASURED)
#: ``--gate-on``: decide on the point estimate, or require the whole 95% CI on the passing side
GATE_ON = ("point", "ci")
DEFAULT_GATE_ON = "point"


@dataclass(frozen=True)
class GateSpec:
    """One parsed gate: ``metric`` (``sensitivity``), optional ``cls``, ``threshold``."""

    metric: str
    threshold: float
    cls: str | None = None

    @property
    def name(self) -> str:
        """The gate as written in the spec (``sensitivity:pneumothorax``)."""
        return f"{self.metric}:{self.cls}" if self.cls is not None else self.metric

    @property
    def upper_bound(self) -> bool:
        """True when the gate passes at or *below* the threshold."""
        return self.metric in UPPER_BOUND_GATES


def _parse_item(item: str) -> GateSpec:
    if "=" not in item:
        raise UsageError(f"--fail-under: {item!r} is not name=value (e.g. accuracy=0.8)")
    name, _, raw = item.partition("=")
    name, raw = name.strip(), raw.strip()
    metric, sep, cls = name.partition(":")
    metric = metric.strip().lower()
    cls = cls.strip()
    if sep:
        if metric not in CLASS_GATES:
            raise UsageError(f"--fail-under: unknown gate {name!r}; known: {', '.join(GATE_NAMES)}")
        if not cls:
            raise UsageError(f"--fail-under: {name!r} needs a class name after ':'")
    elif metric not in SIMPLE_GATES:
        hint = f" (write {metric}:<class>)" if metric in CLASS_GATES else f"; known: {', '.join(GATE_NAMES)}"
        raise UsageError(f"--fail-under: unknown gate {name!r}{hint}")
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--fail-under: {name}={raw!r} is not a number") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UsageError(f"--fail-under: {name}={raw} must be a fraction between 0 and 1 (e.g. 0.8)")
    return GateSpec(metric=metric, threshold=value, cls=cls if sep else None)


def parse_gates(spec: str | Iterable[str] | None) -> tuple[GateSpec, ...]:
    """Parse ``--fail-under`` text (or a list of such texts) into gate specs.

    Raises :class:`UsageError` (one line) for an unknown gate, a missing
    ``=``, a non-numeric or out-of-range value, or a gate given twice.
    """
    if spec is None:
        return ()
    texts = [spec] if isinstance(spec, str) else list(spec)
    out: list[GateSpec] = []
    seen: set[str] = set()
    for text in texts:
        for item in str(text).split(","):
            if not item.strip():
                continue
            gate = _parse_item(item)
            key = f"{gate.metric}:{(gate.cls or '').lower()}"
            if key in seen:
                raise UsageError(f"--fail-under: gate {gate.name!r} is given twice")
            seen.add(key)
            out.append(gate)
    return tuple(out)


def stored_gates(result: AuditResult) -> tuple[GateSpec, ...]:
    """The gate specs of the verdicts stored in ``result`` (to re-evaluate them under another policy)."""
    return parse_gates([f"{g.name}={g.threshold!r}" for g in result.gates]) if result.gates else ()


def check_min_transfer(value: float | None, gates: Iterable[GateSpec]) -> float | None:
    """Validate ``--min-transfer``: a fraction in [0, 1], only together with a robustness gate."""
    if value is None:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UsageError(f"--min-transfer {value:g} must be a fraction between 0 and 1 (e.g. 0.5)")
    if not any(g.metric in ROBUSTNESS_GATES for g in gates):
        raise UsageError("--min-transfer guards robustness gates; add one, e.g. --fail-under robust_accuracy=0.7")
    return value


@dataclass(frozen=True)
class GatePolicy:
    """How gates are decided: ``gate_on`` (``point`` or ``ci``), ``allow_transfer_only``, ``min_transfer``."""

    gate_on: str = DEFAULT_GATE_ON
    allow_transfer_only: bool = False
    min_transfer: float | None = None

    def __post_init__(self) -> None:
        if self.gate_on not in GATE_ON:
            raise UsageError(f"--gate-on {self.gate_on}: choose {' or '.join(GATE_ON)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``extras.gate_evaluation`` of results.json, without the records)."""
        return {
            "gate_on": self.gate_on,
            "allow_transfer_only": self.allow_transfer_only,
            "min_transfer": self.min_transfer,
        }
