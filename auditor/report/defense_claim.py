"""Is the best defense better than no defense? An exact paired test with a Holm correction (issue 24 item 6).

The defense verdict (:func:`auditor.report.verdicts.defense_verdict`) picks a candidate and compares its worst
attacked accuracy with the undefended worst case's 95% CI. That is not a test of the claim "the defense helps":
both figures are measured on the same images. This module tests it.

* **Test.** On the images the verdict reports on (the evaluation half, or all images when it could not hold
  half out), per image: correct under the defense's worst attacked condition there (the worse of non-adaptive
  and adaptive) versus correct under the undefended worst attack condition there. The exact McNemar test
  (:func:`auditor.metrics.mcnemar_exact`; McNemar, Psychometrika 1947) is the two-sided binomial test at 1/2 on
  the images where the two disagree.
* **Family.** Every defense that qualifies (:func:`auditor.report.qualification.qualification`), each compared
  with no defense at that worst case: the candidate is the best of them, so its test is one of ``m`` the
  selection could have made. The p-values are Holm-adjusted over those ``m`` (Holm, Scand. J. Statist. 1979),
  which keeps the family-wise error rate at :data:`ALPHA` whichever defense is chosen (conservative when the
  selection was made on the other half of the patients). When no defense qualifies, the family is the
  candidate alone.
* **Decision.** The candidate is *significantly better than no defense* when it is right on more of the
  discordant images than no defense and its Holm-adjusted p-value is at most :data:`ALPHA`; otherwise the
  report says its difference from no defense is not significant, and it is not called an improvement.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.metrics import holm, mcnemar_exact
from auditor.report.defense_conditions import defense_names
from auditor.report.qualification import qualification
from auditor.report.verdicts import Scorer, defense_figures, patient_halves, undefended_worst
from auditor.types import AuditResult

#: family-wise significance level of the best-defense claim
ALPHA = 0.05


def fmt_p(p: float) -> str:
    """``= 0.18`` or ``< 0.001``."""
    return f"= {p:.2g}" if p >= 0.001 else "< 0.001"


def best_defense_test(result: AuditResult, verdict: dict[str, Any] | None) -> dict[str, Any] | None:
    """The exact paired test of the verdict's candidate against no defense, Holm-adjusted over its family.

    Returns None without a verdict; ``measured`` False (with ``text``) without per-image predictions or an
    undefended attack condition. Otherwise: ``defense`` (the candidate), ``rows`` (one per defense of the
    family: ``defense``, ``condition``, ``defense_only``/``undefended_only`` discordant images, ``p`` and
    ``p_holm``), ``m``, ``alpha``, ``baseline_condition``, ``n``, ``p``/``p_holm`` and ``significant`` of the
    candidate, and ``text`` (one sentence for the summary).
    """
    if verdict is None:
        return None
    scorer = Scorer(result)
    name = verdict["candidate"]["name"]
    if not scorer.has_predictions(result.conditions):
        return {
            "measured": False,
            "defense": name,
            "significant": False,
            "text": f"No paired test of {name} against no defense: the results carry no per-image predictions.",
        }
    halves = patient_halves(result.samples, scorer.seed)
    idx = halves[1] if halves is not None else np.arange(scorer.n)
    baseline = undefended_worst(result, scorer, idx)
    cand = defense_figures(result, name, scorer, idx)
    if baseline is None or cand["robust_cond"] is None:
        return {
            "measured": False,
            "defense": name,
            "significant": False,
            "text": f"No paired test of {name} against no defense: no attacked condition to pair it with.",
        }
    qualifying = claim_family(result)
    family = [name] + [d for d in qualifying if d != name] if name in qualifying else [name]
    base_ok = scorer.correct(baseline["cond"], idx)
    rows = []
    for d in family:
        fig = cand if d == name else defense_figures(result, d, scorer, idx)
        if fig["robust_cond"] is None:
            continue
        t = mcnemar_exact(scorer.correct(fig["robust_cond"], idx), base_ok)
        rows.append(
            {
                "defense": d,
                "condition": fig["robust_cond"].name,
                "defense_only": t["a_only"],
                "undefended_only": t["b_only"],
                "p": t["p"],
            }
        )
    for r, p_adj in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = p_adj
    top = rows[0]
    significant = top["defense_only"] > top["undefended_only"] and top["p_holm"] <= ALPHA
    out = {
        "measured": True,
        "defense": name,
        "baseline_condition": baseline["cond"].name,
        "n": int(len(idx)),
        "rows": rows,
        "m": len(rows),
        "alpha": ALPHA,
        "p": top["p"],
        "p_holm": top["p_holm"],
        "significant": bool(significant),
    }
    out["text"] = claim_text(out)
    return out


def claim_family(result: AuditResult) -> list[str]:
    """The defenses of the test's family: those that qualify, in the order the results list them."""
    return [d for d in defense_names(result) if qualification(result, d)["qualifies"]]


def claim_text(t: dict[str, Any]) -> str:
    """The test in words: whether the candidate is significantly better than no defense, with the adjusted p."""
    top = t["rows"][0]
    family = (
        f"Holm-adjusted over the {t['m']} qualifying defenses, each compared with no defense"
        if t["m"] > 1
        else "Holm-adjusted over a family of one"
    )
    counts = (
        f"exact McNemar test on the same {t['n']} images: {top['defense_only']} right only with {t['defense']} "
        f"({top['condition']}), {top['undefended_only']} right only without it ({t['baseline_condition']}); "
        f"p {fmt_p(top['p'])}, {family}: p {fmt_p(top['p_holm'])}"
    )
    if t["significant"]:
        return f"{t['defense']} is significantly better than no defense at the worst case ({counts})."
    return (
        f"{t['defense']} is not significantly better than no defense at the worst case ({counts}; "
        f"family-wise level {t['alpha']:g}), so it is not shown to be an improvement."
    )
