"""Defense figures of the executive summary: figures that cannot flatter a defense.

Four rules, each a small function here (the HTML and console summaries only lay them out):

* **Adaptive beats non-adaptive.** Where ``--bpda`` ran, a defense's accuracy under an
  attack is the worse of the non-adaptive condition (``jpeg:75/usmm@16``) and the
  adaptive one (``usmm@16+bpda:jpeg:75``, BPDA: Athalye, Carlini & Wagner, ICML 2018),
  and ``benefit_vanishes`` is shown in words.
* **Select on one half, report on the other.** The best defense is chosen on a seeded
  half of the patients (images without a patient id are their own patient) and its
  figures are measured on the other half, so the choice cannot fit the noise of the
  images it is scored on. With too few images (or no per-image predictions) it is
  chosen and scored on the same images, and says so.
* **Tested, not eyeballed.** Which defense is named best, and the exact paired test it must pass, live
  in :mod:`auditor.report.defense_verdict` and :mod:`auditor.report.defense_claim`; the undefended worst
  case's CI (patient bootstrap, Wilson at 0/n and n/n) is shown beside it, not used to decide.
* **Signed words for the clean change.** ``+5.0 pp gain``, ``−3.0 pp loss``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from auditor.metrics import DEFAULT_N_BOOT, guarded_ci, ratio_ci
from auditor.report.defense_conditions import (
    benefit_vanishes,
    defense_attacked,
    defense_clean,
    defense_names,
    is_adaptive,
)
from auditor.report.gates import attack_conditions, clean_condition
from auditor.report.numbers import _finite
from auditor.types import AuditResult, Condition

#: fewest images each half needs for the held-out selection
MIN_HALF_IMAGES = 10
VANISHES_TEXT = "benefit vanishes under an adaptive attack"
MINUS = "\u2212"


def signed_change(v: Any, digits: int = 1) -> str:
    """A change of accuracy in words: 0.05 -> ``+5.0 pp gain``, -0.03 -> ``−3.0 pp loss``; None -> ``—``."""
    if not _finite(v):
        return "—"
    pp = round(100 * v, digits)
    if pp == 0:
        return f"{0:.{digits}f} pp (no change)"
    return f"+{pp:.{digits}f} pp gain" if pp > 0 else f"{MINUS}{-pp:.{digits}f} pp loss"


# --------------------------------------------------------------------------- accuracy on a subset of images


class Scorer:
    """Accuracy of a condition on a subset of the images (from its per-image predictions), or on all
    images from its stored metrics when ``idx`` is None."""

    def __init__(self, result: AuditResult) -> None:
        self.n = len(result.samples)
        self.y = np.array(
            [s["label_index"] if isinstance(s.get("label_index"), int) else -1 for s in result.samples], dtype=np.int64
        )
        self.groups = [s.get("patient_id") for s in result.samples]
        seed = result.parameters.get("seed", 0)
        self.seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63 else 0
        n_boot = result.parameters.get("n_boot")
        self.n_boot = int(n_boot) if isinstance(n_boot, int) and n_boot >= 0 else DEFAULT_N_BOOT

    def has_predictions(self, conds: Sequence[Condition]) -> bool:
        """True when every condition carries one prediction per sample."""
        return self.n > 0 and all(len(c.predictions) == self.n for c in conds)

    def correct(self, c: Condition, idx: np.ndarray) -> np.ndarray:
        """Per-image correctness of ``c`` on ``idx``."""
        return np.asarray(c.predictions, dtype=np.int64)[idx] == self.y[idx]

    def accuracy(self, c: Condition | None, idx: np.ndarray | None) -> float | None:
        """Accuracy of ``c`` on the images ``idx`` (None: the stored accuracy on all images)."""
        if c is None:
            return None
        if idx is None:
            v = c.metrics.get("accuracy")
            return float(v) if _finite(v) else None
        return float(self.correct(c, idx).mean()) if len(idx) else None

    def accuracy_ci(self, c: Condition, idx: np.ndarray | None) -> list[float] | None:
        """95% CI of the accuracy of ``c`` on ``idx`` (patient bootstrap); the stored CI for all images."""
        if idx is None:
            ci = c.metrics.get("accuracy_ci")
            return list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
        groups = [self.groups[i] for i in idx]
        hits = self.correct(c, idx)
        return ratio_ci(hits, np.ones(len(idx), bool), groups if any(groups) else None, self.n_boot, self.seed)


def patient_halves(samples: Sequence[dict], seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(selection, evaluation)`` image indices: a seeded half of the patients each (images without a
    patient id count as their own patient); None when a half would hold fewer than MIN_HALF_IMAGES."""
    n = len(samples)
    keys = [str(s.get("patient_id")) if s.get("patient_id") else f"\0image{i}" for i, s in enumerate(samples)]
    patients = list(dict.fromkeys(keys))
    order = np.random.default_rng(seed).permutation(len(patients))
    chosen: set[str] = set()
    count = 0
    sizes = Counter(keys)
    for j in order:
        if count >= n / 2:
            break
        chosen.add(patients[j])
        count += sizes[patients[j]]
    sel = np.array([i for i, k in enumerate(keys) if k in chosen], dtype=np.int64)
    ev = np.array([i for i, k in enumerate(keys) if k not in chosen], dtype=np.int64)
    if len(sel) < MIN_HALF_IMAGES or len(ev) < MIN_HALF_IMAGES:
        return None
    return sel, ev


# --------------------------------------------------------------------------- per-defense figures


def defense_figures(result: AuditResult, defense: str, scorer: Scorer, idx: np.ndarray | None) -> dict[str, Any]:
    """Clean accuracy with the defense, its signed clean change, and its worst attacked accuracy
    (the minimum over non-adaptive and adaptive conditions) on the images ``idx``."""
    clean_acc = scorer.accuracy(clean_condition(result), idx)
    dclean = defense_clean(result, defense)
    dclean_acc = scorer.accuracy(dclean, idx)
    scored = [(a, c) for c in defense_attacked(result, defense) if (a := scorer.accuracy(c, idx)) is not None]
    robust, robust_cond = min(scored, key=lambda t: t[0]) if scored else (None, None)
    change = dclean_acc - clean_acc if dclean_acc is not None and clean_acc is not None else None
    return {
        "name": defense,
        "clean_cond": dclean,
        "clean_acc": dclean_acc,
        "clean_change": change,
        "clean_change_text": signed_change(change),
        "robust": robust,
        "robust_cond": robust_cond,
        "adaptive": any(is_adaptive(c) for c in defense_attacked(result, defense)),
        "adaptive_attacks": sorted(
            {c.attack for c in defense_attacked(result, defense) if is_adaptive(c) and c.attack}
        ),
        "benefit_vanishes": benefit_vanishes(result, defense),
    }


def defense_summaries(result: AuditResult) -> list[dict[str, Any]]:
    """One dict per defense on all images (the defenses table), adaptive-aware."""
    scorer = Scorer(result)
    out = []
    for d in defense_names(result):
        fig = defense_figures(result, d, scorer, None)
        fig["cost_ms"] = next(
            (
                c.extra.cost_ms_per_image
                for c in result.conditions
                if c.defense == d and _finite(c.extra.cost_ms_per_image)
            ),
            None,
        )
        out.append(fig)
    return out


def rank_key(fig: dict[str, Any]) -> tuple[float, float]:
    """Sort key of a defense: worst attacked accuracy, then clean accuracy (missing figures rank last)."""
    return (
        fig["robust"] if fig["robust"] is not None else -1.0,
        fig["clean_acc"] if fig["clean_acc"] is not None else -1.0,
    )


def undefended_worst(result: AuditResult, scorer: Scorer, idx: np.ndarray | None) -> dict[str, Any] | None:
    """The worst undefended attack condition on ``idx``, its accuracy and 95% CI there (bootstrap,
    widened to the Wilson interval)."""
    scored = [(a, c) for c in attack_conditions(result) if (a := scorer.accuracy(c, idx)) is not None]
    if not scored:
        return None
    acc, cond = min(scored, key=lambda t: t[0])
    n = len(idx) if idx is not None else int(cond.metrics.get("n") or 0)
    return {"cond": cond, "accuracy": acc, "ci": guarded_ci(scorer.accuracy_ci(cond, idx), acc, n)}
