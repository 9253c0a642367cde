"""``report.html``: the human report, rendered with Jinja2 from the ``templates`` package.

The numbers shown are worked out here, in :func:`build_context`; the template
only lays them out. Autoescaping is on for every template, so class names,
paths and reasons taken from the data can never inject markup. The stylesheet
(``auditor/templates/report.css``) and every figure are inlined, so the file is
self-contained and contains no external URL.
"""

from __future__ import annotations

import math
import re
from html import escape as _escape
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Any

from auditor.condition_ids import THREAT_QUERY, ConditionId
from auditor.report.contract import contract_caveat
from auditor.report.gates import attack_conditions, clean_condition, gate_policy, gate_rows, where_text
from auditor.report.jsonfmt import results_digest
from auditor.report.numbers import _finite, fmt_ci, fmt_eps, fmt_num, fmt_pct, fmt_value
from auditor.report.renderer import Renderer
from auditor.report.summary import _acc, is_normal, summary_numbers, worst_case
from auditor.report.transfer_view import diagnostic_rows, headline
from auditor.report.verdicts import VANISHES_TEXT, defended_on, is_adaptive
from auditor.strength import MASKING_TEXT, strength_checks
from auditor.types import STATED_CAVEAT_PREFIX, AuditResult, Condition

#: example images shown at most (the rest are counted in a note)
MAX_EXAMPLES = 24
STATED = STATED_CAVEAT_PREFIX
TEMPLATE = "report.html.j2"
IMAGE_KINDS = ("clean", "adversarial", "perturbation", "defended")
DETECTOR_TITLES = {
    "calibration": "Calibration",
    "reference_based": "Reference-based detector (edge / SSIM against the clean original)",
    "feature_squeezing": "Feature squeezing",
    "fft_example": "Frequency-spectrum example",
}
#: attack columns per defense × attack table: wider matrices are split so every column fits A4 portrait
MATRIX_COLUMNS = 6
#: identifiers longer than this get line-break opportunities after ``_``, ``/``, ``-`` and ``+``
LONG_IDENT = 24
_IDENT_BREAK = re.compile(r"(?<=[_/+-])(?=.)")
_B64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/=\s]+)$")


def _attack_sort_key(c: Condition) -> tuple:
    return (c.attack or c.name, c.epsilon if _finite(c.epsilon) else math.inf, c.name)


def _label_of(result: AuditResult, c: Condition) -> list[str]:
    return list(c.metrics.get("labels") or result.class_names)


def _per_class_rows(result: AuditResult, c: Condition) -> list[dict[str, Any]]:
    per_class = c.metrics.get("per_class") or {}
    rows = []
    for name in _label_of(result, c) or list(per_class):
        pc = per_class.get(name) or {}
        sens = pc.get("sensitivity")
        normal = is_normal(name)
        rows.append(
            {
                "name": name,
                "precision": pc.get("precision"),
                "recall": pc.get("recall"),
                "f1": pc.get("f1"),
                "support": pc.get("support"),
                "sensitivity": sens,
                "sensitivity_ci": pc.get("sensitivity_ci"),
                "specificity": pc.get("specificity"),
                "normal": normal,
                "missed": (1.0 - sens) if _finite(sens) and not normal else None,
            }
        )
    return rows


def _style_attack(c: Condition) -> bool:
    """An attack set made with a style backend (STM), whose style diversity the report shows."""
    return bool(c.extra.get("backend"))


def backend_text(c: Condition) -> str | None:
    """The style backend of a set and, for STM, its measured share of near-affine style copies."""
    backend = c.extra.get("backend")
    if not backend:
        return None
    d = c.extra.get("style_diversity")
    if isinstance(d, dict) and _finite(d.get("near_affine_share")):
        return f"{backend} · near-affine style copies {fmt_pct(d['near_affine_share'])} of {d.get('copies', '?')}"
    return f"{backend} · near-affine style copies not measured" if _style_attack(c) else str(backend)


def _perturbation_rows(result: AuditResult) -> list[dict[str, Any]]:
    rows = []
    for c in result.conditions:
        if c.defense or c.kind not in ("attack", "style_blend"):
            continue
        x = c.extra
        rows.append(
            {
                "name": c.name,
                "linf": x.get("linf_mean"),
                "l2": x.get("l2_mean"),
                "ssim": x.get("ssim_mean"),
                "psnr": x.get("psnr_mean"),
                "cost": x.get("cost_ms_per_image"),
                "backend": backend_text(c),
                "style": _style_attack(c),
            }
        )
    return rows if any(any(_finite(r[k]) for k in ("linf", "l2", "ssim", "psnr")) for r in rows) else []


def _threat_groups(result: AuditResult) -> list[dict[str, Any]]:
    groups: dict[tuple, dict[str, Any]] = {}
    for c in result.conditions:
        if c.defense or c.kind not in ("attack", "style_blend"):
            continue
        key = (c.threat_model or "unspecified", c.surrogate or "—")
        g = groups.setdefault(key, {"threat_model": key[0], "surrogate": key[1], "attacks": {}})
        g["attacks"].setdefault(c.attack or c.name, []).append(c)
    out = []
    for g in groups.values():
        tm = g["threat_model"].lower()
        if tm == "transfer":
            atlas = "AML.T0005 Create Proxy AI Model; AML.T0043.002 Craft Adversarial Data: Black-Box Transfer"
        elif tm in ("white-box", "whitebox", "white_box"):
            atlas = "AML.T0043.000 Craft Adversarial Data: White-Box Optimization"
        elif tm == THREAT_QUERY:
            atlas = "AML.T0043.001 Craft Adversarial Data: Black-Box Optimization (queries to the model)"
        else:
            atlas = "AML.T0043 Craft Adversarial Data"
        attacks = []
        for name, conds in g["attacks"].items():
            conds = sorted(conds, key=_attack_sort_key)
            budgets = [fmt_eps(c.epsilon) for c in conds if _finite(c.epsilon)]
            others = [c.name for c in conds if not _finite(c.epsilon)]
            attacks.append({"name": name, "budgets": ", ".join(budgets + others)})
        out.append({**g, "atlas": atlas, "attacks": attacks, "kind": tm})
    return out


def _query_rows(result: AuditResult) -> list[dict[str, Any]]:
    """Success against queries of every undefended query-attack condition (``extra["queries"]``)."""
    rows = []
    for c in result.conditions:
        q = c.extra.get("queries")
        if c.defense or not isinstance(q, dict) or not isinstance(q.get("curve"), list):
            continue
        curve = [p for p in q["curve"] if isinstance(p, (list, tuple)) and len(p) == 2]
        rows.append(
            {
                "name": c.name,
                "budget": q.get("budget"),
                "mean_used": q.get("mean_used"),
                "median_successful": q.get("median_used_successful"),
                "curve": [{"queries": int(a), "rate": b} for a, b in curve],
            }
        )
    return rows


def _before_after(result: AuditResult, candidate: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per attack condition: clean, attacked, and attacked with the one defense the summary chose
    (never a per-row maximum), adaptive-aware, on all images."""
    clean_acc = _acc(clean_condition(result))
    rows = []
    conds = sorted(
        (c for c in result.conditions if not c.defense and c.kind in ("attack", "style_blend")), key=_attack_sort_key
    )
    for c in conds:
        dc = defended_on(result, candidate["name"], c.name) if candidate else None
        best_acc = _acc(dc)
        after = _acc(c)
        rows.append(
            {
                "label": c.name,
                "before": clean_acc,
                "after": after,
                "defended": best_acc,
                "defense": dc.name if dc is not None else None,
                "drop": (after - clean_acc) if after is not None and clean_acc is not None else None,
                "recovered": (best_acc - after) if best_acc is not None and after is not None else None,
                "eps": fmt_eps(c.epsilon),
                "attack": c.attack or c.name,
            }
        )
    return rows


def _matrix(result: AuditResult, defenses: list[dict[str, Any]]) -> dict[str, Any]:
    attacks = sorted(
        (c for c in result.conditions if not c.defense and c.kind in ("attack", "style_blend")), key=_attack_sort_key
    )
    cols = ["clean"] + [c.name for c in attacks]
    rows = ["no defense"] + [d["name"] for d in defenses]
    values = []
    for r in rows:
        line = []
        for col in cols:
            name = ConditionId(col, None if r == "no defense" else r).name
            cond = result.condition(name)
            if cond is None and r == "no defense" and col == "clean":
                cond = clean_condition(result)
            line.append(_acc(cond))
        values.append(line)
    parts = [
        {"cols": cols[i : i + MATRIX_COLUMNS], "values": [line[i : i + MATRIX_COLUMNS] for line in values]}
        for i in range(0, len(cols), MATRIX_COLUMNS)
    ]
    return {"rows": rows, "cols": cols, "values": values, "parts": parts}


def _confusion_panels(result: AuditResult, best: dict[str, Any] | None) -> list[tuple[str, Condition]]:
    panels: list[tuple[str, Condition]] = []
    clean = clean_condition(result)
    if clean is not None:
        panels.append(("clean", clean))
    by_attack: dict[str, Condition] = {}
    for c in attack_conditions(result):
        key = c.attack or c.name
        cur = by_attack.get(key)
        if cur is None or (c.epsilon or 0) > (cur.epsilon or 0):
            by_attack[key] = c
    for key in sorted(by_attack):
        c = by_attack[key]
        panels.append((f"{c.attack or c.name} at ε = {fmt_eps(c.epsilon)}" if _finite(c.epsilon) else c.name, c))
    if best is not None:
        c = best["robust_cond"] or best["clean_cond"]
        if c is not None:
            panels.append((f"top-ranked defense: {c.name}", c))
    return [(t, c) for t, c in panels if c.metrics.get("confusion_matrix")]


def _curve_label(c: Condition) -> str:
    """``usmm`` undefended, ``usmm + jpeg:75`` defended, ``usmm + jpeg:75 (BPDA)`` adaptive."""
    attack = c.attack or c.name
    if not c.defense:
        return attack
    return f"{attack} + {c.defense}" + (" (BPDA)" if is_adaptive(c) else "")


def _curves(result: AuditResult) -> list[dict[str, Any]]:
    """Accuracy-vs-ε series: each attack undefended (solid) and under each defense (dashed)."""
    series: dict[str, list[Condition]] = {}
    for c in result.conditions:
        gradient_attack = c.kind == "attack" or (c.kind == "defense" and c.attack)
        if gradient_attack and _finite(c.epsilon) and _acc(c) is not None:
            series.setdefault(_curve_label(c), []).append(c)
    out = []
    for label, conds in series.items():
        conds.sort(key=lambda c: c.epsilon)
        cis = [c.metrics.get("accuracy_ci") or [None, None] for c in conds]
        out.append(
            {
                "label": label,
                "eps255": [round(c.epsilon * 255, 4) for c in conds],
                "acc": [_acc(c) for c in conds],
                "lo": [ci[0] for ci in cis],
                "hi": [ci[1] for ci in cis],
                "dashed": bool(conds[0].defense),
                "group": conds[0].attack or conds[0].name,
            }
        )
    out.sort(key=lambda s: (s["dashed"], s["label"]))
    return out


def _detector(result: AuditResult) -> list[dict[str, Any]]:
    det = result.detector or {}
    out = []
    order = {k: i for i, k in enumerate(DETECTOR_TITLES)}
    for key in sorted(det, key=lambda k: (order.get(k, len(order)), k)):
        block = det[key]
        if not isinstance(block, dict):
            continue
        title = DETECTOR_TITLES.get(key, key.replace("_", " ").capitalize())
        per = block.get("per_condition") if isinstance(block.get("per_condition"), dict) else {}
        metric_keys = sorted(
            {
                k
                for v in per.values()
                if isinstance(v, dict)
                for k, x in v.items()
                if (_finite(x) or x is None) and not k.startswith("roc")
            }
        )
        rows = [{"name": name, "values": [(v or {}).get(k) for k in metric_keys]} for name, v in per.items()]
        curves = []
        for name, v in per.items():
            for rkey, pts in sorted((v or {}).items() if isinstance(v, dict) else []):
                # detector output: "roc_<score>": [[fpr, tpr], ...]
                if rkey.startswith("roc_") and isinstance(pts, list) and pts and isinstance(pts[0], (list, tuple)):
                    score = rkey[4:]
                    curves.append(
                        {
                            "label": f"{name} ({score})",
                            "fpr": [p[0] for p in pts],
                            "tpr": [p[1] for p in pts],
                            "auc": v.get(f"auc_{score}"),
                        }
                    )
            roc = (v or {}).get("roc") if isinstance(v, dict) else None
            if isinstance(roc, dict) and "fpr" in roc:
                curves.append({"label": name, "fpr": roc.get("fpr"), "tpr": roc.get("tpr"), "auc": roc.get("auc")})
            elif isinstance(roc, dict):
                for score, pts in sorted(roc.items()):
                    if isinstance(pts, dict):
                        curves.append(
                            {
                                "label": f"{name} ({score})",
                                "fpr": pts.get("fpr"),
                                "tpr": pts.get("tpr"),
                                "auc": pts.get("auc", v.get(f"auc_{score}")),
                            }
                        )
        scalars = [
            (k, block[k])
            for k in sorted(block)
            if k not in ("per_condition", "thresholds") and not isinstance(block[k], (dict, list))
        ]
        thresholds = block.get("thresholds") if isinstance(block.get("thresholds"), dict) else {}
        extra = {
            k: block[k]
            for k in sorted(block)
            if k not in ("per_condition", "thresholds")
            and isinstance(block[k], (dict, list))
            and k not in ("spectra", "calibration", "benign")
        }
        out.append(
            {
                "key": key,
                "title": title,
                "metric_keys": metric_keys,
                "rows": rows,
                "scalars": scalars,
                "thresholds": sorted(thresholds.items()),
                "extra": extra,
                "curves": curves,
            }
        )
    return out


def _image_uri(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    m = _DATA_IMAGE.match(value.strip())
    if m:
        return "data:image/%s;base64,%s" % (m.group(1), re.sub(r"\s+", "", m.group(2)))
    if _B64.match(value):
        return "data:image/png;base64," + re.sub(r"\s+", "", value)
    return None


def _as_list(value: Any) -> list:
    """``value`` when it is a list, else an empty list (results.json is untrusted input)."""
    return value if isinstance(value, list) else []


def _examples(result: AuditResult) -> dict[str, Any]:
    items = result.extras.get("examples") if isinstance(result.extras, dict) else None
    items = [e for e in (items if isinstance(items, list) else []) if isinstance(e, dict)]
    shown = []
    for e in items[:MAX_EXAMPLES]:
        images = e.get("images") or {}
        preds = e.get("predictions") or {}
        panels = []
        for kind in list(IMAGE_KINDS) + sorted(k for k in images if k not in IMAGE_KINDS):
            uri = _image_uri(images.get(kind))
            if uri:
                panels.append({"kind": kind, "uri": uri, "prediction": preds.get(kind)})
        shown.append(
            {"cls": e.get("class", ""), "path": e.get("path", ""), "condition": e.get("condition"), "panels": panels}
        )
    return {"items": shown, "omitted": max(0, len(items) - MAX_EXAMPLES)}


def _seeds(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            if "seed" in str(k).lower() and not isinstance(obj[k], (dict, list)):
                out.append((path, obj[k]))
            else:
                out.extend(_seeds(obj[k], path))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_seeds(v, f"{prefix}[{i}]"))
    return out


def _model_label(r: AuditResult) -> str:
    path = str(r.model.get("path", "model"))
    return f"{PurePath(path).name} ({str(r.model.get('sha256', ''))[:8]})"


def _comparison(result: AuditResult) -> dict[str, Any] | None:
    if not result.compared:
        return None
    models = [result, *result.compared]
    names = list(dict.fromkeys(c.name for r in models for c in r.conditions))
    rows = []
    for name in names:
        rows.append({"name": name, "values": [_acc(r.condition(name)) for r in models]})
    worst = []
    for r in models:
        accs = [_acc(c) for c in attack_conditions(r) if _acc(c) is not None]
        worst.append(min(accs) if accs else None)
    return {"models": [_model_label(r) for r in models], "rows": rows, "worst": worst}


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
    fft = (result.detector or {}).get("fft_example") or {}
    figs["fft"] = (
        plots.fft_figure(fft["spectra"], f"{fft.get('condition', '')}: {fft.get('sample', '')}")
        if isinstance(fft.get("spectra"), dict)
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


def _provenance_context(result: AuditResult) -> dict[str, Any]:
    """How the numbers were made: parameters, the adversarial sets and their cache keys, seeds, environment."""
    return {
        "parameters": [(k, fmt_value(v)) for k, v in sorted(result.parameters.items(), key=lambda kv: str(kv[0]))],
        "adversarial_sets": [
            {
                "name": m.get("name"),
                "key": str(m.get("key") or "")[:16],
                "cache_hit": m.get("cache_hit"),
                "seconds": m.get("seconds"),
                "seconds_per_image": m.get("seconds_per_image"),
                "backend": m.get("backend") or "",
                "surrogate": ((m.get("surrogate") or {}).get("label") if isinstance(m.get("surrogate"), dict) else "")
                or "",
            }
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


def ident(name: Any):
    """An identifier (condition, class, file name) as HTML that never breaks inside a word.

    A short identifier is one unbreakable span; a long one is a run of unbreakable spans split
    after ``_``, ``/``, ``-`` or ``+`` with ``<wbr>`` between them, so a narrow table column wraps
    it at those points and never per letter (nor after the ``:`` of ``jpeg:75``).
    """
    from markupsafe import Markup

    text = str(name)
    parts = [text] if len(text) <= LONG_IDENT else _IDENT_BREAK.split(text)
    return Markup("<wbr>").join(Markup('<span class="nobr">%s</span>') % part for part in parts)


def environment():
    """The Jinja2 environment over the ``templates`` package (autoescape on for every template)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("auditor", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=fmt_pct, ci=fmt_ci, num=fmt_num, eps=fmt_eps, value=fmt_value, ident=ident)
    return env


class _CellLabeler(HTMLParser):
    """Finds, in each ``table.data``, the column header of every body cell (rowspans included)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self._starts = [0]
        for m in re.finditer("\n", text):
            self._starts.append(m.end())
        self.inserts: list[tuple[int, str]] = []
        self._tables: list[dict[str, Any]] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._starts[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list) -> None:  # noqa: D102
        a = dict(attrs)
        if tag == "table":
            classes = (a.get("class") or "").split()
            wide = "data" in classes and "narrow" not in classes  # a narrow two-column table fits a phone as it is
            self._tables.append({"data": wide, "headers": [], "head": False, "text": None, "col": 0})
            self._tables[-1].update(spans={}, active=set())
            return
        if not self._tables or not self._tables[-1]["data"]:
            return
        t = self._tables[-1]
        if tag == "thead":
            t["head"] = True
        elif tag == "tr" and not t["head"]:
            t["col"] = 0
            t["active"] = {c for c, n in t["spans"].items() if n > 0}
        elif tag in ("th", "td") and t["head"]:
            t["text"] = []
        elif tag in ("th", "td"):
            while t["col"] in t["active"]:
                t["col"] += 1
            col = t["col"]
            if col < len(t["headers"]) and t["headers"][col]:
                end = self._offset() + len(self.get_starttag_text() or "") - 1
                self.inserts.append((end, f' data-label="{_escape(t["headers"][col], quote=True)}"'))
            span = int(a.get("rowspan") or 1) if str(a.get("rowspan") or "1").isdigit() else 1
            if span > 1:
                t["spans"][col] = span - 1
            t["col"] += int(a["colspan"]) if str(a.get("colspan") or "").isdigit() else 1

    def handle_endtag(self, tag: str) -> None:  # noqa: D102
        if not self._tables:
            return
        t = self._tables[-1]
        if tag == "table":
            self._tables.pop()
        elif tag == "thead":
            t["head"] = False
        elif tag in ("th", "td") and t["text"] is not None:
            t["headers"].append(" ".join("".join(t["text"]).split()))
            t["text"] = None
        elif tag == "tr" and not t["head"]:
            for c in t["active"]:
                t["spans"][c] -= 1

    def handle_data(self, data: str) -> None:  # noqa: D102
        if self._tables and self._tables[-1]["text"] is not None:
            self._tables[-1]["text"].append(data)


def label_cells(html: str) -> str:
    """Give every body cell of each ``table.data`` (but the two-column ``narrow`` ones) a ``data-label``
    naming its column header.

    On a phone the stylesheet shows each row as a block of labelled cells, so a table never
    needs more width than the screen has.
    """
    labeler = _CellLabeler(html)
    labeler.feed(html)
    labeler.close()
    out, last = [], 0
    for pos, attr in sorted(labeler.inserts):
        out += [html[last:pos], attr]
        last = pos
    out.append(html[last:])
    return "".join(out)


def render_html(result: AuditResult, signature: dict[str, str] | None = None) -> str:
    """report.html for ``result`` (``signature``: the signer block of a signed PDF's sign-off section)."""
    return label_cells(environment().get_template(TEMPLATE).render(**build_context(result, signature=signature)))


class HtmlRenderer(Renderer):
    """report.html (self-contained: inline CSS and figures, no external URL)."""

    name = "html"
    suffix = ".html"
    filename = "report.html"

    def render(self, result: AuditResult) -> str:
        """The self-contained ``report.html``."""
        return render_html(result)
