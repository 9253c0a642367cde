"""Example images for the report: per class, clean / adversarial / amplified perturbation / defended."""

from __future__ import annotations

import base64

import numpy as np

from auditor.condition_ids import ConditionId
from auditor.types import Condition


def png_base64(img: np.ndarray, max_side: int = 192) -> str:
    """A grey ``(H, W)`` image in ``[0, 1]`` as a base64 PNG (downscaled to ``max_side``)."""
    import cv2

    img = np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    h, w = img.shape
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", np.rint(img * 255).astype(np.uint8))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 array
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def amplify(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """Perturbation mapped to ``[0, 1]`` around mid-grey, stretched to its own maximum."""
    d = adv - clean
    m = float(np.abs(d).max())
    return 0.5 + 0.5 * d / m if m > 0 else np.full_like(d, 0.5)


def build_examples(
    images: np.ndarray,
    y: np.ndarray,
    rel_paths: list[str],
    class_names,
    conditions: list[Condition],
    sets: list,
    preprocessors: list,
    per_class: int = 1,
) -> list[dict]:
    """Pick ``per_class`` images of each class (preferring ones the worst attack flips) and render them.

    ``sets`` are the scan's :class:`~auditor.scan.records.AdversarialSet` records."""
    attack_sets = [s for s in sets if s.kind == "attack"]
    if not attack_sets:
        return []
    by_name = {c.name: c for c in conditions}
    clean = by_name.get("clean")
    worst = min(attack_sets, key=lambda s: (by_name[s.name].metrics.get("accuracy") or 0.0, -(s.epsilon or 0)))
    adv_cond = by_name[worst.name]
    defended_cond, best_pre = None, None
    for pre in preprocessors:
        c = by_name.get(ConditionId(worst.name, pre.name).name)
        if c is not None and (defended_cond is None or c.metrics["accuracy"] > defended_cond.metrics["accuracy"]):
            defended_cond, best_pre = c, pre
    out = []
    for k, cls in enumerate(class_names):
        idx = np.flatnonzero(y == k)
        if idx.size == 0:
            continue
        flipped = [
            int(i) for i in idx if clean and clean.predictions[int(i)] == k and adv_cond.predictions[int(i)] != k
        ]
        for i in [int(j) for j in (flipped or list(idx))[:per_class]]:
            x, xa = images[i, 0], worst.images[i, 0]
            imgs = {"clean": png_base64(x), "adversarial": png_base64(xa), "perturbation": png_base64(amplify(x, xa))}
            preds = {
                "clean": class_names[clean.predictions[i]] if clean else None,
                "adversarial": class_names[adv_cond.predictions[i]],
            }
            if best_pre is not None and defended_cond is not None:
                imgs["defended"] = png_base64(best_pre(worst.images[i : i + 1])[0, 0])
                preds["defended"] = class_names[defended_cond.predictions[i]]
            out.append(
                {
                    "class": cls,
                    "path": rel_paths[i],
                    "condition": worst.name,
                    "defense": best_pre.name if best_pre is not None else None,
                    "images": imgs,
                    "predictions": preds,
                }
            )
    return out
