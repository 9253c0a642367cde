"""Model cards (Markdown + JSON) written beside every model the ``training`` package exports.

After Mitchell et al., "Model Cards for Model Reporting", FAT* 2019: what the
model is, the data it saw (root, manifest SHA-256, counts), how the data were
split, the recipe and its hyper-parameters, whether it started from ImageNet
weights, clean test metrics with 95 % confidence intervals, and its known
limitations. The JSON file is the source; the Markdown is rendered from it.

The card is a plain ``dict``; recognised keys (all optional except ``name``)::

    name, kind, created, synthetic, summary, files {role: {path, sha256}}, spec,
    data {root, manifest_sha256, n_images, per_class, skipped, caveats},
    split {method, seed, fractions, counts, patients},
    recipe {name, description, hyperparameters}, pretrained,
    training {epochs_run, best_epoch, seconds, seconds_per_epoch, stopped_early},
    metrics (results.json "metrics" object), extra_metrics {name: value}, limitations [str]

This module imports only the standard library and the project's atomic writer (:mod:`auditor.atomic`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auditor.atomic import write_atomic

CARD_SCHEMA = "xray-audit-model-card/1"


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ci(ci: Any) -> str:
    if not ci:
        return ""
    return f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})"


def _header(card: dict[str, Any]) -> list[str]:
    lines: list[str] = [f"# Model card: {card.get('name', 'model')}", ""]
    if card.get("synthetic"):
        lines += [
            "> **SYNTHETIC DATA.** This model was trained on procedurally generated phantoms, not on",
            "> radiographs. It has no medical meaning and must never be used on patients.",
            "",
        ]
    if card.get("summary"):
        lines += [card["summary"], ""]
    lines += [
        f"* kind: {card.get('kind', 'classifier')}",
        f"* created: {card.get('created', 'n/a')}",
        f"* weights: {card.get('pretrained') or 'trained from scratch (no ImageNet weights)'}",
    ]
    for role, f in (card.get("files") or {}).items():
        lines.append(f"* {role}: `{f.get('path')}` (sha256 `{f.get('sha256', 'n/a')}`)")
    spec = card.get("spec")
    if spec:
        lines.append(
            f"* input: {spec.get('layout', 'NCHW')} {spec.get('channels')}x{spec.get('height')}x{spec.get('width')}, "
            f"scaling {spec.get('scaling')}, output {spec.get('output_kind', 'image')}, "
            f"classes {', '.join(spec.get('class_names') or []) or 'n/a'}"
        )
    return lines + [""]


def _data_section(data: dict[str, Any]) -> list[str]:
    if not data:
        return []
    lines = [
        "## Data",
        "",
        f"* root: `{data.get('root')}`",
        f"* manifest sha256: `{data.get('manifest_sha256')}`",
        f"* images used: {data.get('n_images')}",
    ]
    if data.get("per_class"):
        lines.append("* per class: " + ", ".join(f"{k} {v}" for k, v in data["per_class"].items()))
    skipped = data.get("skipped") or []
    if skipped:
        lines.append(f"* skipped files: {len(skipped)}")
        lines += [f"  * `{s.get('name')}`: {s.get('reason')}" for s in skipped[:50]]
        if len(skipped) > 50:
            lines.append(f"  * ... and {len(skipped) - 50} more (see the JSON card)")
    for c in data.get("caveats") or []:
        lines.append(f"* caveat: {c}")
    return lines + [""]


def _split_section(split: dict[str, Any]) -> list[str]:
    if not split:
        return []
    lines = ["## Split", "", f"* method: {split.get('method')} (seed {split.get('seed')})"]
    for part, counts in (split.get("counts") or {}).items():
        pats = (split.get("patients") or {}).get(part)
        extra = f"; {pats} patients/groups" if pats is not None else ""
        lines.append(f"* {part}: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + extra)
    return lines + [""]


def _recipe_section(recipe: dict[str, Any]) -> list[str]:
    if not recipe:
        return []
    lines = ["## Recipe", "", f"* name: {recipe.get('name')}"]
    if recipe.get("description"):
        lines.append(f"* {recipe['description']}")
    hp = recipe.get("hyperparameters") or {}
    if hp:
        lines += ["", "| hyper-parameter | value |", "|---|---|"]
        lines += [f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in hp.items()]
    return lines + [""]


def _training_section(tr: dict[str, Any]) -> list[str]:
    if not tr:
        return []
    return (
        ["## Training run", ""]
        + [f"* {k.replace('_', ' ')}: {_fmt(v, 2)}" for k, v in tr.items() if k != "history"]
        + [""]
    )


def _metrics_section(m: dict[str, Any] | None) -> list[str]:
    if not (m and m.get("n")):
        return []
    lines = [
        "## Clean test metrics",
        "",
        f"Test images: {m['n']} (bootstrap unit: {(m.get('bootstrap') or {}).get('unit', 'n/a')}).",
        "",
        f"* accuracy: {_fmt(m.get('accuracy'))}{_ci(m.get('accuracy_ci'))}",
        f"* macro-F1: {_fmt(m.get('macro_f1'))}{_ci(m.get('macro_f1_ci'))}",
        f"* weighted-F1: {_fmt(m.get('weighted_f1'))}",
        "",
        "| class | precision | recall (sensitivity) | 95% CI of recall | F1 | specificity | support |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, pc in (m.get("per_class") or {}).items():
        ci = pc.get("sensitivity_ci")
        ci_s = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "n/a"
        lines.append(
            f"| {name} | {_fmt(pc.get('precision'))} | {_fmt(pc.get('recall'))} | {ci_s} | "
            f"{_fmt(pc.get('f1'))} | {_fmt(pc.get('specificity'))} | {pc.get('support')} |"
        )
    cm = m.get("confusion_matrix")
    if cm:
        labels = m.get("labels") or [str(i) for i in range(len(cm))]
        lines += [
            "",
            "Confusion matrix (rows: true, columns: predicted)",
            "",
            "| | " + " | ".join(labels) + " |",
            "|---" * (len(labels) + 1) + "|",
        ]
        lines += [f"| {labels[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(cm)]
    return lines + [""]


def render_markdown(card: dict[str, Any]) -> str:
    """The Markdown text of a model card."""
    lines = _header(card)
    lines += _data_section(card.get("data") or {})
    lines += _split_section(card.get("split") or {})
    lines += _recipe_section(card.get("recipe") or {})
    lines += _training_section(card.get("training") or {})
    lines += _metrics_section(card.get("metrics"))
    em = card.get("extra_metrics")
    if em:
        lines += (
            ["## Measured on the test split", ""]
            + [f"* {k.replace('_', ' ')}: {_fmt(v)}" for k, v in em.items()]
            + [""]
        )
    lims = card.get("limitations") or []
    if lims:
        lines += ["## Known limitations", ""] + [f"* {x}" for x in lims] + [""]
    return "\n".join(lines)


def write_model_card(stem: str | Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json``; returns both paths.

    ``stem`` is a path without suffix, e.g. ``out/model_card``.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    doc = {"schema": CARD_SCHEMA, **card}
    md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
    write_atomic(js, json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
    write_atomic(md, render_markdown(doc))
    return md, js


def read_model_card(path: str | Path) -> dict[str, Any]:
    """Load a JSON model card."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
