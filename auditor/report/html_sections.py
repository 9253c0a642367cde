"""The HTML/PDF report's other sections from the result: detectors, example images, the model comparison
and the seeds of the run (gathered by :func:`auditor.report.html_context.build_context`)."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

from auditor.detector_records import DetectorEval, DetectorSplit, FftExample
from auditor.report.gates import attack_conditions
from auditor.report.numbers import _finite
from auditor.report.summary import _acc
from auditor.types import AuditResult

#: example images shown at most (the rest are counted in a note)
MAX_EXAMPLES = 24
IMAGE_KINDS = ("clean", "adversarial", "perturbation", "defended")
DETECTOR_TITLES = {
    "calibration": "Calibration",
    "reference_based": "Reference-based detector (edge / SSIM against the clean original)",
    "feature_squeezing": "Feature squeezing",
    "fft_example": "Frequency-spectrum example",
}
_B64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/=\s]+)$")


def _detector(result: AuditResult) -> list[dict[str, Any]]:
    """The detector section: one block per part of the result (split, each detector, the FFT example)."""
    return [_detector_block(key, block) for key, block in result.detector.blocks()] if result.detector else []


def _detector_block(key: str, block: DetectorSplit | DetectorEval | FftExample) -> dict[str, Any]:
    """One block of the detector section: its single numbers, thresholds, list settings, rows and ROC curves."""
    rows_in = block.rows if isinstance(block, DetectorEval) else ()
    measures = [(r.condition, dict(r.measures())) for r in rows_in]
    metric_keys = sorted({k for _, m in measures for k, x in m.items() if _finite(x) or x is None})
    curves = [
        {
            "label": f"{r.condition} ({s.score})" if s.score else r.condition,
            "fpr": s.roc.fpr,
            "tpr": s.roc.tpr,
            "auc": s.roc.auc,
        }
        for r in rows_in
        for s in sorted(r.scores, key=lambda s: s.score)
        if s.roc.points
    ]
    return {
        "key": key,
        "title": DETECTOR_TITLES.get(key, key),
        "metric_keys": metric_keys,
        "rows": [{"name": name, "values": [m.get(k) for k in metric_keys]} for name, m in measures],
        "scalars": sorted(block.scalars(), key=lambda kv: kv[0]),
        "thresholds": sorted(block.thresholds.items()) if isinstance(block, DetectorEval) else [],
        "extra": dict(sorted(block.lists())) if isinstance(block, DetectorEval) else {},
        "curves": curves,
    }


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
        accs = [a for c in attack_conditions(r) if (a := _acc(c)) is not None]
        worst.append(min(accs) if accs else None)
    return {"models": [_model_label(r) for r in models], "rows": rows, "worst": worst}
