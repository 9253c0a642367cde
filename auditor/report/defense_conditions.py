"""Which conditions of a result belong to a defense: its clean and attacked conditions, adaptive (BPDA) or
not, and the one that counts against each attack (used by :mod:`auditor.report.verdicts`)."""

from __future__ import annotations

from auditor.condition_ids import ConditionId
from auditor.report.numbers import _finite
from auditor.types import AuditResult, Condition


def condition_id(c: Condition) -> ConditionId:
    """The identifier of a condition of results.json, from its name, ``defense`` and ``extra.adaptive``."""
    return ConditionId.parse(c.name, c.defense, bool(c.extra.adaptive))


def is_adaptive(c: Condition) -> bool:
    """True for an adaptive (BPDA) condition of a defense."""
    return condition_id(c).adaptive


def attacked_base(c: Condition) -> str:
    """The undefended attack condition a defended one replays: ``jpeg:75/usmm@8`` and
    ``usmm@8+bpda:jpeg:75`` -> ``usmm@8``."""
    return condition_id(c).base


def defense_names(result: AuditResult) -> list[str]:
    """Defenses of the result, in order of first appearance."""
    return list(dict.fromkeys(c.defense for c in result.conditions if c.defense))


def defense_clean(result: AuditResult, defense: str) -> Condition | None:
    """The defended clean condition (``jpeg:75/clean``)."""
    return next(
        (c for c in result.conditions if c.defense == defense and not is_adaptive(c) and attacked_base(c) == "clean"),
        None,
    )


def defense_attacked(result: AuditResult, defense: str) -> list[Condition]:
    """Every attacked condition of a defense: non-adaptive and adaptive (BPDA)."""
    out = []
    for c in result.conditions:
        if c.defense != defense:
            continue
        base = result.condition(attacked_base(c))
        if base is not None and base.kind == "attack" and not base.defense:
            out.append(c)
    return out


def defended_on(result: AuditResult, defense: str, base_name: str) -> Condition | None:
    """The condition that counts for ``defense`` against ``base_name``: the worse (lower accuracy) of the
    non-adaptive and the adaptive one."""
    conds = [
        c
        for c in result.conditions
        if c.defense == defense and attacked_base(c) == base_name and _finite(c.metrics.get("accuracy"))
    ]
    return min(conds, key=lambda c: c.metrics["accuracy"]) if conds else None


def benefit_vanishes(result: AuditResult, defense: str) -> bool:
    """True when an adaptive condition of ``defense`` flags ``benefit_vanishes``."""
    return any(is_adaptive(c) and c.extra.benefit_vanishes for c in defense_attacked(result, defense))
