"""The executive summary's defense verdict: which defense, if any, is named best, and why.

A defense is named best only when all of these hold (issue 24):

* it **qualifies** (:func:`auditor.report.qualification.qualification`): clean accuracy kept, balanced
  accuracy above chance, no class collapsed;
* it is the highest-ranked qualifying defense on the **selection half** of the patients, and its figures are
  measured on the other half (:func:`auditor.report.verdicts.patient_halves`), so the choice cannot fit the
  noise of the images it is scored on;
* it is **significantly better than no defense** at the worst case: the exact paired McNemar test on the
  evaluation images, Holm-adjusted over the qualifying defenses
  (:func:`auditor.report.defense_claim.best_defense_test`). Comparing its accuracy with the undefended worst
  case's confidence interval is not a test (both figures come from the same images), so it is not used.

Otherwise the summary names the defense that came closest and says which rule it fails.
"""

from __future__ import annotations

from typing import Any, Sequence

from auditor.report.defense_claim import best_defense_test, fmt_p
from auditor.report.defense_conditions import defense_names
from auditor.report.numbers import fmt_ci, fmt_pct
from auditor.report.qualification import COLLAPSE_FRACTION, qualification
from auditor.report.verdicts import (
    VANISHES_TEXT,
    Scorer,
    defense_figures,
    patient_halves,
    rank_key,
    undefended_worst,
)
from auditor.types import AuditResult


def defense_verdict(result: AuditResult) -> dict[str, Any] | None:
    """The executive summary's defense verdict, or None when no defense was evaluated.

    Keys: ``mode`` (``held-out`` or ``same images``), ``n_select``/``n_eval``, ``candidate``
    (figures of the highest-ranked defense on the selection images that :func:`qualification`
    admits, measured on the evaluation images; when none qualifies, the highest-ranked one: the
    one that came closest), ``baseline`` (undefended worst case there, with CI), ``claim`` (the exact
    paired test of the candidate against no defense, :func:`best_defense_test`), ``significant`` (that
    test's decision), ``qualifies`` (the candidate's qualification), ``best`` (the candidate when it
    qualifies and is significant, else None) and ``text`` (one paragraph for the summary, which names the defenses passed over and why).
    """
    names = defense_names(result)
    if not names:
        return None
    scorer = Scorer(result)
    halves = patient_halves(result.samples, scorer.seed) if scorer.has_predictions(result.conditions) else None
    sel, ev = halves if halves is not None else (None, None)
    ranked = sorted(names, key=lambda d: rank_key(defense_figures(result, d, scorer, sel)), reverse=True)
    quals = {d: qualification(result, d) for d in ranked}
    chosen = next((d for d in ranked if quals[d]["qualifies"]), ranked[0])
    # the higher-ranked defenses that were passed over; when none qualifies, every other one
    others = ranked[: ranked.index(chosen)] if quals[chosen]["qualifies"] else ranked[1:]
    passed_over = [(d, quals[d]["reasons"]) for d in others]
    candidate = defense_figures(result, chosen, scorer, ev)
    baseline = undefended_worst(result, scorer, ev)
    verdict: dict[str, Any] = {
        "mode": "held-out" if halves is not None else "same images",
        "n_select": len(sel) if sel is not None else len(result.samples) or None,
        "n_eval": len(ev) if ev is not None else len(result.samples) or None,
        "seed": scorer.seed,
        "candidate": candidate,
        "baseline": baseline,
    }
    claim = best_defense_test(result, verdict)
    significant = bool(claim is not None and claim["significant"])
    qualifies = bool(quals[chosen]["qualifies"])
    verdict.update(
        claim=claim, significant=significant, qualifies=qualifies, best=candidate if significant and qualifies else None
    )
    verdict["text"] = verdict_text(verdict, quals[chosen], passed_over)
    return verdict


def selection_text(v: dict[str, Any]) -> str:
    """How the defense was chosen, in words."""
    if v["mode"] == "held-out":
        return (
            f"chosen on {v['n_select']} images, a seeded half of the patients (seed {v['seed']}), and "
            f"measured on the other {v['n_eval']}"
        )
    return (
        f"chosen and measured on the same {v['n_eval']} images, too few to hold out half of the patients, "
        f"so the choice may flatter it"
    )


def _passed_over_text(passed_over: list[tuple[str, list[str]]], lead: str = "Ranked higher but not eligible") -> str:
    if not passed_over:
        return ""
    parts = [f"{d} ({'; '.join(r)})" for d, r in passed_over]
    return f" {lead}: {', '.join(parts)}."


def verdict_text(
    v: dict[str, Any], qual: dict[str, Any] | None = None, passed_over: Sequence[tuple[str, list[str]]] = ()
) -> str:
    """One paragraph: the best defense and its figures, or why none is named (none qualifies, the worst case
    has no CI, or no defense raised it beyond its CI); ``qual`` is the candidate's :func:`qualification`
    (None: it qualifies) and ``passed_over`` the higher-ranked defenses that did not, with their reasons."""
    c, b = v["candidate"], v["baseline"]
    skipped = list(passed_over)
    if qual is not None and not qual["qualifies"]:
        return (
            f"No best defense is named: none qualifies (a defense must keep its clean accuracy within the "
            f"allowance, its balanced accuracy above chance and every class's sensitivity above "
            f"{COLLAPSE_FRACTION:g} of its undefended value). Closest: {c['name']} ({selection_text(v)}), with "
            f"worst attacked accuracy {fmt_pct(c['robust'])}"
            + (f" ({c['robust_cond'].name})" if c["robust_cond"] is not None else "")
            + f" and clean accuracy change {c['clean_change_text']}, which fails because "
            f"{'; '.join(qual['reasons'])}." + _passed_over_text(skipped, "The others fail too")
        )
    base = (
        f"the undefended worst case there is {fmt_pct(b['accuracy'])} ({b['cond'].name}, 95% CI {fmt_ci(b['ci'])})"
        if b
        else "no undefended attack condition to compare with"
    )
    figures = (
        f"worst attacked accuracy {fmt_pct(c['robust'])}"
        + (f" ({c['robust_cond'].name})" if c["robust_cond"] is not None else "")
        + f", clean accuracy change {c['clean_change_text']}"
    )
    adaptive = (
        " These figures take the worse of the non-adaptive and the adaptive (BPDA) attack."
        if c["adaptive"]
        else " This defense was evaluated non-adaptively only, so its figures are an upper bound on real robustness."
    )
    vanish = f" For {c['name']} the {VANISHES_TEXT}." if c["benefit_vanishes"] else ""
    others = _passed_over_text(skipped)
    claim = v.get("claim")
    if v["significant"]:
        return f"Best defense: {c['name']} ({selection_text(v)}): {figures}; {base}.{adaptive}{vanish}{others}"
    if claim is None or not claim.get("measured"):
        why = claim["text"] if claim else "No paired test could be made."
        return (
            f"No best defense is named: {why[0].lower()}{why[1:]} The top-ranked defense, {c['name']} "
            f"({selection_text(v)}), has {figures}; {base}.{adaptive}{vanish}{others}"
        )
    return (
        f"No defense is shown to be better than no defense at the worst case (exact paired test, "
        f"Holm-adjusted p {fmt_p(claim['p_holm'])}). The top-ranked defense, "
        f"{c['name']} ({selection_text(v)}), has {figures}; {base}.{adaptive}{vanish}{others}"
    )
