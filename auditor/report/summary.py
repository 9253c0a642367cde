"""The executive summary's numbers: the clean condition, the worst case under attack, the defense verdict,
the gates, and which class means "no disease".

Shared by the HTML report (:mod:`auditor.report.html`) and the console summary
(:mod:`auditor.report.console`), so both show the same figures; how they are written is
:mod:`auditor.report.numbers`.
"""

from __future__ import annotations

from typing import Any

from auditor.report.defense_verdict import defense_verdict
from auditor.report.gate_view import gate_policy
from auditor.report.gates import (
    ADVICE_FLAGS,
    attack_conditions,
    clean_condition,
    threat_models_run,
    threat_of,
    transfer_only,
)
from auditor.report.numbers import _finite, fmt_eps, fmt_pct
from auditor.report.verdicts import defense_summaries
from auditor.strength import MASKING_TEXT, strength_checks
from auditor.types import AuditResult, Condition

#: class names treated as "no disease" (no missed-disease rate)
NORMAL_NAMES = frozenset({"normal", "no finding", "no_finding", "healthy", "negative"})


def is_normal(name: str) -> bool:
    """True for the class meaning "no disease" (no missed-disease rate for it)."""
    return str(name).strip().casefold() in NORMAL_NAMES


def _acc(c: Condition | None) -> float | None:
    v = c.metrics.get("accuracy") if c is not None else None
    return v if _finite(v) else None


def _where(c: Condition) -> str:
    eps = f" at ε = {fmt_eps(c.epsilon)}" if _finite(c.epsilon) else ""
    return f"{c.name}, {threat_of(c) or 'threat model not recorded'}{eps}"


def worst_case(result: AuditResult, checks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The headline's worst case under attack over every threat model the scan ran, and what qualifies it.

    Keys: ``condition`` (the undefended attack condition with the lowest accuracy; the first of equal
    ones), ``threat_model``, ``threat_models`` (run, in order), ``per_threat`` (threat model -> its
    worst condition), ``unmeasured`` (attack conditions whose accuracy is missing or not finite: the
    worst case is then not determined, never silently the next-worst), ``transfer_only``,
    ``allow_transfer_only`` (stated by ``--allow-transfer-only``), ``masking`` (attack-strength
    violations: the figure may overstate robustness), and ``sentences`` (plain text, in order).
    ``checks`` are the :func:`auditor.strength.strength_checks` of ``result`` (computed when None).
    """
    attacks = attack_conditions(result)
    accs = [(c, a) for c in attacks if (a := _acc(c)) is not None]
    unmeasured = [c.name for c in attacks if _acc(c) is None]
    worst = min(accs, key=lambda ca: ca[1])[0] if accs else None
    per_threat: dict[str, Condition] = {}
    lowest: dict[str, float] = {}
    for c, a in accs:
        key = threat_of(c) or "not recorded"
        if key not in per_threat or a < lowest[key]:
            per_threat[key], lowest[key] = c, a
    only = transfer_only(result)
    allowed = gate_policy(result)["allow_transfer_only"]
    checks = strength_checks(result) if checks is None else checks
    masking = [t for c in checks.get("checks", {}).values() for t in (v.get("text") for v in c["violations"])]
    sentences = []
    if worst is not None:
        sentences.append(f"Worst case under attack: {fmt_pct(_acc(worst))} ({_where(worst)}).")
    if len(per_threat) > 1:
        sentences.append(
            "Worst per threat model: "
            + "; ".join(f"{t} {fmt_pct(_acc(c))} ({c.name})" for t, c in per_threat.items())
            + "."
        )
    if unmeasured:
        sentences.append(
            f"Not measured: the accuracy of {', '.join(unmeasured)} is missing or not a finite number, so the "
            "worst case is not determined; the figure above is the worst of the measured conditions only."
        )
    if only:
        sentences.append(
            "Only transfer attacks ran: this figure is only a lower bound on the model's vulnerability (an upper "
            f"bound on its robust accuracy). For a bound from the attacker's side add {ADVICE_FLAGS}."
        )
        if allowed:
            sentences.append("The robustness gates accepted this transfer-only bound (--allow-transfer-only).")
    if masking:
        sentences.append(
            f"{MASKING_TEXT.capitalize()}: {len(masking)} attack-strength check(s) failed, so the worst case may "
            "overstate robustness (see Attack-strength checks)."
        )
    return {
        "condition": worst,
        "threat_model": threat_of(worst) if worst is not None else None,
        "threat_models": threat_models_run(result),
        "per_threat": per_threat,
        "unmeasured": unmeasured,
        "transfer_only": only,
        "allow_transfer_only": allowed,
        "masking": masking,
        "sentences": sentences,
    }


def summary_numbers(result: AuditResult) -> dict[str, Any]:
    """Executive-summary figures: clean, worst case under attack (:func:`worst_case`), the defense verdict,
    gates."""
    accs = [(c, a) for c in attack_conditions(result) if (a := _acc(c)) is not None]
    worst = min(accs, key=lambda ca: ca[1])[0] if accs else None
    verdict = defense_verdict(result)
    failed = [g for g in result.gates if not g.passed]
    return {
        "clean": clean_condition(result),
        "worst": worst,
        "defense_verdict": verdict,
        "best_defense": verdict["best"] if verdict else None,
        "defense_candidate": verdict["candidate"] if verdict else None,
        "defenses": defense_summaries(result),
        "gates_total": len(result.gates),
        "gates_failed": len(failed),
    }
