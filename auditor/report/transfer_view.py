"""What the reports say about transfer: the per-set diagnostics table and the headline sentences.

Shared by the HTML/PDF report (:mod:`auditor.report.html`) and the console
summary, so both give the same verdict. The rule itself lives in
:mod:`auditor.transfer`.
"""

from __future__ import annotations

from typing import Any

from auditor.report.gates import attack_conditions
from auditor.report.numbers import fmt_pct
from auditor.transfer import STRONG_SURROGATE_FLIP, WEAK_TARGET_FLIP, audit_transfer
from auditor.types import AuditResult

ADVICE = (
    "Try a stronger or an ensemble surrogate at the target's input size (xray-audit train surrogates, "
    "then --surrogate DIR), or --surrogate target (white-box) where the model converts with onnx2torch."
)


def _size(s: Any) -> str:
    return "×".join(str(int(v)) for v in s) if isinstance(s, (list, tuple)) and s else "—"


def diagnostic_rows(result: AuditResult) -> list[dict[str, Any]]:
    """One row per undefended attack condition that carries a ``transfer`` block."""
    rows = []
    for c in attack_conditions(result):
        d = c.extra.get("transfer")
        if not isinstance(d, dict):
            continue
        sizes = d.get("surrogate_input_size") or []
        rows.append(
            {
                "name": c.name,
                "threat_model": c.threat_model or "—",
                "surrogate_accuracy_clean": d.get("surrogate_accuracy_clean"),
                "surrogate_accuracy": d.get("surrogate_accuracy"),
                "surrogate_flip_rate": d.get("surrogate_flip_rate"),
                "target_accuracy": c.metrics.get("accuracy"),
                "target_flip_rate": c.extra.get("flip_rate"),
                "efficiency": d.get("transfer_efficiency"),
                "agreement": d.get("agreement_clean"),
                "surrogate_size": ", ".join(dict.fromkeys(_size(s) for s in sizes)) or "—",
                "target_size": _size(d.get("target_input_size")),
                "same_size": bool(d.get("same_input_size", True)),
            }
        )
    return rows


def headline(result: AuditResult) -> dict[str, Any] | None:
    """The transfer verdict of the executive summary, or None when no transfer condition has diagnostics.

    ``weak`` (the rule of :mod:`auditor.transfer`), ``sentences`` (plain text, in
    order), ``advice`` (when weak) and ``whitebox`` (the white-box bound condition).
    """
    v = audit_transfer(result.conditions)
    if not v["measured"]:
        return None
    rows = [r for r in diagnostic_rows(result) if r["threat_model"] == "transfer"]
    s_flip, t_flip = v["max_surrogate_flip_rate"], v["max_target_flip_rate"]
    sentences = []
    if v["weak"]:
        sentences.append(
            f"The attacks did not transfer: on the surrogate they flipped up to {fmt_pct(s_flip)} of the images it "
            f"classified correctly, on the target at most {fmt_pct(t_flip)} (rule: target flip rate below "
            f"{fmt_pct(WEAK_TARGET_FLIP)} while the surrogate's is above {fmt_pct(STRONG_SURROGATE_FLIP)}). The accuracy "
            "under attack is therefore weak evidence of robustness: it mostly shows that this surrogate is a poor "
            "proxy for the model."
        )
    else:
        eff = v["efficiency"]
        sentences.append(
            f"Transfer: the attacks flipped up to {fmt_pct(s_flip)} of the correctly classified images on the surrogate "
            f"and up to {fmt_pct(t_flip)} on the target (best transfer efficiency "
            f"{'—' if eff is None else f'{eff:.2f}'}); transfer results remain a lower bound on the vulnerability."
        )
    agreements = [r["agreement"] for r in rows if r["agreement"] is not None]
    if agreements:
        sentences.append(f"Surrogate and target agree on {fmt_pct(min(agreements))} of the clean images.")
    mismatched = [r for r in rows if not r["same_size"]]
    if mismatched:
        r = mismatched[0]
        sentences.append(f"The surrogate works at {r['surrogate_size']} pixels, the target at {r['target_size']}.")
    wb = v["whitebox_worst"]
    if v["weak"]:
        if wb is not None:
            sentences.append(
                f"White-box bound: under {wb.name} (the target's own gradients) accuracy is "
                f"{fmt_pct(wb.metrics.get('accuracy'))}."
            )
        else:
            sentences.append("No white-box bound was measured in this scan.")
    return {
        "weak": v["weak"],
        "sentences": sentences,
        "advice": ADVICE if v["weak"] else None,
        "whitebox": wb,
        "efficiency": v["efficiency"],
    }
