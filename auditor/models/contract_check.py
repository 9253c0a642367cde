"""The clean-stage sanity check of a guessed input scaling (:func:`contract_check`) and the scaling it suggests.

When nothing declared a model's scaling and the graph did not imply it, a scan checks its clean
predictions for the signs of a wrong contract and tries the other named scalings
(:func:`suggest_scaling`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from auditor.models.inputs import scaling_mean_std
from auditor.types import ModelSpec


def spec_with(spec: ModelSpec, **changes: Any) -> ModelSpec:
    """A copy of ``spec`` with some fields changed."""
    return dataclasses.replace(spec, **changes)


# ----------------------------------------------------------------------------- the clean-stage sanity check
#: the fewest labelled images the clean-stage check judges
CONTRACT_CHECK_MIN_IMAGES = 10
#: the largest per-class spread (standard deviation over images) of scores still called near-constant
FLAT_SCORE_STD = 0.05
#: accuracy within this of the largest class share counts as "at the class-share level"
SHARE_MARGIN = 0.05


def contract_check(spec: ModelSpec, y: np.ndarray, proba: np.ndarray) -> dict[str, Any] | None:
    """Whether the clean predictions of a model whose scaling was guessed look like a wrong contract.

    Runs only when the spec's scaling is the default (nothing declared it, the graph did not
    imply it) and at least :data:`CONTRACT_CHECK_MIN_IMAGES` images of two or more classes are
    scored. Suspect when every image gets the same class, or when the accuracy is at the largest
    class share (within :data:`SHARE_MARGIN`) while every class score is near-constant across
    images (spread below :data:`FLAT_SCORE_STD`): what a model fed values on the wrong scale does.
    Returns ``{"reason", "fix", "scaling", "accuracy", "class_share"}`` or ``None``.
    """
    if spec.sources.get("scaling") != "default" or spec.dtype == "uint8":
        return None
    y = np.asarray(y).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    if len(y) < CONTRACT_CHECK_MIN_IMAGES or len(np.unique(y)) < 2 or proba.shape[0] != len(y):
        return None
    pred = proba.argmax(1)
    acc = float(np.mean(pred == y))
    share = float(np.bincount(y).max() / len(y))
    spread = float(proba.std(axis=0).max())
    names = list(spec.class_names)
    if len(np.unique(pred)) == 1:
        k = int(pred[0])
        reason = f"every one of the {len(y)} clean images is predicted {names[k] if k < len(names) else k}"
    elif acc <= share + SHARE_MARGIN and spread < FLAT_SCORE_STD:
        reason = (
            f"clean accuracy {100 * acc:.1f}% is at the largest class share ({100 * share:.1f}%) and the "
            f"class scores hardly vary across images (spread {spread:.3f})"
        )
    else:
        return None
    others = [s for s in ("0-255", "imagenet", "minus1-1") if s != spec.scaling]
    fix = (
        f"the input scaling was not declared and {spec.scaling!r} was assumed; rerun with the model's "
        f"scaling ({', '.join('--scaling ' + s for s in others)}, or --scaling custom --mean .. --std ..), "
        "or declare 'scaling' in the model's metadata or a sidecar JSON"
    )
    return {"reason": reason, "fix": fix, "scaling": spec.scaling, "accuracy": acc, "class_share": share}


#: the most images the other scalings are tried on when the contract check fails
SUGGEST_MAX_IMAGES = 64


def suggest_scaling(
    check: dict[str, Any], spec: ModelSpec, y: np.ndarray, predict: Callable[[ModelSpec], np.ndarray]
) -> dict[str, Any]:
    """``check`` with the named scaling that makes the model work, tried on the images of ``y``.

    ``predict(spec)`` returns the class probabilities of those images (at most
    :data:`SUGGEST_MAX_IMAGES`) fed with ``spec``. Each named scaling other than the assumed one is
    tried; the best is suggested (``check["suggested"]``, ``check["tried"]``, and a ``fix`` naming
    the flag) when its accuracy beats the assumed one and passes :func:`contract_check` itself.
    """
    y = np.asarray(y).reshape(-1)
    tried: dict[str, float] = {}
    for name in ("0-255", "imagenet", "minus1-1", "unit"):
        if name == spec.scaling:
            continue
        mean, std = scaling_mean_std(name, spec.channels)
        alt = spec_with(spec, scaling=name, mean=mean, std=std)
        proba = np.asarray(predict(alt), dtype=np.float64)
        if contract_check(alt, y, proba) is None:  # the alternative does not look misfed itself
            tried[name] = float(np.mean(proba.argmax(1) == y))
    if not tried:
        return check
    best = max(tried, key=lambda k: tried[k])
    if tried[best] <= check["accuracy"]:
        return {**check, "tried": tried}
    fix = (
        f"--scaling {best} gives {100 * tried[best]:.1f}% clean accuracy on {len(y)} of the images "
        f"(the assumed {spec.scaling!r}: {100 * check['accuracy']:.1f}%); rerun with --scaling {best}, or declare "
        "'scaling' in the model's metadata or a sidecar JSON"
    )
    return {**check, "tried": tried, "suggested": best, "fix": fix}
