"""Everything the HTML/PDF report shows, computed from the result only (:func:`build_context`); the
template (:mod:`auditor.report.html`) only lays it out."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from auditor.report.contract import contract_caveat
from auditor.report.gate_view import gate_policy, gate_rows, where_text
from auditor.report.html_rows import (
    _before_after,
    _confusion_panels,
    _curves,
    _label_of,
    _matrix,
    _per_class_rows,
    _perturbation_rows,
    _query_rows,
    _threat_groups,
)
from auditor.report.html_sections import _as_list, _comparison, _detector, _examples, _seeds
from auditor.report.jsonfmt import results_digest
from auditor.report.numbers import fmt_value
from auditor.report.summary import _acc, summary_numbers, worst_case
from auditor.report.transfer_view import diagnostic_rows, headline
from auditor.report.verdicts import VANISHES_TEXT
from auditor.result_records import AttackSetMeta, BlendSetMeta, SetMeta, set_meta_from_json
from auditor.strength import MASKING_TEXT, strength_checks
from auditor.types import STATED_CAVEAT_PREFIX, AuditResult

STATED = STATED_CAVEAT_PREFIX


def _section_plots(result: AuditResult, ctx: dict[str, Any]) -> dict[str, Any]:
    from auditor.report import plots

    clean_acc = _acc(ctx["clean"])
    figs: dict[str, Any] = {}
    figs["confusion"] = [
        {
            "title": t,
            "name": c.name,
            "uri": plots.confusion_matrix_figure(c.metrics["confusion_matrix"], _label_of(result, c), t),
        }
        for t, c in ctx["confusion_panels"]
    ]
    figs["curves"] = plots.accuracy_vs_eps_figure(ctx["curves"], clean_acc)
    m = ctx["matrix"]
    figs["heatmap"] = (
        plots.heatmap_figure(m["rows"], m["cols"], m["values"], "accuracy (%) by defense × attack")
        if len(m["rows"]) > 1 or len(m["cols"]) > 1
        else None
    )
    figs["before_after"] = plots.before_after_figure(ctx["before_after"])
    curves = [c for d in ctx["detector"] for c in d["curves"]]
    figs["roc"] = plots.roc_figure(curves) if curves else None
    fft = result.detector.fft_example if result.detector else None
    figs["fft"] = (
        plots.fft_figure(dict(fft.spectra), f"{fft.condition}: {fft.sample}")
        if fft is not None and fft.spectra
        else None
    )
    return figs


def _front_context(result: AuditResult) -> dict[str, Any]:
    """The report's identity, the model's contract, and what the data held, skipped and converted."""
    spec = result.model.get("spec") or {}
    return {
        "r": result,
        "digest": results_digest(result),
        "date": (result.created or "")[:10],
        "model_name": PurePath(str(result.model.get("path", "model"))).name,
        "model_sha": str(result.model.get("sha256", "")),
        "spec_rows": [(k, fmt_value(spec[k])) for k in spec if k not in ("sources",)],
        "spec_sources": spec.get("sources") or {},
        "per_class_counts": sorted((result.data.get("per_class") or {}).items()),
        "data_skipped": [d for d in result.data.get("skipped", []) if isinstance(d, dict)],
        "data_conversions": [d for d in result.data.get("conversions", []) if isinstance(d, dict)],
        "skipped": [{"name": x.name, "reason": x.reason, "kind": x.kind} for x in result.skipped],
        "caveats": result.data.get("caveats") or [],
        "contract_caveat": contract_caveat(result),
        "stated_caveats": [
            str(c)[len(STATED) :] for c in result.data.get("caveats") or [] if str(c).startswith(STATED)
        ],
    }


def _results_context(result: AuditResult) -> dict[str, Any]:
    """The executive summary, the per-condition tables, the defense comparison and the transfer view."""
    s = summary_numbers(result)
    groups = _threat_groups(result)
    checks = strength_checks(result)
    rows = gate_rows(result)
    for g in rows:
        g["where"] = where_text(g)
    return {
        "worst_case": worst_case(result, checks),
        "strength": checks,
        "masking_text": MASKING_TEXT,
        "gate_rows": rows,
        "gate_policy": gate_policy(result),
        "gates_inconclusive": sum(1 for g in rows if g["status"] == "inconclusive"),
        "clean": s["clean"],
        "worst": s["worst"],
        "best_defense": s["best_defense"],
        "defenses": s["defenses"],
        "gates_total": s["gates_total"],
        "gates_failed": s["gates_failed"],
        "conditions": [{"c": c, "per_class": _per_class_rows(result, c)} for c in result.conditions],
        "perturbation": _perturbation_rows(result),
        "threat_groups": groups,
        "query_rows": _query_rows(result),
        "defense_verdict": s["defense_verdict"],
        "defense_claim": s["defense_verdict"]["claim"] if s["defense_verdict"] else None,
        "defense_candidate": s["defense_candidate"],
        "vanishes_text": VANISHES_TEXT,
        "before_after": _before_after(result, s["defense_candidate"]),
        "matrix": _matrix(result, s["defenses"]),
        "confusion_panels": _confusion_panels(result, s["defense_candidate"]),
        "curves": _curves(result),
        "detector": _detector(result),
        "examples": _examples(result),
        "comparison": _comparison(result),
        "transfer_headline": headline(result),
        "transfer_rows": diagnostic_rows(result),
        "has_transfer": any(g["kind"] == "transfer" for g in groups),
        "has_whitebox": any(g["kind"] in ("white-box", "whitebox") for g in groups),
    }


def _set_row(m: SetMeta) -> dict[str, Any]:
    """One adversarial set of the provenance table: name, cache key (shortened), timing, backend, surrogate."""
    attack = m if isinstance(m, AttackSetMeta) else None
    surrogate = attack.surrogate if attack is not None and isinstance(attack.surrogate, dict) else {}
    return {
        "name": m.name,
        "key": "" if isinstance(m, BlendSetMeta) else str(m.key or "")[:16],
        "cache_hit": m.cache_hit,
        "seconds": None if isinstance(m, BlendSetMeta) else m.seconds,
        "seconds_per_image": attack.seconds_per_image if attack is not None else None,
        "backend": m.backend or "",
        "surrogate": surrogate.get("label") or "",
    }


def _provenance_context(result: AuditResult) -> dict[str, Any]:
    """How the numbers were made: parameters, the adversarial sets and their cache keys, seeds, environment."""
    return {
        "parameters": [(k, fmt_value(v)) for k, v in sorted(result.parameters.items(), key=lambda kv: str(kv[0]))],
        "adversarial_sets": [
            _set_row(set_meta_from_json(m))
            for m in _as_list(result.extras.get("adversarial_sets"))
            if isinstance(m, dict)
        ],
        "seeds": [(k, fmt_value(v)) for k, v in _seeds(result.parameters)],
        "environment": [(k, fmt_value(v)) for k, v in sorted(result.environment.items(), key=lambda kv: str(kv[0]))],
    }


def build_context(
    result: AuditResult, with_figures: bool = True, signature: dict[str, str] | None = None
) -> dict[str, Any]:
    """Everything the template shows, computed from ``result`` only (and, for a signed PDF, the
    ``signature`` block of :meth:`auditor.report.sign.Signing.block`)."""
    ctx = {**_front_context(result), **_results_context(result), **_provenance_context(result)}
    ctx["signature"] = signature
    ctx["figures"] = _section_plots(result, ctx) if with_figures else {}
    return ctx
