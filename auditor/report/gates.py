"""Acceptance gates: ``--fail-under`` specs, parsed up front and evaluated on a result.

Spec syntax: comma-separated ``name=value`` items, e.g.
``accuracy=0.8,robust_accuracy=0.5,sensitivity:pneumothorax=0.8,max_flip_rate=0.3``.
Values are fractions in [0, 1].

========================== ===================================================== =========
gate                       measured value                                        passes if
========================== ===================================================== =========
accuracy                   clean accuracy                                        >= value
macro_f1                   clean macro-F1                                        >= value
robust_accuracy            worst accuracy over attack conditions (no defense)    >= value
sensitivity:<class>        clean sensitivity (recall) of the class               >= value
robust_sensitivity:<class> worst sensitivity of the class over attack conditions >= value
max_attack_success_rate    highest attack success rate over attack conditions    <= value
max_flip_rate              highest flip rate over attack conditions              <= value
========================== ===================================================== =========

Attack success rate: of the images correct when clean, the share the attack makes wrong; flip
rate: of all images, the share whose prediction differs from the clean one (see
:func:`auditor.metrics.compute_attack_rates`). ``max_flip_rate`` is the recommended robustness gate.

A gate whose value cannot be measured on the result (no attack conditions, a
class without images, a class the model does not have, or a NaN/infinite value
in any condition it looks at) fails with the detail ``not measured``: a gate
never passes on NaN.

``--min-transfer X`` guards the robustness gates (``robust_accuracy``,
``robust_sensitivity:<class>``, ``max_attack_success_rate``, ``max_flip_rate``)
against a vacuous transfer audit: each of them fails, whatever its value, when
the audit transfer efficiency (:func:`auditor.transfer.audit_transfer`: the
best target flip rate / surrogate flip rate over the transfer conditions;
white-box conditions count as 1) is below ``X`` or cannot be measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from auditor.errors import EXIT_GATE_FAILED, EXIT_OK, UsageError
from auditor.transfer import audit_transfer
from auditor.types import AuditResult, Condition, GateOutcome

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


# --------------------------------------------------------------------------- measurement


def attack_conditions(result: AuditResult) -> list[Condition]:
    """Attack conditions on undefended inputs (the worst-case pool of the robust gates)."""
    return [c for c in result.conditions if c.kind == "attack" and not c.defense]


def clean_condition(result: AuditResult) -> Condition | None:
    """The undefended clean condition."""
    return result.condition("clean") or next((c for c in result.conditions if c.kind == "clean"), None)


def _class_key(cond: Condition, cls: str) -> str | None:
    per_class = cond.metrics.get("per_class") or {}
    if cls in per_class:
        return cls
    folded = {k.casefold(): k for k in per_class}
    return folded.get(cls.casefold())


Measure = tuple[float | None, str]


def _number(value) -> float | None:
    """``value`` as a float (NaN and infinities kept, so the caller can refuse them); None when absent."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _single(value, where: str) -> Measure:
    v = _number(value)
    if v is None:
        return None, NOT_MEASURED
    if not math.isfinite(v):
        return None, f"{NOT_MEASURED}: {where} value is {v} (not a finite number)"
    return v, where


def _extreme(conds: list[Condition], get: Callable[[Condition], float | None], worst_is_min: bool) -> Measure:
    values = [(v, c.name) for c in conds if (v := _number(get(c))) is not None]
    if not values:
        return None, NOT_MEASURED
    broken = [name for v, name in values if not math.isfinite(v)]
    if broken:  # a NaN is never the best or the worst: the gate cannot be judged
        return None, f"{NOT_MEASURED}: {broken[0]} value is not a finite number"
    pick = min if worst_is_min else max
    value, name = pick(values, key=lambda t: t[0])
    return value, f"worst: {name}"


def _measure(result: AuditResult, gate: GateSpec) -> Measure:
    clean = clean_condition(result)
    attacks = attack_conditions(result)
    if gate.metric in ("accuracy", "macro_f1"):
        return _single(clean.metrics.get(gate.metric) if clean else None, "clean")
    if gate.metric == "robust_accuracy":
        return _extreme(attacks, lambda c: c.metrics.get("accuracy"), worst_is_min=True)
    if gate.metric == "max_attack_success_rate":
        return _extreme(attacks, lambda c: c.extra.get("attack_success_rate"), worst_is_min=False)
    if gate.metric == "max_flip_rate":
        return _extreme(attacks, lambda c: c.extra.get("flip_rate"), worst_is_min=False)
    assert gate.cls is not None
    if clean is None or _class_key(clean, gate.cls) is None:
        known = ", ".join(clean.metrics.get("labels") or []) if clean else ""
        return None, f"{NOT_MEASURED}: no class {gate.cls!r} in the results" + (f" (classes: {known})" if known else "")

    def sensitivity(c: Condition) -> float | None:
        key = _class_key(c, gate.cls)
        return (c.metrics["per_class"][key] or {}).get("sensitivity") if key else None

    if gate.metric == "sensitivity":
        return _single(sensitivity(clean), "clean")
    if gate.metric == "robust_sensitivity":
        return _extreme(attacks, sensitivity, worst_is_min=True)
    raise AssertionError(f"unhandled gate {gate.metric}")  # pragma: no cover - parse_gates rejects it


def evaluate_gate(result: AuditResult, gate: GateSpec) -> GateOutcome:
    """The verdict of one gate on ``result``."""
    value, where = _measure(result, gate)
    if value is None:
        return GateOutcome(gate.name, gate.threshold, None, False, where)
    passed = value <= gate.threshold if gate.upper_bound else value >= gate.threshold
    relation = "<=" if gate.upper_bound else ">="
    verdict = "passed" if passed else "failed"
    detail = f"{verdict}: {value:.4f} (required {relation} {gate.threshold:g}; {where})"
    return GateOutcome(gate.name, gate.threshold, value, passed, detail)


def check_min_transfer(value: float | None, gates: Iterable[GateSpec]) -> float | None:
    """Validate ``--min-transfer``: a fraction in [0, 1], only together with a robustness gate."""
    if value is None:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise UsageError(f"--min-transfer {value:g} must be a fraction between 0 and 1 (e.g. 0.5)")
    if not any(g.metric in ROBUSTNESS_GATES for g in gates):
        raise UsageError("--min-transfer guards robustness gates; add one, e.g. --fail-under robust_accuracy=0.7")
    return value


def _vacuous(outcome: GateOutcome, verdict: dict, min_transfer: float) -> GateOutcome:
    eff = verdict["efficiency"]
    if eff is not None and eff >= min_transfer:
        detail = f"{outcome.detail}; transfer efficiency {eff:.3f} >= --min-transfer {min_transfer:g}"
        return GateOutcome(outcome.name, outcome.threshold, outcome.value, outcome.passed, detail)
    shown = "not measured" if eff is None else f"{eff:.3f}"
    measured = (
        outcome.detail.partition(": ")[2] if outcome.detail.startswith(("passed: ", "failed: ")) else outcome.detail
    )
    detail = (
        f"failed: vacuous audit, transfer efficiency {shown} < --min-transfer {min_transfer:g} "
        f"(the attacks did not carry over from the surrogate); measured {measured}"
    )
    return GateOutcome(outcome.name, outcome.threshold, outcome.value, False, detail)


def evaluate_gates(
    result: AuditResult, gates: Iterable[GateSpec], min_transfer: float | None = None
) -> tuple[GateOutcome, ...]:
    """Verdicts of ``gates`` (from :func:`parse_gates`) on ``result``, in order.

    With ``min_transfer``, robustness gates also fail on a vacuous transfer audit (module docstring).
    """
    gates = tuple(gates)
    outcomes = [evaluate_gate(result, g) for g in gates]
    if min_transfer is None:
        return tuple(outcomes)
    verdict = audit_transfer(result.conditions)
    return tuple(
        _vacuous(o, verdict, min_transfer) if g.metric in ROBUSTNESS_GATES else o for g, o in zip(gates, outcomes)
    )


# ----------------------------------------------------------------------------- the exit verdict
def skipped_items(result: AuditResult) -> list[dict]:
    """Everything a scan skipped, as dicts (``name``, ``reason``, ``kind``): unreadable images and
    data entries, then attacks, defenses, BPDA checks and detectors (``result.skipped``)."""
    items = [dict(s) for s in result.data.get("skipped", [])]
    return items + [s.to_dict() for s in result.skipped]


def exit_status(failed_gates: Iterable[str], skipped: Iterable, strict: bool) -> tuple[int, str | None]:
    """The one ``--strict`` policy of every command: ``(exit code, message for stderr)``.

    A failed gate gives 1. Under ``strict`` any skipped item (an image, an attack, a defense, a
    BPDA check, a detector) also gives 1; the command calls this after its work is finished and
    its reports are written, so the reports always exist and list what was skipped.
    """
    failed = list(failed_gates)
    if failed:
        return EXIT_GATE_FAILED, f"gate(s) failed: {', '.join(failed)}"
    items = list(skipped)
    if strict and items:
        kinds = sorted(
            {str(s.get("kind", "item") if isinstance(s, dict) else getattr(s, "kind", "item")) for s in items}
        )
        return EXIT_GATE_FAILED, f"--strict: {len(items)} item(s) skipped ({', '.join(kinds)}); see the report"
    return EXIT_OK, None
