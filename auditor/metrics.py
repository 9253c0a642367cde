"""Classification metrics as pure functions (no torch, no I/O).

Point estimates come from scikit-learn. Confidence intervals are percentile
bootstrap intervals (Efron & Tibshirani, *An Introduction to the Bootstrap*,
1993): resampling *patients* when patient ids are known (a patient's images
stay together, since images of one patient are correlated), else images.
Every bootstrap replicate is computed from a resampled confusion matrix, so
the interval of each metric uses the same replicates.

A percentile bootstrap cannot see beyond its sample: a rate of 0/n or n/n
gets the zero-width interval ``[0, 0]`` or ``[1, 1]``. Every reported rate
interval (accuracy, per-class sensitivity, attack success and flip rate) is
therefore :func:`rate_ci`: the bootstrap interval, except at 0/n and n/n where
it is the Wilson score interval at the n images of the rate
(:func:`wilson_interval`; Wilson, JASA 1927), which for 0/n is
``[0, z²/(n + z²)]`` (0.2425 for n = 12). Verdicts that compare with a rate
also use :func:`guarded_ci` (the bootstrap interval widened to cover the Wilson one).

"A beats B" statements on the same images are exact McNemar tests
(:func:`mcnemar_exact`: a two-sided binomial test on the discordant pairs;
McNemar, Psychometrika 1947) with the Holm step-down correction over the
family of statements (:func:`holm`; Holm, Scand. J. Statist. 1979).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

DEFAULT_N_BOOT = 1000
CI_LEVEL = 0.95
#: points kept of a ROC curve in results.json
ROC_MAX_POINTS = 50


def _group_index(groups: Sequence[str | None] | None, n: int) -> np.ndarray:
    """Integer group id per sample; samples without an id form their own group."""
    if groups is None:
        return np.arange(n)
    out = np.empty(n, dtype=np.int64)
    # dense, deterministic numbering: anonymous samples first, then named groups by first appearance
    named = {}
    nxt = 0
    for i, g in enumerate(groups):
        if g is None or g == "":
            out[i] = nxt
            nxt += 1
    for i, g in enumerate(groups):
        if g is None or g == "":
            continue
        key = str(g)
        if key not in named:
            named[key] = nxt
            nxt += 1
        out[i] = named[key]
    return out


def _metrics_from_cm(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and per-class rates from (B, K, K) confusion matrices."""
    cm = cm.astype(np.float64)
    total = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    pred = cm.sum(axis=1)
    true = cm.sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc = np.where(total > 0, tp.sum(axis=1) / total, np.nan)
        prec = np.where(pred > 0, tp / pred, 0.0)
        rec = np.where(true > 0, tp / true, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
        tn = total[:, None] - true - pred + tp
        neg = total[:, None] - true
        spec = np.where(neg > 0, tn / neg, np.nan)
    present = true > 0
    macro_f1 = np.where(present.any(axis=1), (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)
    # a class absent from a resample has no recall: leave it out of that class's interval
    return {"accuracy": acc, "macro_f1": macro_f1, "recall": np.where(present, rec, np.nan), "specificity": spec}


#: group draws held at once by the bootstrap (its memory bound: 8 bytes each, a few arrays of this size:
#: ~16 MB; 2,000,000 took ~64 MB and was no faster on 100,000 images)
BOOT_CHUNK_DRAWS = 500_000


def _bootstrap_sums(gid: np.ndarray, n_boot: int, seed: int, per_group: np.ndarray) -> np.ndarray:
    """``(n_boot, M)`` sums of ``per_group`` ``(n_groups, M)`` rows over each cluster-bootstrap resample.

    Resample ``b`` draws ``n_groups`` groups with replacement (row ``b`` of one
    ``rng.integers(0, n_groups, (n_boot, n_groups))`` stream); the draws are made a block of
    resamples at a time, so memory stays bounded for archives with many patients. The sums are
    of whole counts, hence exact whatever the block size.
    """
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, per_group.shape[1]), dtype=np.float64)
    if n_groups == 0:
        return out
    block = max(1, min(n_boot, BOOT_CHUNK_DRAWS // n_groups))
    for b0 in range(0, n_boot, block):
        m = min(block, n_boot - b0)
        draws = rng.integers(0, n_groups, size=(m, n_groups))
        flat = (draws + (np.arange(m) * n_groups)[:, None]).ravel()
        weights = np.bincount(flat, minlength=m * n_groups).reshape(m, n_groups).astype(np.float64)
        out[b0 : b0 + m] = weights @ per_group
    return out


def bootstrap_cms(
    y_true: np.ndarray, y_pred: np.ndarray, k: int, groups=None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0
) -> np.ndarray:
    """``(n_boot, K, K)`` confusion matrices of cluster-bootstrap resamples."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    gid = _group_index(groups, len(y_true))
    n_groups = int(gid.max()) + 1 if len(gid) else 0
    per_group = np.zeros((n_groups, k * k), dtype=np.float64)
    np.add.at(per_group, (gid, y_true * k + y_pred), 1.0)
    return _bootstrap_sums(gid, n_boot, seed, per_group).reshape(n_boot, k, k)


def _ci(values: np.ndarray) -> list[float] | None:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    lo, hi = np.quantile(v, [(1 - CI_LEVEL) / 2, 1 - (1 - CI_LEVEL) / 2])
    return [float(lo), float(hi)]


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    groups: Sequence[str | None] | None = None,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
) -> dict[str, Any]:
    """Accuracy, per-class and averaged precision/recall/F1, sensitivity/specificity, CIs.

    ``y_true``/``y_pred`` are class indices into ``class_names``. Returns the
    ``metrics`` object of results.json. Sensitivity is the class's recall,
    specificity its one-vs-rest true-negative rate. The accuracy and sensitivity
    CIs are :func:`rate_ci` (Wilson at 0/n and n/n); macro-F1 is not a proportion
    of images and keeps its bootstrap interval.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = len(class_names)
    labels = list(range(k))
    n = int(len(y_true))
    if n == 0:
        return {
            "n": 0,
            "labels": list(class_names),
            "accuracy": None,
            "accuracy_ci": None,
            "macro_f1": None,
            "macro_f1_ci": None,
            "weighted_f1": None,
            "per_class": {},
            "confusion_matrix": [[0] * k for _ in range(k)],
        }
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    prec, rec, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [i for i in labels if support[i] > 0]
    macro_f1 = float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0)) if present else None
    weighted_f1 = float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))
    boot = _metrics_from_cm(bootstrap_cms(y_true, y_pred, k, groups, n_boot, seed)) if n_boot > 0 else None
    point = _metrics_from_cm(cm[None])
    per_class = {}
    for i, name in enumerate(class_names):
        spec = point["specificity"][0, i]
        per_class[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "sensitivity": float(rec[i]) if support[i] > 0 else None,
            "specificity": None if not np.isfinite(spec) else float(spec),
            "sensitivity_ci": rate_ci(_ci(boot["recall"][:, i]), int(cm[i, i]), int(support[i]))
            if boot is not None and support[i] > 0
            else None,
        }
    return {
        "n": n,
        "labels": list(class_names),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "accuracy_ci": rate_ci(_ci(boot["accuracy"]), int(np.trace(cm)), n) if boot is not None else None,
        "macro_f1": macro_f1,
        "macro_f1_ci": _ci(boot["macro_f1"]) if boot is not None else None,
        "weighted_f1": weighted_f1,
        "macro_precision": float(np.mean([prec[i] for i in present])) if present else None,
        "macro_recall": float(np.mean([rec[i] for i in present])) if present else None,
        "per_class": per_class,
        "confusion_matrix": cm.astype(int).tolist(),
        "bootstrap": {
            "n_boot": n_boot,
            "unit": "patient" if groups is not None and any(groups) else "image",
            "seed": seed,
            "level": CI_LEVEL,
        },
    }


def rate_ci(ci: list[float] | None, k: int, n: int) -> list[float] | None:
    """The reported 95% CI of a rate of ``k`` in ``n``: the bootstrap interval ``ci``, except at ``k = 0`` or
    ``k = n``, where every bootstrap replicate equals the rate and the interval would have zero width; there it
    is the Wilson score interval at ``n`` images (:func:`wilson_interval`), not clustered by patient: with every
    image 0 (or 1) the sample holds no information about the within-patient correlation, so a design effect
    would be a guess (docs/algorithms.md §10). None stays None (bootstrap off, ``--n-boot 0``)."""
    if ci is None or n <= 0 or 0 < k < n:
        return ci
    return wilson_interval(k, n)


def ratio_ci(num: np.ndarray, den: np.ndarray, groups, n_boot: int, seed: int) -> list[float] | None:
    """95% CI of ``sum(num) / sum(den)`` (per-image 0/1 indicators): cluster bootstrap, the Wilson interval at
    0/n and n/n (:func:`rate_ci`)."""
    if n_boot <= 0 or len(num) == 0:
        return None
    gid = _group_index(groups, len(num))
    n_groups = int(gid.max()) + 1
    per_group = np.zeros((n_groups, 2), dtype=np.float64)
    np.add.at(per_group, gid, np.stack([num, den], axis=1).astype(np.float64))
    sums = _bootstrap_sums(gid, n_boot, seed, per_group)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sums[:, 1] > 0, sums[:, 0] / sums[:, 1], np.nan)
    return rate_ci(_ci(ratio), int(np.sum(num)), int(np.sum(den)))


def compute_attack_rates(
    y_true: Sequence[int] | np.ndarray,
    y_clean: Sequence[int] | np.ndarray,
    y_adv: Sequence[int] | np.ndarray,
    groups: Sequence[str | None] | None = None,
    seed: int = 0,
    n_boot: int = DEFAULT_N_BOOT,
) -> dict[str, Any]:
    """Attack success rate and flip rate of one attacked (or defended) condition, with 95% CIs.

    * **attack success rate** = images classified correctly when clean that the
      condition makes wrong / images classified correctly when clean. Clean
      errors are left out: an attack cannot "succeed" on an image the model
      already gets wrong (the usual untargeted definition; TransferAttack's
      wrong/all would count clean errors as successes).
    * **flip rate** = images whose prediction differs from the clean prediction
      / all images (whatever the label says).

    CIs are percentile cluster-bootstrap intervals over patients when
    ``groups`` holds patient ids (else over images), the same resampling as
    :func:`compute_metrics` with the same ``seed``; at 0/n and n/n the Wilson
    interval (:func:`rate_ci`).
    """
    y_true = np.asarray(y_true)
    y_clean = np.asarray(y_clean)
    y_adv = np.asarray(y_adv)
    n = len(y_true)
    correct = y_clean == y_true
    fooled = correct & (y_adv != y_true)
    changed = y_adv != y_clean
    use_groups = groups if groups is not None and any(groups) else None
    ones = np.ones(n, dtype=bool)
    return {
        "attack_success_rate": float(fooled.sum() / correct.sum()) if correct.sum() else None,
        "attack_success_rate_ci": ratio_ci(fooled, correct, use_groups, n_boot, seed) if correct.sum() else None,
        "flip_rate": float(changed.mean()) if n else None,
        "flip_rate_ci": ratio_ci(changed, ones, use_groups, n_boot, seed) if n else None,
        "n_clean_correct": int(correct.sum()),
        "n_fooled": int(fooled.sum()),
        "n_flipped": int(changed.sum()),
        "rates_bootstrap": {
            "n_boot": n_boot,
            "unit": "patient" if use_groups is not None else "image",
            "seed": seed,
            "level": CI_LEVEL,
        },
    }


def wilson_interval(k: float, n: int, level: float = CI_LEVEL) -> list[float] | None:
    """Wilson score interval (``level``, default 95%) of ``k`` successes in ``n`` trials (Wilson, JASA 1927);
    never zero-width. ``k`` is rounded to a whole count; None when ``n`` is 0. Computed by
    :func:`scipy.stats.binomtest` (``proportion_ci(method="wilson")``, no continuity correction); the bound at
    0/n (n/n) is exactly 0 (1), so the rate lies inside its interval whatever the rounding."""
    if n <= 0:
        return None
    k = min(max(int(round(k)), 0), n)
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    lo = 0.0 if k == 0 else max(0.0, float(ci.low))
    hi = 1.0 if k == n else min(1.0, float(ci.high))
    return [lo, hi]


def guarded_ci(ci: list[float] | None, rate: float, n: int) -> list[float] | None:
    """The bootstrap CI of a rate widened to cover its Wilson interval: a percentile bootstrap collapses
    to ``[0, 0]`` (``[1, 1]``) when the rate is 0/n (n/n), which would let any comparison "clear" it.
    None when ``ci`` is None (bootstrap off)."""
    if ci is None:
        return None
    w = wilson_interval(rate * n, n)
    return [min(ci[0], w[0]), max(ci[1], w[1])] if w else ci


def mcnemar_exact(a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """Exact McNemar test of two paired 0/1 outcomes on the same images (McNemar, Psychometrika 1947).

    ``a_only`` counts the images only A gets right, ``b_only`` those only B gets right; the two-sided
    p-value is the binomial test of ``a_only`` in ``a_only + b_only`` discordant pairs at 1/2
    (:func:`scipy.stats.binomtest`); 1.0 without discordant pairs.
    """
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired outcomes must have the same length")
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = a_only + b_only
    p = float(binomtest(a_only, n, 0.5).pvalue) if n else 1.0
    return {"a_only": a_only, "b_only": b_only, "p": min(1.0, p)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (Holm, Scand. J. Statist. 1979), in the input order.

    The i-th smallest p-value (i from 0) is multiplied by ``m - i``, made non-decreasing along that
    order and capped at 1; a statement is decided at level α when its adjusted p-value is ≤ α, which
    keeps the family-wise error rate at α over the ``m`` statements.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return [float(v) for v in out]


def compute_roc(
    benign_scores: np.ndarray, attacked_scores: np.ndarray, max_points: int = ROC_MAX_POINTS
) -> tuple[float | None, list[list[float]]]:
    """ROC AUC and curve for "higher score = attacked" (benign = 0, attacked = 1).

    Returns ``(auc, [[fpr, tpr], ...])`` with at most ``max_points`` points (first and last
    kept); ``(None, [])`` when either set is empty.
    """
    b = np.asarray(benign_scores, dtype=np.float64).ravel()
    a = np.asarray(attacked_scores, dtype=np.float64).ravel()
    if len(b) == 0 or len(a) == 0:
        return None, []
    y = np.r_[np.zeros(len(b)), np.ones(len(a))]
    s = np.nan_to_num(np.r_[b, a], nan=0.0)
    auc = float(roc_auc_score(y, s))
    fpr, tpr, _ = roc_curve(y, s)
    if len(fpr) > max_points:
        idx = np.unique(np.round(np.linspace(0, len(fpr) - 1, max_points)).astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return auc, [[round(float(f), 6), round(float(t), 6)] for f, t in zip(fpr, tpr)]
