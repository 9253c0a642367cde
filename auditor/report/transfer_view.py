"""What the reports say about transfer: the per-set diagnostics table and the headline sentences.

Shared by the HTML/PDF report (:mod:`auditor.report.html`) and the console
summary, so both give the same verdict. The rule itself lives in
:mod:`auditor.transfer`.
"""

from __future__ import annotations

from typing import Any

from auditor.condition_ids import THREAT_TRANSFER
from auditor.report.gates import attack_conditions
from auditor.report.numbers import fmt_pct
from auditor.transfer import NO_TRANSFER_EFFICIENCY, STRONG_EFFICIENCY, WEAK_EFFICIENCY, audit_transfer, grade
from auditor.types import AuditResult

ADVICE = (
    "Try a stronger or an ensemble surrogate at the target's input size (xray-audit train surrogates, "
    "then --surrogate DIR), or --surrogate target (white-box) where the model converts with onnx2torch."
)


def _size(s: Any) -> str:
    return "×".join(str(int(v)) for v in s) if isinstance(s, (list, tuple)) and s else "—"


def diagnostic_rows(result: AuditResult) -> list[dict[str, Any]]:
    """One row per undefended *transfer* attack condition that carries a ``transfer`` block (white-box and
    query conditions attack the target itself: they have no transfer efficiency)."""
    rows = []
    for c in attack_conditions(result):
        d = c.extra.transfer
        if not isinstance(d, dict) or (c.threat_model or "").lower() != THREAT_TRANSFER:
            continue
        sizes = d.get("surrogate_input_size") or []
        rows.append(
            {
                "name": c.name,
                "threat_model": c.threat_model or "—",
                "surrogate_accuracy_clean": d.get("surrogate_accuracy_clean"),
                "surrogate_accuracy": d.get("surrogate_accuracy"),
                "surrogate_success_rate": d.get("surrogate_attack_success_rate"),
                "surrogate_flip_rate": d.get("surrogate_flip_rate"),
                "target_accuracy": c.metrics.get("accuracy"),
                "target_success_rate": c.extra.attack_success_rate,
                "target_flip_rate": c.extra.flip_rate,
                "efficiency": d.get("transfer_efficiency"),
                "grade": grade(d.get("transfer_efficiency")),
                "agreement": d.get("agreement_clean"),
                "surrogate_size": ", ".join(dict.fromkeys(_size(s) for s in sizes)) or "—",
                "target_size": _size(d.get("target_input_size")),
                "same_size": bool(d.get("same_input_size", True)),
            }
        )
    return rows


#: the headline's words for each grade of :func:`auditor.transfer.grade`
GRADE_WORDS = {
    "none": "The attacks did not transfer",
    "weak": "The attacks transferred weakly",
    "partial": "The attacks transferred partially",
    "strong": "The attacks transferred strongly",
}


def _cutoffs() -> str:
    return (
        f"graded: below {NO_TRANSFER_EFFICIENCY:g} none, below {WEAK_EFFICIENCY:g} weak, "
        f"below {STRONG_EFFICIENCY:g} partial, else strong"
    )


def transfer_sentence(v: dict[str, Any]) -> str:
    """The first sentence of the transfer verdict: the graded efficiency with the two success rates."""
    s_succ, t_succ, eff = v["max_surrogate_success_rate"], v["max_target_success_rate"], v["transfer_efficiency"]
    rates = (
        f"on the surrogate they fooled up to {fmt_pct(s_succ)} of the images it classified correctly, "
        f"on the target up to {fmt_pct(t_succ)} of the images it classified correctly"
    )
    if v["grade"] is None:
        return (
            f"Transfer could not be measured: {rates}, so no transfer efficiency (target success rate / "
            "surrogate success rate) is defined; transfer results remain a lower bound on the vulnerability."
        )
    text = (
        f"{GRADE_WORDS[v['grade']]} ({rates}; best transfer efficiency {eff:.2f} = target success rate / "
        f"surrogate success rate over {v['transfer_conditions']} transfer condition(s), {_cutoffs()})."
    )
    if v["weak"]:
        return (
            text + " The accuracy under attack is therefore weak evidence of robustness: it mostly shows that "
            "this surrogate is a poor proxy for the model."
        )
    return text + " Transfer results remain a lower bound on the vulnerability."


def headline(result: AuditResult) -> dict[str, Any] | None:
    """The transfer verdict of the executive summary, or None when no transfer condition has diagnostics.

    ``weak`` (grade none or weak, :mod:`auditor.transfer`), ``grade``, ``sentences`` (plain text, in
    order), ``advice`` (when weak), ``whitebox`` (the white-box bound condition) and ``efficiency``
    (the transfer-only efficiency; white-box and query conditions are reported apart).
    """
    v = audit_transfer(result.conditions)
    if not v["measured"]:
        return None
    rows = diagnostic_rows(result)
    sentences = [transfer_sentence(v)]
    agreements = [r["agreement"] for r in rows if r["agreement"] is not None]
    if agreements:
        sentences.append(f"Surrogate and target agree on {fmt_pct(min(agreements))} of the clean images.")
    mismatched = [r for r in rows if not r["same_size"]]
    if mismatched:
        r = mismatched[0]
        sentences.append(f"The surrogate works at {r['surrogate_size']} pixels, the target at {r['target_size']}.")
    wb = v["whitebox_worst"]
    if wb is not None:
        sentences.append(
            f"White-box bound: under {wb.name} (the target's own gradients) accuracy is "
            f"{fmt_pct(wb.metrics.get('accuracy'))}; white-box conditions are not transfer and have no "
            "transfer efficiency."
        )
    elif v["weak"]:
        sentences.append("No white-box bound was measured in this scan.")
    if v["query_conditions"]:
        sentences.append(
            f"{v['query_conditions']} query condition(s) attacked the target's outputs directly; they are not "
            "transfer and have no transfer efficiency."
        )
    return {
        "weak": v["weak"],
        "grade": v["grade"],
        "sentences": sentences,
        "advice": ADVICE if v["weak"] else None,
        "whitebox": wb,
        "efficiency": v["transfer_efficiency"],
    }
