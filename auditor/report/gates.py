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

Every robustness gate (``robust_accuracy``, ``robust_sensitivity:<class>``, ``max_attack_success_rate``,
``max_flip_rate``) is judged on the worst undefended attack condition over **every threat model the
scan ran** (transfer, white-box, query), and names that condition and its threat model.

**Not measured.** A gate whose value cannot be measured on the result (no attack conditions, a
class without images, a class the model does not have, or a missing, NaN or infinite value in any
condition it looks at) fails with the detail ``not measured``: a gate never passes on NaN, and a
condition without a value is never skipped (that would let the next-worst condition decide).

**Point and CI.** Each gate keeps the 95% CI of the value it decided on. A condition is conclusively
on one side when its whole CI is (``>=`` gates: lower bound at or above the threshold passes, upper
bound below it fails; ``<=`` gates mirrored); a gate is ``failed`` when some condition fails
conclusively, ``passed`` when all pass conclusively, else ``inconclusive`` (a condition without a CI
counts as inconclusive). ``--gate-on point`` (the default) decides pass/fail on the point estimate
and shows the status beside it; ``--gate-on ci`` also fails every inconclusive gate. The default is
``point`` because the exit code of an existing pipeline should keep meaning "the measured value meets
the threshold", and because with the few hundred images of a typical audit a ``ci`` rule fails almost
any threshold near the model's true value whatever the model; the inconclusive status is printed in
every output, and ``--gate-on ci`` is the rule to use where a threshold must be demonstrated.

**Transfer-only audits.** A transfer attack's worst case is a lower bound on the vulnerability (an
upper bound on robust accuracy). When the scan ran attacks but no white-box and no query attack, every
robustness gate fails, whatever its value, with one line saying why and what to add (``--attacks
square``, or ``--surrogate target --attacks apgd``), unless ``--allow-transfer-only`` accepts the
transfer bound (stored in ``extras.gate_evaluation`` and stated by the report).

``--min-transfer X`` also guards the robustness gates against a vacuous transfer audit: each of
them fails, whatever its value, when the audit transfer efficiency
(:func:`auditor.transfer.audit_transfer`: the best target flip rate / surrogate flip rate over the
transfer conditions; white-box conditions count as 1) is below ``X`` or cannot be measured.

A guard (``--gate-on ci``, transfer-only, ``--min-transfer``) that turns a passing point value into a
failure rewrites the detail as ``failed: <reasons>; measured <value>``; every reason is also kept in
the gate's record (``extras.gate_evaluation.records`` of results.json: point, CI, status, condition,
threat model, reasons), which the console, JUnit and HTML/PDF outputs show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from auditor.attack_specs import strong_attack_advice
from auditor.condition_ids import THREAT_MODELS, THREAT_QUERY, THREAT_WHITE_BOX
from auditor.report.gate_specs import (
    DEFAULT_GATE_ON,
    FAILED,
    INCONCLUSIVE,
    NOT_MEASURED,
    PASSED,
    ROBUSTNESS_GATES,
    GatePolicy,
    GateSpec,
)
from auditor.transfer import WHITE_BOX, audit_transfer
from auditor.types import AuditResult, Condition, GateOutcome

#: threat models that bound the vulnerability from the attacker's side (not a transfer lower bound)
STRONG_THREATS = (THREAT_WHITE_BOX, THREAT_QUERY)
#: what a transfer-only audit should add
ADVICE_FLAGS = strong_attack_advice()


# --------------------------------------------------------------------------- measurement


def attack_conditions(result: AuditResult) -> list[Condition]:
    """Attack conditions on undefended inputs (the worst-case pool of the robust gates)."""
    return [c for c in result.conditions if c.kind == "attack" and not c.defense]


def clean_condition(result: AuditResult) -> Condition | None:
    """The undefended clean condition."""
    return result.condition("clean") or next((c for c in result.conditions if c.kind == "clean"), None)


def threat_of(c: Condition) -> str | None:
    """The condition's threat model, spelled as :data:`auditor.condition_ids.THREAT_MODELS` (None: not recorded)."""
    t = (c.threat_model or "").strip().lower()
    if not t:
        return None
    return THREAT_WHITE_BOX if t in WHITE_BOX else t


def threat_models_run(result: AuditResult) -> list[str]:
    """The threat models of the undefended attack conditions, in :data:`THREAT_MODELS` order (others after,
    ``not recorded`` last)."""
    seen = {threat_of(c) or "not recorded" for c in attack_conditions(result)}
    known = [t for t in THREAT_MODELS if t in seen]
    return known + sorted(seen - set(known) - {"not recorded"}) + (["not recorded"] if "not recorded" in seen else [])


def transfer_only(result: AuditResult) -> bool:
    """True when the scan attacked the model but ran no white-box and no query attack (undefended)."""
    attacks = attack_conditions(result)
    return bool(attacks) and not any(threat_of(c) in STRONG_THREATS for c in attacks)


def _class_key(cond: Condition, cls: str) -> str | None:
    per_class = cond.metrics.get("per_class") or {}
    if cls in per_class:
        return cls
    folded = {k.casefold(): k for k in per_class}
    return folded.get(cls.casefold())


def _number(value) -> float | None:
    """``value`` as a float (NaN and infinities kept, so the caller can refuse them); None when absent."""
    if value is None or isinstance(value, bool):
        return None if value is None else float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _ci(value) -> tuple[float, float] | None:
    """A stored ``[low, high]`` interval of finite numbers, else None."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _number(value[0]), _number(value[1])
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi) and lo <= hi:
            return lo, hi
    return None


@dataclass(frozen=True)
class _Entry:
    """One condition a gate looks at: its value and 95% CI."""

    cond: Condition
    value: float
    ci: tuple[float, float] | None


@dataclass(frozen=True)
class Measured:
    """What a gate measured: the deciding (worst) value, where, and its 95% CI.

    ``value`` is None when the gate cannot be measured (``where`` then starts with ``not measured``);
    ``entries`` are every condition the gate looked at.
    """

    value: float | None
    where: str
    entries: tuple[_Entry, ...] = ()
    condition: Condition | None = None

    @property
    def ci(self) -> tuple[float, float] | None:
        """The 95% CI of the deciding condition."""
        return next((e.ci for e in self.entries if e.cond is self.condition), None)


def _unmeasured(detail: str) -> Measured:
    return Measured(None, detail)


def _collect(conds: list[Condition], get: Callable[[Condition], tuple], label: str) -> list[_Entry] | Measured:
    """The finite value and CI of every condition, or the reason the gate is not measured.

    A missing value on any condition is "not measured", never skipped: skipping it would let the
    next-worst condition decide the gate (issue 24).
    """
    out = []
    for c in conds:
        raw, ci = get(c)
        v = _number(raw)
        if v is None:
            return _unmeasured(f"{NOT_MEASURED}: {c.name} has no {label} value")
        if not math.isfinite(v):
            return _unmeasured(f"{NOT_MEASURED}: {c.name} value is not a finite number")
        out.append(_Entry(c, v, _ci(ci)))
    return out


def _single(cond: Condition | None, get: Callable[[Condition], tuple], label: str) -> Measured:
    if cond is None:
        return _unmeasured(NOT_MEASURED)
    raw, ci = get(cond)
    v = _number(raw)
    if v is None:
        return _unmeasured(NOT_MEASURED)
    if not math.isfinite(v):
        return _unmeasured(f"{NOT_MEASURED}: clean value is {v} (not a finite number)")
    e = _Entry(cond, v, _ci(ci))
    return Measured(v, "clean", (e,), cond)


def _extreme(conds: list[Condition], get: Callable[[Condition], tuple], worst_is_min: bool, label: str) -> Measured:
    if not conds:
        return _unmeasured(NOT_MEASURED)
    entries = _collect(conds, get, label)
    if isinstance(entries, Measured):
        return entries
    pick = min if worst_is_min else max
    worst = pick(entries, key=lambda e: e.value)  # the first of equal values, in condition order
    return Measured(worst.value, f"worst: {worst.cond.name}", tuple(entries), worst.cond)


def measure(result: AuditResult, gate: GateSpec) -> Measured:
    """The value ``gate`` is judged on, with every condition it looked at (see the module docstring)."""
    clean = clean_condition(result)
    attacks = attack_conditions(result)
    if gate.metric in ("accuracy", "macro_f1"):
        key = gate.metric
        return _single(clean, lambda c: (c.metrics.get(key), c.metrics.get(f"{key}_ci")), key)
    if gate.metric == "robust_accuracy":
        return _extreme(attacks, lambda c: (c.metrics.get("accuracy"), c.metrics.get("accuracy_ci")), True, "accuracy")
    if gate.metric in ("max_attack_success_rate", "max_flip_rate"):
        key = gate.metric[len("max_") :]
        return _extreme(attacks, lambda c: c.extra.rate_and_ci(key), False, key.replace("_", " "))
    assert gate.cls is not None
    cls = gate.cls
    if clean is None or _class_key(clean, cls) is None:
        known = ", ".join(clean.metrics.get("labels") or []) if clean else ""
        return _unmeasured(
            f"{NOT_MEASURED}: no class {gate.cls!r} in the results" + (f" (classes: {known})" if known else "")
        )

    def sensitivity(c: Condition) -> tuple:
        key = _class_key(c, cls)
        pc = (c.metrics["per_class"][key] or {}) if key else {}
        return pc.get("sensitivity"), pc.get("sensitivity_ci")

    if gate.metric == "sensitivity":
        return _single(clean, sensitivity, "sensitivity")
    if gate.metric == "robust_sensitivity":
        return _extreme(attacks, sensitivity, True, f"{gate.cls} sensitivity")
    raise AssertionError(f"unhandled gate {gate.metric}")  # pragma: no cover - parse_gates rejects it


# --------------------------------------------------------------------------- verdicts


def _judge(value: float, ci: tuple[float, float] | None, gate: GateSpec) -> str:
    """``passed``/``failed`` when the whole 95% CI is on one side of the threshold, else ``inconclusive``."""
    thr = gate.threshold
    if ci is None:
        return INCONCLUSIVE
    lo, hi = ci
    if gate.upper_bound:
        return PASSED if hi <= thr else (FAILED if lo > thr else INCONCLUSIVE)
    return PASSED if lo >= thr else (FAILED if hi < thr else INCONCLUSIVE)


def _status(m: Measured, gate: GateSpec, point_pass: bool) -> tuple[str, list[str]]:
    """The statistical status of a measured gate and the conditions whose CI holds the threshold.

    Failed when some condition fails beyond its CI; passed when every condition passes beyond its CI;
    otherwise inconclusive (a condition without a CI counts as inconclusive). A status that contradicts
    the point verdict (a CI that excludes its own point estimate) is inconclusive.
    """
    verdicts = [(e, _judge(e.value, e.ci, gate)) for e in m.entries]
    unsure = [e.cond.name for e, v in verdicts if v == INCONCLUSIVE]
    if any(v == FAILED for _, v in verdicts):
        status = FAILED
    elif unsure:
        status = INCONCLUSIVE
    else:
        status = PASSED
    if (status == PASSED) != point_pass:
        status = INCONCLUSIVE
    return status, unsure


def transfer_only_reason(result: AuditResult) -> str:
    """Why a robustness gate fails on a transfer-only audit, and what to add (one line)."""
    tms = ", ".join(threat_models_run(result)) or "none"
    return (
        f"transfer-only audit (threat models run: {tms}): its worst case is only a lower bound on the "
        f"vulnerability (an upper bound on robust accuracy); add {ADVICE_FLAGS}, or pass --allow-transfer-only"
    )


def _record(
    result: AuditResult, gate: GateSpec, policy: GatePolicy, transfer: dict | None
) -> tuple[GateOutcome, dict[str, Any]]:
    """The verdict of one gate and its full record (``extras.gate_evaluation.records``)."""
    m = measure(result, gate)
    relation = "<=" if gate.upper_bound else ">="
    cond = m.condition
    record: dict[str, Any] = {
        "name": gate.name,
        "threshold": gate.threshold,
        "relation": relation,
        "value": m.value,
        "ci": list(m.ci) if m.ci else None,
        "condition": cond.name if cond is not None else None,
        "threat_model": threat_of(cond) if cond is not None and cond.kind == "attack" else None,
        "status": NOT_MEASURED,
        "inconclusive_conditions": [],
        "reasons": [],
        "point_passed": None,
        "passed": False,
        "detail": m.where,
    }
    robustness = gate.metric in ROBUSTNESS_GATES
    reasons: list[str] = []
    suffix = ""
    if m.value is None:
        passed, detail = False, m.where
    else:
        point_pass = m.value <= gate.threshold if gate.upper_bound else m.value >= gate.threshold
        status, unsure = _status(m, gate, point_pass)
        record.update(point_passed=point_pass, status=status, inconclusive_conditions=unsure)
        passed = point_pass
        if policy.gate_on == "ci" and status != PASSED:
            passed = False
            if status == INCONCLUSIVE:
                where = unsure[0] if unsure else (cond.name if cond else "the value")
                reasons.append(f"inconclusive under --gate-on ci ({where}: the 95% CI holds the threshold)")
        detail = (
            f"{'passed' if point_pass else 'failed'}: {m.value:.4f} (required {relation} {gate.threshold:g}; {m.where})"
        )
    if robustness and policy.min_transfer is not None and transfer is not None:
        eff = transfer["efficiency"]
        if eff is not None and eff >= policy.min_transfer:
            suffix = f"; transfer efficiency {eff:.3f} >= --min-transfer {policy.min_transfer:g}"
        else:
            shown = NOT_MEASURED if eff is None else f"{eff:.3f}"
            reasons.append(
                f"vacuous audit, transfer efficiency {shown} < --min-transfer {policy.min_transfer:g} "
                f"(the attacks did not carry over from the surrogate)"
            )
    if robustness and not policy.allow_transfer_only and transfer_only(result):
        reasons.append(transfer_only_reason(result))
    if reasons:
        passed = False
    if m.value is not None and reasons and record["point_passed"]:
        measured = detail.partition(": ")[2]
        detail = f"failed: {'; '.join(reasons)}; measured {measured}"
    detail += suffix
    record.update(passed=passed, reasons=reasons, detail=detail)
    return GateOutcome(gate.name, gate.threshold, m.value, passed, detail), record


def evaluate(
    result: AuditResult, gates: Iterable[GateSpec], policy: GatePolicy | None = None
) -> tuple[tuple[GateOutcome, ...], dict[str, Any]]:
    """Verdicts of ``gates`` on ``result`` and the ``extras.gate_evaluation`` block (policy and records)."""
    policy = policy or GatePolicy()
    gates = tuple(gates)
    transfer = audit_transfer(result.conditions) if policy.min_transfer is not None else None
    pairs = [_record(result, g, policy, transfer) for g in gates]
    block = {**policy.to_dict(), "transfer_only": transfer_only(result), "records": [r for _, r in pairs]}
    return tuple(o for o, _ in pairs), block


def evaluate_gate(result: AuditResult, gate: GateSpec, policy: GatePolicy | None = None) -> GateOutcome:
    """The verdict of one gate on ``result``."""
    return evaluate(result, (gate,), policy)[0][0]


def evaluate_gates(
    result: AuditResult,
    gates: Iterable[GateSpec],
    min_transfer: float | None = None,
    *,
    allow_transfer_only: bool = False,
    gate_on: str = DEFAULT_GATE_ON,
) -> tuple[GateOutcome, ...]:
    """Verdicts of ``gates`` (from :func:`parse_gates`) on ``result``, in order (module docstring)."""
    policy = GatePolicy(gate_on=gate_on, allow_transfer_only=allow_transfer_only, min_transfer=min_transfer)
    return evaluate(result, gates, policy)[0]


def apply_gates(result: AuditResult, gates: Iterable[GateSpec], policy: GatePolicy | None = None) -> AuditResult:
    """``result`` with the verdicts of ``gates`` and ``extras.gate_evaluation`` (what ``scan``/``report`` write)."""
    outcomes, block = evaluate(result, gates, policy)
    return replace(result, gates=outcomes, extras={**result.extras, "gate_evaluation": block})
