"""The numbers of a report and how they are written: formatters, the normal class, the executive summary.

Shared by the HTML report (:mod:`auditor.report.html`) and the console summary
(:mod:`auditor.report.console`), so both show the same figures in the same form.
"""

from __future__ import annotations

import json
import math
from typing import Any

from auditor.report.gates import attack_conditions
from auditor.report.verdicts import defense_summaries, defense_verdict
from auditor.types import AuditResult, Condition

#: class names treated as "no disease" (no missed-disease rate)
NORMAL_NAMES = frozenset({"normal", "no finding", "no_finding", "healthy", "negative"})


# --------------------------------------------------------------------------- formatting


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_pct(v: Any, digits: int = 1, signed: bool = False, points: bool = False) -> str:
    """0.853 -> ``85.3%`` (``points``: ``85.3 pp``); None -> ``—``."""
    if not _finite(v):
        return "—"
    text = f"{100 * v:+.{digits}f}" if signed else f"{100 * v:.{digits}f}"
    return text + (" pp" if points else "%")


def fmt_ci(ci: Any, digits: int = 1) -> str:
    """[0.7, 0.95] -> ``70.0–95.0%``; missing -> ``—``."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(_finite(v) for v in ci):
        return "—"
    return f"{100 * ci[0]:.{digits}f}–{100 * ci[1]:.{digits}f}%"


def fmt_num(v: Any, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals; ints stay ints; None -> ``—``."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if not _finite(v):
        return "—"
    return f"{v:.{digits}f}"


def fmt_eps(eps: Any) -> str:
    """8/255 (as a float in [0, 1]) -> ``8/255``; 2.5/255 -> ``2.5/255``."""
    if not _finite(eps):
        return "—"
    v = eps * 255
    if abs(v - round(v)) < 1e-6:
        return f"{int(round(v))}/255"
    return f"{v:.2f}".rstrip("0").rstrip(".") + "/255"


def fmt_value(v: Any) -> str:
    """Any parameter/environment value as one line of text."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float, str)):
        return str(v)
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float, str)) and not isinstance(x, bool) for x in v):
        return ", ".join(str(x) for x in v) if v else "—"
    return json.dumps(v, sort_keys=True, default=str)


# --------------------------------------------------------------------------- analysis


def is_normal(name: str) -> bool:
    """True for the class meaning "no disease" (no missed-disease rate for it)."""
    return str(name).strip().casefold() in NORMAL_NAMES


def clean_condition(result: AuditResult) -> Condition | None:
    """The undefended clean condition."""
    return result.condition("clean") or next((c for c in result.conditions if c.kind == "clean"), None)


def _acc(c: Condition | None) -> float | None:
    v = c.metrics.get("accuracy") if c is not None else None
    return v if _finite(v) else None


def summary_numbers(result: AuditResult) -> dict[str, Any]:
    """Executive-summary figures: clean, worst case under attack, the defense verdict, gates."""
    attacks = [c for c in attack_conditions(result) if _acc(c) is not None]
    worst = min(attacks, key=lambda c: _acc(c)) if attacks else None
    verdict = defense_verdict(result)
    failed = [g for g in result.gates if not g.passed]
    return {"clean": clean_condition(result), "worst": worst, "defense_verdict": verdict,
            "best_defense": verdict["best"] if verdict else None,
            "defense_candidate": verdict["candidate"] if verdict else None,
            "defenses": defense_summaries(result), "gates_total": len(result.gates), "gates_failed": len(failed)}
