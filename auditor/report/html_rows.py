"""The condition rows of the HTML/PDF report: per-class metrics, perturbation sizes, threat groups, query
curves, before/after a defense, the defense × attack matrix, confusion panels and accuracy-vs-ε curves
(gathered by :func:`auditor.report.html_context.build_context`)."""

from __future__ import annotations

import math
from typing import Any

from auditor.condition_ids import THREAT_QUERY, ConditionId
from auditor.report.defense_conditions import defended_on, is_adaptive
from auditor.report.gates import attack_conditions, clean_condition
from auditor.report.numbers import _finite, fmt_eps, fmt_pct
from auditor.report.summary import _acc, is_normal
from auditor.types import AuditResult, Condition

#: attack columns per defense × attack table: wider matrices are split so every column fits A4 portrait
MATRIX_COLUMNS = 6


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
    return bool(c.extra.backend)


def backend_text(c: Condition) -> str | None:
    """The style backend of a set and, for STM, its measured share of near-affine style copies."""
    backend = c.extra.backend
    if not backend:
        return None
    d = c.extra.style_diversity
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
                "linf": x.linf_mean,
                "l2": x.l2_mean,
                "ssim": x.ssim_mean,
                "psnr": x.psnr_mean,
                "cost": x.cost_ms_per_image,
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
    """Success against queries of every undefended query-attack condition (``extra.queries``)."""
    rows = []
    for c in result.conditions:
        q = c.extra.queries
        if c.defense or q is None:
            continue
        rows.append(
            {
                "name": c.name,
                "budget": q.budget,
                "mean_used": q.mean_used,
                "median_successful": q.median_used_successful,
                "curve": [{"queries": int(a), "rate": b} for a, b in q.curve],
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
        conds.sort(key=lambda c: c.epsilon or 0.0)  # every epsilon is finite here
        cis = [c.metrics.get("accuracy_ci") or [None, None] for c in conds]
        out.append(
            {
                "label": label,
                "eps255": [round((c.epsilon or 0.0) * 255, 4) for c in conds],
                "acc": [_acc(c) for c in conds],
                "lo": [ci[0] for ci in cis],
                "hi": [ci[1] for ci in cis],
                "dashed": bool(conds[0].defense),
                "group": conds[0].attack or conds[0].name,
            }
        )
    out.sort(key=lambda s: (s["dashed"], s["label"]))
    return out
