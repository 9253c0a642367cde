"""Synthetic AuditResults from per-image predictions, for the worst-case gate and attack-strength tests.

Every condition's metrics are computed from its predictions (accuracy with a Wilson 95% interval,
attack success and flip rates against the clean predictions), so a test states only which images an
attack gets wrong.
"""

from __future__ import annotations

from typing import Any, Sequence

from auditor.strength import wilson
from auditor.types import AuditResult, Condition

CLASSES = ("normal", "pneumonia", "pneumothorax")


def labels(n: int, k: int = 3) -> list[int]:
    """``n`` labels cycling over ``k`` classes."""
    return [i % k for i in range(n)]


def wrong_on(y: Sequence[int], idx, k: int = 3) -> tuple[int, ...]:
    """Predictions equal to ``y`` except on the images ``idx`` (shifted to the next class)."""
    bad = set(idx)
    return tuple((v + 1) % k if i in bad else v for i, v in enumerate(y))


def _rate_ci(k: int, n: int) -> list[float] | None:
    ci = wilson(k, n)
    return list(ci) if ci else None


def condition(
    name: str,
    y: Sequence[int],
    pred: Sequence[int],
    clean_pred: Sequence[int] | None = None,
    *,
    kind: str = "attack",
    threat: str | None = "transfer",
    eps: float | None = 8 / 255,
    attack: str | None = None,
    surrogate: str | None = "s",
    defense: str | None = None,
    with_predictions: bool = True,
    classes: Sequence[str] = CLASSES,
) -> Condition:
    """One condition whose metrics follow from ``pred`` (and the clean predictions, for the rates)."""
    n = len(y)
    hits = sum(int(p == t) for p, t in zip(pred, y))
    per_class = {}
    for k, cls in enumerate(classes):
        idx = [i for i in range(n) if y[i] == k]
        tp = sum(1 for i in idx if pred[i] == k)
        per_class[cls] = {
            "support": len(idx),
            "sensitivity": tp / len(idx) if idx else None,
            "sensitivity_ci": _rate_ci(tp, len(idx)),
        }
    metrics: dict[str, Any] = {
        "n": n,
        "labels": list(classes),
        "accuracy": hits / n,
        "accuracy_ci": _rate_ci(hits, n),
        "per_class": per_class,
    }
    extra: dict[str, Any] = {}
    if clean_pred is not None:
        correct = [i for i in range(n) if clean_pred[i] == y[i]]
        fooled = sum(1 for i in correct if pred[i] != y[i])
        flipped = sum(1 for i in range(n) if pred[i] != clean_pred[i])
        extra = {
            "attack_success_rate": fooled / len(correct) if correct else None,
            "attack_success_rate_ci": _rate_ci(fooled, len(correct)),
            "flip_rate": flipped / n,
            "flip_rate_ci": _rate_ci(flipped, n),
            "n_clean_correct": len(correct),
            "n_fooled": fooled,
            "n_flipped": flipped,
        }
    is_attack = kind == "attack" or (kind == "defense" and attack)
    return Condition(
        name=name,
        kind=kind,
        metrics=metrics,
        attack=(attack or name.split("@")[0]) if is_attack else None,
        epsilon=eps if is_attack else None,
        surrogate=surrogate if is_attack else None,
        threat_model=threat if is_attack else None,
        defense=defense,
        extra=extra,
        predictions=tuple(pred) if with_predictions else (),
    )


def result(y: Sequence[int], conditions: Sequence[Condition], extras: dict | None = None, classes=CLASSES):
    """An AuditResult over the images ``y`` (labels) with these conditions."""
    samples = tuple(
        {"path": f"{classes[v]}/{i:03d}.png", "label": classes[v], "label_index": v, "sha256": f"{i:064x}"}
        for i, v in enumerate(y)
    )
    return AuditResult(
        schema_version="1.0",
        tool_version="0.1.0",
        created="2026-01-01T00:00:00+00:00",
        finished="2026-01-01T00:10:00+00:00",
        command="xray-audit scan m.onnx --data d",
        model={"path": "m.onnx", "sha256": "ab" * 32, "spec": {"class_names": list(classes)}},
        data={"n_images": len(y), "per_class": {c: sum(1 for v in y if v == i) for i, c in enumerate(classes)}},
        conditions=tuple(conditions),
        samples=samples,
        parameters={"seed": 0, "n_boot": 100},
        extras=dict(extras or {}),
    )


def audit(n: int = 60, **wrong: Sequence[int]) -> AuditResult:
    """A result over ``n`` images: clean (all correct) and one undefended attack per keyword
    ``<attack>_<threat>_<eps>`` (threat ``t`` transfer, ``w`` white-box, ``q`` query) wrong on the given images."""
    threats = {"t": "transfer", "w": "white-box", "q": "query"}
    y = labels(n)
    clean = tuple(y)
    conds = [condition("clean", y, clean, kind="clean")]
    for key, idx in wrong.items():
        attack, threat, eps = key.split("_")
        conds.append(
            condition(
                f"{attack}@{eps}",
                y,
                wrong_on(y, idx),
                clean,
                threat=threats[threat],
                eps=int(eps) / 255,
                attack=attack,
                surrogate="target" if threat == "w" else (None if threat == "q" else "s"),
            )
        )
    return result(y, conds)
