"""The executive summary's numbers: the clean condition, the worst case under attack, the defense verdict,
the gates, and which class means "no disease".

Shared by the HTML report (:mod:`auditor.report.html`) and the console summary
(:mod:`auditor.report.console`), so both show the same figures; how they are written is
:mod:`auditor.report.numbers`.
"""

from __future__ import annotations

from typing import Any

from auditor.report.gates import attack_conditions, clean_condition
from auditor.report.numbers import _finite
from auditor.report.verdicts import defense_summaries, defense_verdict
from auditor.types import AuditResult, Condition

#: class names treated as "no disease" (no missed-disease rate)
NORMAL_NAMES = frozenset({"normal", "no finding", "no_finding", "healthy", "negative"})


def is_normal(name: str) -> bool:
    """True for the class meaning "no disease" (no missed-disease rate for it)."""
    return str(name).strip().casefold() in NORMAL_NAMES


def _acc(c: Condition | None) -> float | None:
    v = c.metrics.get("accuracy") if c is not None else None
    return v if _finite(v) else None


def summary_numbers(result: AuditResult) -> dict[str, Any]:
    """Executive-summary figures: clean, worst case under attack, the defense verdict, gates."""
    attacks = [c for c in attack_conditions(result) if _acc(c) is not None]
    worst = min(attacks, key=lambda c: _acc(c)) if attacks else None
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
