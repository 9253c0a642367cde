"""Which defenses may be named best: the clean-accuracy allowance, chance-level balanced accuracy and
collapsing classes (the rules :func:`auditor.report.verdicts.defense_verdict` applies)."""

from __future__ import annotations

from typing import Any

from auditor.metrics import guarded_ci, wilson_interval
from auditor.report.defense_conditions import defense_clean
from auditor.report.gates import clean_condition
from auditor.report.numbers import _finite, fmt_ci, fmt_pct
from auditor.types import AuditResult, Condition

#: a class collapses under a defense when its clean sensitivity with the defense falls below this fraction of its
#: clean sensitivity without it (the floor is relative: a class the model already misses is not the defense's doing)
COLLAPSE_FRACTION = 0.5
#: tolerance of the clean-accuracy comparison (float noise of stored fractions)
_TOL = 1e-9


def max_clean_drop(result: AuditResult) -> float | None:
    """``--max-clean-drop`` as stored in ``parameters.max_clean_drop`` (a fraction in [0, 1]); None (the
    default) means the allowance is the undefended clean accuracy's 95% CI."""
    v = result.parameters.get("max_clean_drop") if isinstance(result.parameters, dict) else None
    return float(v) if _finite(v) and 0.0 <= v <= 1.0 else None


def _sensitivities(c: Condition | None) -> dict[str, float]:
    per = c.metrics.get("per_class") if c is not None else None
    out = {}
    for name, pc in (per or {}).items():
        if isinstance(pc, dict) and _finite(pc.get("sensitivity")) and (pc.get("support") or 0) > 0:
            out[name] = float(pc["sensitivity"])
    return out


def clean_allowance(result: AuditResult) -> tuple[float, str] | None:
    """The lowest clean accuracy a defense may keep and how it was set: the undefended clean accuracy minus
    ``--max-clean-drop`` when given, else the lower end of its 95% CI (bootstrap, widened to the Wilson
    interval, so an all-correct clean set is not a zero-width ``[1, 1]``); None without a clean accuracy."""
    clean = clean_condition(result)
    acc = clean.metrics.get("accuracy") if clean is not None else None
    if clean is None or not _finite(acc):
        return None
    drop = max_clean_drop(result)
    if drop is not None:
        return acc - drop, f"the undefended clean accuracy {fmt_pct(acc)} minus --max-clean-drop {fmt_pct(drop)}"
    n = int(clean.metrics.get("n") or 0)
    ci = clean.metrics.get("accuracy_ci")
    ci = list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(v) for v in ci) else None
    ci = guarded_ci(ci, acc, n) if ci is not None else wilson_interval(acc * n, n)
    if ci is None:
        return None
    return ci[0], f"the lower end of the undefended clean accuracy's 95% CI ({fmt_ci(ci)})"


def qualification(result: AuditResult, defense: str) -> dict[str, Any]:
    """Whether ``defense`` may be named best, from its clean condition on all images (stored metrics).

    It qualifies when (1) its clean accuracy is at least :func:`clean_allowance`, (2) its clean balanced
    accuracy (mean per-class sensitivity over the classes with images) is above chance (1 / number of those
    classes) and (3) no class collapses: each class keeps at least :data:`COLLAPSE_FRACTION` of its
    undefended clean sensitivity. Returns ``qualifies`` and ``reasons`` (one phrase per failed rule).
    """
    dclean = defense_clean(result, defense)
    if dclean is None or not _finite(dclean.metrics.get("accuracy")):
        return {"qualifies": False, "reasons": ["its clean accuracy was not measured"]}
    reasons = []
    acc = float(dclean.metrics["accuracy"])
    allowance = clean_allowance(result)
    if allowance is not None and acc < allowance[0] - _TOL:
        reasons.append(f"its clean accuracy {fmt_pct(acc)} is below {allowance[1]}")
    sens = _sensitivities(dclean)
    if sens:
        balanced, chance = sum(sens.values()) / len(sens), 1.0 / len(sens)
        if balanced <= chance + _TOL:
            reasons.append(f"its clean balanced accuracy {fmt_pct(balanced)} is not above chance ({fmt_pct(chance)})")
    else:
        reasons.append("its clean per-class sensitivity was not measured")
    before = _sensitivities(clean_condition(result))
    for name, s0 in before.items():
        s1 = sens.get(name)
        if s1 is not None and s1 < COLLAPSE_FRACTION * s0 - _TOL:
            reasons.append(
                f"class {name} collapses (clean sensitivity {fmt_pct(s1)} with it, {fmt_pct(s0)} without; "
                f"floor {COLLAPSE_FRACTION:g} of the undefended value)"
            )
    return {"qualifies": not reasons, "reasons": reasons}
