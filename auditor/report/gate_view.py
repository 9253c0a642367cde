"""What the reports show of the gates (rows, the condition a gate was decided on, stderr notes) and the
one exit verdict of every command (``--strict``)."""

from __future__ import annotations

from typing import Any, Iterable

from auditor.errors import EXIT_GATE_FAILED, EXIT_OK
from auditor.report.gate_specs import (
    DEFAULT_GATE_ON,
    FAILED,
    GATE_ON,
    INCONCLUSIVE,
    NOT_MEASURED,
    PASSED,
    ROBUSTNESS_GATES,
    STATUSES,
    UNSURE,
)
from auditor.report.gates import _ci, transfer_only_reason
from auditor.strength import MASKING_TEXT, strength_checks
from auditor.types import AuditResult


def gate_policy(result: AuditResult) -> dict[str, Any]:
    """The stored gate policy (``extras.gate_evaluation``); the defaults for an older results.json."""
    block = result.extras.get("gate_evaluation") if isinstance(result.extras, dict) else None
    block = block if isinstance(block, dict) else {}
    gate_on = block.get("gate_on") if block.get("gate_on") in GATE_ON else DEFAULT_GATE_ON
    return {
        "gate_on": gate_on,
        "allow_transfer_only": block.get("allow_transfer_only") is True,
        "recorded": bool(block),
    }


def _text(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _list(v: Any) -> list:
    """``v`` when it is a list, else empty (results.json is untrusted input)."""
    return v if isinstance(v, list) else []


def gate_rows(result: AuditResult) -> list[dict[str, Any]]:
    """One row per stored gate for the renderers: the verdict joined with its record (when results.json
    holds one for the same gate, threshold and verdict); an older file's gates get ``status`` from their
    verdict and no CI. ``label`` is what every output prints in the verdict column; ``masking`` is True
    for a robustness gate when an attack-strength check failed (:mod:`auditor.strength`: the worst case it
    is judged on may overstate robustness)."""
    robust = any(g.name.partition(":")[0] in ROBUSTNESS_GATES for g in result.gates)
    masking = bool(robust and strength_checks(result)["possible_masking"])
    block = result.extras.get("gate_evaluation") if isinstance(result.extras, dict) else None
    records = [r for r in _list(block.get("records") if isinstance(block, dict) else None) if isinstance(r, dict)]
    rows = []
    for g in result.gates:
        rec = next(
            (
                r
                for r in records
                if r.get("name") == g.name and r.get("threshold") == g.threshold and r.get("passed") is g.passed
            ),
            {},
        )
        status = rec.get("status") if rec.get("status") in STATUSES else None
        if status is None:
            status = NOT_MEASURED if g.value is None else (PASSED if g.passed else FAILED)
        reasons = [r for r in _list(rec.get("reasons")) if isinstance(r, str)]
        only = any(r.startswith("transfer-only audit") for r in reasons)
        notes = (["transfer only"] if only and not g.passed else []) + ([status] if status in UNSURE else [])
        label = ("PASS" if g.passed else "FAIL") + (f" ({'; '.join(notes)})" if notes else "")
        ci = _ci(rec.get("ci"))
        rows.append(
            {
                "name": g.name,
                "threshold": g.threshold,
                "value": g.value,
                "ci": list(ci) if ci else None,
                "passed": g.passed,
                "status": status,
                "label": label,
                "condition": _text(rec.get("condition")),
                "threat_model": _text(rec.get("threat_model")),
                "inconclusive_conditions": [c for c in _list(rec.get("inconclusive_conditions")) if isinstance(c, str)],
                "reasons": reasons,
                "transfer_only": only,
                "masking": masking and g.name.partition(":")[0] in ROBUSTNESS_GATES,
                "detail": g.detail,
            }
        )
    return rows


def where_text(row: dict[str, Any]) -> str:
    """``usmm@8 (transfer)``: the condition a gate was decided on and its threat model (``—`` when none),
    followed by ``[possible gradient masking]`` when an attack-strength check puts the figure in doubt."""
    text = "—"
    if row.get("condition"):
        text = row["condition"] + (f" ({row['threat_model']})" if row.get("threat_model") else "")
    return text + (f" [{MASKING_TEXT}]" if row.get("masking") else "")


def gate_notes(result: AuditResult) -> list[str]:
    """Lines for stderr after the gates: why robustness gates failed on a transfer-only audit (one line,
    with what to add) and which gates are inconclusive under the chosen ``--gate-on``."""
    rows = gate_rows(result)
    notes = []
    transfer = [r["name"] for r in rows if r["transfer_only"]]
    if transfer:
        notes.append(f"{', '.join(transfer)} failed: {transfer_only_reason(result)}")
    unsure = [r["name"] for r in rows if r["status"] == INCONCLUSIVE]
    if unsure:
        policy = gate_policy(result)
        rule = (
            "they fail under --gate-on ci"
            if policy["gate_on"] == "ci"
            else "the exit code follows the point estimate (--gate-on point); --gate-on ci makes them fail"
        )
        notes.append(f"inconclusive gate(s), threshold inside the 95% CI: {', '.join(unsure)}; {rule}")
    return notes


# ----------------------------------------------------------------------------- the exit verdict
def skipped_items(result: AuditResult) -> list[dict]:
    """Everything a scan skipped, as dicts (``name``, ``reason``, ``kind``): unreadable images and
    data entries, then attacks, defenses, BPDA checks and detectors (``result.skipped``)."""
    items = [dict(s) for s in result.data.get("skipped", [])]
    return items + [s.to_dict() for s in result.skipped]


def exit_status(failed_gates: Iterable[str], skipped: Iterable, strict: bool) -> tuple[int, str | None]:
    """The one ``--strict`` policy of every command: ``(exit code, message for stderr)``.

    A failed gate gives 1. Under ``strict`` any skipped item (an image, an attack, a defense, a
    BPDA check, a detector) also gives 1; the command calls this after its work is finished and
    its reports are written, so the reports always exist and list what was skipped.
    """
    failed = list(failed_gates)
    if failed:
        return EXIT_GATE_FAILED, f"gate(s) failed: {', '.join(failed)}"
    items = list(skipped)
    if strict and items:
        kinds = sorted(
            {str(s.get("kind", "item") if isinstance(s, dict) else getattr(s, "kind", "item")) for s in items}
        )
        return EXIT_GATE_FAILED, f"--strict: {len(items)} item(s) skipped ({', '.join(kinds)}); see the report"
    return EXIT_OK, None
