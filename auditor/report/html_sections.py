"""The HTML/PDF report's other sections from the result: detectors, example images, the model comparison
and the seeds of the run (gathered by :func:`auditor.report.html_context.build_context`)."""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any

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
