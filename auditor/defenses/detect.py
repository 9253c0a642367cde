"""Adversarial-input detectors, calibrated to a target false-positive rate on benign data.

(a) **Reference-based** edge/SSIM detector (the project's source document, docs/algorithms.md §9.1):
    compare a suspect image with its trusted original. Canny edge maps E1, E2 (OpenCV, 8-bit
    grey, thresholds 100/200 by default — a common OpenCV choice, *not* from the source);
    ``edge = mean |E1 - E2|`` on a 0-255 scale; SSIM (Wang et al., IEEE TIP 2004) with
    ``skimage.metrics.structural_similarity(data_range=1.0)``. Flag when
    ``edge > T_edge`` OR ``SSIM < T_ssim`` (T_ssim = 0.95 from the source). This needs the
    clean original, so it is an integrity check, not a blind detector.

    Calibration (``calibrate_reference_detector``): benign pairs are clean images against
    lightly changed copies (:func:`auditor.defenses.calibration.make_benign_pairs`: JPEG quality
    85-95, or uniform noise of +-2/255). With ``n`` benign pairs the budget is ``k = n - ceil((n + 1)(1 - target_fpr))``
    flagged pairs (the split-conformal quantile, see :func:`conformal_budget`; about
    ``target_fpr * n - 1``), so the expected FPR on new benign pairs is <= target.
    The SSIM rule is applied first at T_ssim; if it alone flags more than ``k`` benign pairs,
    T_ssim is lowered so it flags at most ``floor(k / 2)`` (recorded as ``ssim_adjusted``).
    T_edge is then the smallest order statistic of the edge scores of the benign pairs that the
    SSIM rule does not flag such that at most the remaining budget exceed it (strict ``>``), i.e.
    the (1 - remaining budget / remaining pairs) empirical quantile. Hence the COMBINED rule flags
    at most ``k`` calibration pairs (empirical FPR <= target); the FPR on held-out benign pairs is
    reported separately by :func:`evaluate_detector`.

(b) **Feature squeezing** (Xu, Evans and Qi, NDSS 2018), reference-free: score = max over
    squeezers (bit depth 4, median 3x3, JPEG 75) of the L1 distance between the model's
    probabilities on x and on the squeezed x; the threshold is calibrated on clean images in
    the same way (at most :func:`conformal_budget` clean images above it).

Limits: both are evaded by attacks that know them (Carlini and Wagner, "Adversarial Examples
Are Not Easily Detected", AISec 2017; He et al., "Adversarial Example Defenses: Ensembles of
Weak Defenses are not Strong", WOOT 2017, which breaks feature squeezing).

Metrics per attack condition: detection rate, ROC AUC of each score (benign = 0, attacked = 1,
``sklearn.metrics.roc_auc_score``) and the ROC curve downsampled to at most 50 points
(:func:`auditor.metrics.compute_roc`). The report's FFT figure is :mod:`auditor.defenses.spectra`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from auditor.defenses.base import Preprocessor, check_batch, match_size, to_uint8
from auditor.defenses.calibration import (
    DEFAULT_TARGET_FPR,
    _budget_threshold_above,
    _budget_threshold_below,
    _check_target,
    conformal_budget,
)
from auditor.detector_records import DetectionRow, DetectorEval, RocCurve, ScoreResult
from auditor.errors import DataError, UsageError
from auditor.metrics import compute_roc

DEFAULT_CANNY = (100, 200)
DEFAULT_T_SSIM = 0.95


# ---------------------------------------------------------------------------- helpers
def _num(v: float | np.floating) -> float | None:
    """A JSON-safe float (NaN/inf -> None)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _pairs(clean: np.ndarray, suspect: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    c, s = check_batch(clean, f"{who} (clean)"), check_batch(suspect, f"{who} (suspect)")
    if len(c) != len(s):
        raise DataError(f"{who}: {len(c)} clean images but {len(s)} suspect images")
    return c, match_size(c, s)


# ---------------------------------------------------------------------------- reference-based detector
def edge_maps(x: np.ndarray, canny: tuple[int, int] = DEFAULT_CANNY) -> np.ndarray:
    """Canny edge maps (0/255, uint8 ``(N, H, W)``) of an ``(N, 1, H, W)`` batch, on 8-bit grey."""
    import cv2

    arr = check_batch(x, "edge maps")
    u8 = to_uint8(arr[:, 0])
    return np.stack([cv2.Canny(u8[i], canny[0], canny[1]) for i in range(len(u8))]) if len(u8) else u8


def edge_scores(clean: np.ndarray, suspect: np.ndarray, canny: tuple[int, int] = DEFAULT_CANNY) -> np.ndarray:
    """Per pair ``mean |E1 - E2|`` of the Canny maps, on a 0-255 scale (float64 ``(N,)``)."""
    c, s = _pairs(clean, suspect, "edge score")
    e1, e2 = edge_maps(c, canny).astype(np.int16), edge_maps(s, canny).astype(np.int16)
    return np.abs(e1 - e2).reshape(len(c), -1).mean(axis=1).astype(np.float64)


def ssim_scores(clean: np.ndarray, suspect: np.ndarray) -> np.ndarray:
    """Per pair SSIM (scikit-image defaults, ``data_range=1.0``), float64 ``(N,)``."""
    from skimage.metrics import structural_similarity

    c, s = _pairs(clean, suspect, "SSIM")
    return np.array([structural_similarity(c[i, 0], s[i, 0], data_range=1.0) for i in range(len(c))], dtype=np.float64)


@dataclass
class ReferenceDetector:
    """Edge/SSIM integrity check of (clean, suspect) pairs; build it with :func:`calibrate_reference_detector`.

    Flags a pair when ``edge > thresholds["edge"]`` or ``ssim < thresholds["ssim"]``.
    """

    t_edge: float
    t_ssim: float = DEFAULT_T_SSIM
    canny: tuple[int, int] = DEFAULT_CANNY
    target_fpr: float = DEFAULT_TARGET_FPR
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def thresholds(self) -> dict[str, float]:
        """``{"edge": T_edge, "ssim": T_ssim}``."""
        return {"edge": float(self.t_edge), "ssim": float(self.t_ssim)}

    def score(self, clean: np.ndarray, suspect: np.ndarray) -> dict[str, np.ndarray]:
        """``{"edge": (N,), "ssim": (N,)}`` for the pairs ``(clean[i], suspect[i])``."""
        return {"edge": edge_scores(clean, suspect, self.canny), "ssim": ssim_scores(clean, suspect)}

    def flag_scores(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """Decision from precomputed scores: bool ``(N,)``."""
        return (np.asarray(scores["edge"]) > self.t_edge) | (np.asarray(scores["ssim"]) < self.t_ssim)

    def flag(self, clean: np.ndarray, suspect: np.ndarray) -> np.ndarray:
        """True where the pair is flagged as attacked."""
        return self.flag_scores(self.score(clean, suspect))


def calibrate_reference_detector(
    clean: np.ndarray,
    benign: np.ndarray,
    target_fpr: float = DEFAULT_TARGET_FPR,
    t_ssim: float = DEFAULT_T_SSIM,
    canny: tuple[int, int] = DEFAULT_CANNY,
) -> ReferenceDetector:
    """Choose T_edge (and, if needed, lower T_ssim) so the combined rule's benign FPR <= target.

    Args:
        clean: ``(N, 1, H, W)`` originals.
        benign: their benign counterparts (see :func:`auditor.defenses.calibration.make_benign_pairs`), same shape.
        target_fpr: false-positive budget on the calibration pairs (default 0.05).
        t_ssim: SSIM threshold of the source document (default 0.95).
        canny: Canny low/high thresholds (default 100/200, a suggestion).

    See the module docstring for the exact rule.
    """
    target = _check_target(target_fpr)
    probe = ReferenceDetector(t_edge=float("inf"), t_ssim=t_ssim, canny=canny, target_fpr=target)
    scores = probe.score(clean, benign)
    edge, ssim = scores["edge"], scores["ssim"]
    n = len(edge)
    if n == 0:
        raise DataError("detector calibration needs at least one benign pair")
    k = conformal_budget(n, target)
    ssim_adjusted = False
    t_s = float(t_ssim)
    if int(np.sum(ssim < t_s)) > k:
        t_s = min(t_s, _budget_threshold_below(ssim, k // 2))
        ssim_adjusted = True
    by_ssim = ssim < t_s
    remaining = edge[~by_ssim]
    budget = k - int(by_ssim.sum())
    t_e = _budget_threshold_above(remaining, budget)
    det = ReferenceDetector(t_edge=t_e, t_ssim=t_s, canny=canny, target_fpr=target)
    flagged = det.flag_scores(scores)
    det.calibration = {
        "n_pairs": int(n),
        "budget": int(k),
        "flagged": int(flagged.sum()),
        "calibration_fpr": float(flagged.mean()),
        "flagged_by_ssim": int(by_ssim.sum()),
        "t_ssim_requested": float(t_ssim),
        "ssim_adjusted": ssim_adjusted,
        "benign_edge_mean": float(edge.mean()),
        "benign_edge_max": float(edge.max()),
        "benign_ssim_mean": float(ssim.mean()),
        "benign_ssim_min": float(ssim.min()),
    }
    return det


def _evaluate_reference(
    det: ReferenceDetector, clean: np.ndarray, benign: np.ndarray, suspects: dict[str, np.ndarray]
) -> DetectorEval:
    b = det.score(clean, benign)
    b_flag = det.flag_scores(b)
    rows = []
    for cond, sus in suspects.items():
        a = det.score(clean, sus)
        a_flag = det.flag_scores(a)
        some = len(a_flag) > 0
        scores = (
            ScoreResult(
                "edge",
                _num(a["edge"].mean()) if some else None,
                _roc("edge", b["edge"], a["edge"]),
                _num(np.mean(a["edge"] > det.t_edge)) if some else None,
            ),
            ScoreResult(
                "ssim",
                _num(a["ssim"].mean()) if some else None,
                _roc("ssim", 1.0 - b["ssim"], 1.0 - a["ssim"]),
                _num(np.mean(a["ssim"] < det.t_ssim)) if some else None,
            ),
        )
        rows.append(DetectionRow(cond, int(len(a_flag)), _num(a_flag.mean()) if some else None, scores, True))
    return DetectorEval(
        method="reference_edge_ssim",
        thresholds=det.thresholds,
        target_fpr=det.target_fpr,
        benign_fpr=_num(b_flag.mean()) if len(b_flag) else None,
        n_benign=int(len(b_flag)),
        benign={
            "mean_edge": _num(b["edge"].mean()) if len(b_flag) else None,
            "mean_ssim": _num(b["ssim"].mean()) if len(b_flag) else None,
        },
        calibration=det.calibration,
        rows=tuple(rows),
        canny=tuple(det.canny),
    )


def _roc(score: str, benign: np.ndarray, attacked: np.ndarray) -> RocCurve:
    """The ROC of one score (higher = attacked) as a typed curve."""
    auc, points = compute_roc(benign, attacked)
    return RocCurve(score, _num(auc) if auc is not None else None, tuple((p[0], p[1]) for p in points))


def evaluate_detector(
    detector: "ReferenceDetector | FeatureSqueezingDetector",
    clean: np.ndarray,
    benign: np.ndarray | None,
    suspects: dict[str, np.ndarray],
) -> DetectorEval:
    """Held-out evaluation (a typed record; results.json holds its ``to_json()``).

    Args:
        detector: a calibrated :class:`ReferenceDetector` or :class:`FeatureSqueezingDetector`.
        clean: ``(N, 1, H, W)`` held-out originals.
        benign: their benign counterparts (reference detector; ignored by feature squeezing,
            whose benign set is ``clean`` itself).
        suspects: condition name -> attacked versions of ``clean`` (same order and shape).

    Returns a :class:`~auditor.result_records.DetectorEval`: thresholds, target and held-out benign FPR,
    calibration, and one :class:`~auditor.result_records.DetectionRow` per suspect condition with each score's
    AUC, ROC and mean (the reference detector: ``edge`` and ``ssim``, each with its own detection rate;
    feature squeezing: ``score``).
    """
    if isinstance(detector, FeatureSqueezingDetector):
        return detector.evaluate(clean, suspects)
    if benign is None:
        raise UsageError("evaluate_detector: the reference-based detector needs benign pairs")
    return _evaluate_reference(detector, clean, benign, suspects)


# ---------------------------------------------------------------------------- feature squeezing
def default_squeezers() -> list[Preprocessor]:
    """Bit depth 4, median 3x3, JPEG 75 (the squeezers of this project; Xu et al. NDSS 2018)."""
    from auditor.defenses.transforms import BitDepthReduction, JpegCompression, MedianSmoothing

    return [BitDepthReduction(4), MedianSmoothing(3), JpegCompression(75)]


class FeatureSqueezingDetector:
    """Reference-free detector: max L1 distance of predictions before/after squeezing.

    ``score(x) = max_s sum_k |p(x)_k - p(s(x))_k|`` (in ``[0, 2]``), flagged above a threshold
    calibrated on clean images so at most ``conformal_budget(n, target_fpr)`` of them exceed it.

    Args:
        predict_proba: ``(N, 1, H, W)`` float32 in ``[0, 1]`` -> ``(N, K)`` probabilities.
        squeezers: preprocessors to compare against (default :func:`default_squeezers`).
        target_fpr: false-positive budget on clean images (default 0.05).
    """

    def __init__(
        self,
        predict_proba: Callable[[np.ndarray], np.ndarray],
        squeezers: list[Preprocessor] | None = None,
        target_fpr: float = DEFAULT_TARGET_FPR,
    ) -> None:
        self.predict_proba = predict_proba
        self.squeezers = list(squeezers) if squeezers is not None else default_squeezers()
        self.target_fpr = _check_target(target_fpr)
        self.threshold: float | None = None
        self.calibration: dict[str, Any] = {}

    @property
    def thresholds(self) -> dict[str, float | None]:
        """``{"score": T}`` (None before :meth:`calibrate`)."""
        return {"score": self.threshold}

    def _proba(self, x: np.ndarray) -> np.ndarray:
        p = np.asarray(self.predict_proba(x), dtype=np.float64)
        if p.ndim != 2 or len(p) != len(x):
            raise DataError(f"feature squeezing: predict_proba returned shape {p.shape} for {len(x)} images")
        return p

    def score_per_squeezer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """L1 distance per squeezer name, each ``(N,)``."""
        arr = check_batch(x, "feature squeezing")
        p0 = self._proba(arr)
        return {s.name: np.abs(p0 - self._proba(s(arr))).sum(axis=1) for s in self.squeezers}

    def score(self, x: np.ndarray) -> np.ndarray:
        """Max L1 distance over the squeezers, ``(N,)``."""
        per = self.score_per_squeezer(x)
        return np.max(np.stack(list(per.values())), axis=0) if per else np.zeros(len(x))

    def calibrate(self, clean: np.ndarray, target_fpr: float | None = None) -> "FeatureSqueezingDetector":
        """Set the threshold from clean images (at most ``conformal_budget(n, target)`` above it); returns self."""
        if target_fpr is not None:
            self.target_fpr = _check_target(target_fpr)
        s = self.score(clean)
        if len(s) == 0:
            raise DataError("feature squeezing calibration needs at least one clean image")
        k = conformal_budget(len(s), self.target_fpr)
        self.threshold = _budget_threshold_above(s, k)
        self.calibration = {
            "n_images": int(len(s)),
            "budget": k,
            "calibration_fpr": float(np.mean(s > self.threshold)),
            "clean_score_mean": float(s.mean()),
            "clean_score_max": float(s.max()),
        }
        return self

    def flag_scores(self, scores: np.ndarray) -> np.ndarray:
        """Decision from precomputed scores."""
        if self.threshold is None:
            raise UsageError("feature squeezing: calibrate() before flagging")
        return np.asarray(scores) > self.threshold

    def flag(self, x: np.ndarray) -> np.ndarray:
        """True where an image is flagged as adversarial."""
        return self.flag_scores(self.score(x))

    def evaluate(self, clean: np.ndarray, suspects: dict[str, np.ndarray]) -> DetectorEval:
        """Held-out evaluation: benign = ``clean`` (see :func:`evaluate_detector`)."""
        b = self.score(clean)
        b_flag = self.flag_scores(b)
        rows = []
        for cond, sus in suspects.items():
            a = self.score(sus)
            a_flag = self.flag_scores(a)
            score = ScoreResult("score", _num(a.mean()) if len(a) else None, _roc("score", b, a))
            rows.append(DetectionRow(cond, int(len(a)), _num(a_flag.mean()) if len(a) else None, (score,)))
        return DetectorEval(
            method="feature_squeezing",
            thresholds=self.thresholds,
            target_fpr=self.target_fpr,
            benign_fpr=_num(b_flag.mean()) if len(b) else None,
            n_benign=int(len(b)),
            benign={"mean_score": _num(b.mean()) if len(b) else None},
            calibration=self.calibration,
            rows=tuple(rows),
            squeezers=tuple(s.name for s in self.squeezers),
        )
