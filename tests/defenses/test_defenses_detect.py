"""Detectors: reference-based edge/SSIM (calibrated), feature squeezing, ROC and FFT helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auditor.defenses.calibration import conformal_budget, make_benign_pairs
from auditor.defenses.detect import (
    FeatureSqueezingDetector,
    ReferenceDetector,
    calibrate_reference_detector,
    edge_scores,
    evaluate_detector,
    ssim_scores,
)
from auditor.defenses.spectra import fft_spectra
from auditor.errors import DataError, UsageError
from auditor.metrics import compute_roc


def synth(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth background plus two bright/dark rectangles (so Canny finds edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        img = 0.4 + 0.2 * np.cos(2 * np.pi * (rng.uniform(0, 1.5) * xx + rng.uniform(0, 1.5) * yy) + rng.uniform(0, 6))
        for _ in range(2):
            y0, x0 = rng.integers(2, size // 2, 2)
            h, w = rng.integers(6, size // 2, 2)
            img[y0 : y0 + h, x0 : x0 + w] += rng.uniform(0.15, 0.35) * rng.choice([-1, 1])
        out[i, 0] = np.clip(img, 0, 1)
    return out


def sign_noise(x: np.ndarray, eps: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(x + eps * rng.choice([-1.0, 1.0], x.shape), 0, 1).astype(np.float32)


def test_identical_pair_scores_and_not_flagged():
    x = synth(3)
    det = ReferenceDetector(t_edge=5.0)
    s = det.score(x, x)
    np.testing.assert_allclose(s["ssim"], 1.0)
    np.testing.assert_array_equal(s["edge"], 0.0)
    assert not det.flag(x, x).any()


def test_strong_perturbation_is_flagged():
    x = synth(3)
    det = ReferenceDetector(t_edge=50.0)
    s = det.score(x, sign_noise(x, 0.3, 1))
    assert (s["ssim"] < 0.5).all() and (s["edge"] > 0).all()
    assert det.flag(x, sign_noise(x, 0.3, 1)).all()


def test_edge_score_hand_made():
    # a vertical step edge in the clean image, nothing in the suspect: |E1 - E2| = 255 where E1 = 255
    clean = np.zeros((1, 1, 16, 16), np.float32)
    clean[..., 8:] = 1.0
    flat = np.full_like(clean, 0.5)
    e = edge_scores(clean, flat)[0]
    assert e > 0 and (e / 255 * 256) == pytest.approx(round(e / 255 * 256))  # whole number of edge pixels
    assert ssim_scores(clean, clean)[0] == pytest.approx(1.0)


def test_suspect_is_resized_to_clean_size():
    x = synth(2, 32)
    big = np.repeat(np.repeat(x, 2, axis=2), 2, axis=3)
    s = ReferenceDetector(t_edge=1e9).score(x, big)
    assert (s["ssim"] > 0.9).all()


def test_benign_pairs_are_small_seeded_and_mixed():
    x = synth(20)
    b1, kinds = make_benign_pairs(x, seed=5, return_kinds=True)
    b2 = make_benign_pairs(x, seed=5)
    np.testing.assert_array_equal(b1, b2)
    assert b1.shape == x.shape and b1.dtype == np.float32
    assert sum(k == "noise" for k in kinds) == 10 and all(k == "noise" or 85 <= int(k[5:]) <= 95 for k in kinds)
    noise_idx = [i for i, k in enumerate(kinds) if k == "noise"]
    assert np.abs(b1[noise_idx] - x[noise_idx]).max() <= 2 / 255 + 1e-6
    assert not np.array_equal(make_benign_pairs(x, seed=6), b1)


def test_conformal_budget():
    assert conformal_budget(200, 0.05) == 9  # ceil(201 * 0.95) = 191 -> 9 may exceed
    assert conformal_budget(19, 0.05) == 0 and conformal_budget(1, 0.05) == 0
    assert conformal_budget(1000, 0.1) == 99


#: calibration folds and their size for the held-out FPR checks (split-conformal calibration)
FOLDS, FOLD = 10, 200


def _held_out_fpr_bound(target: float) -> float:
    """Upper bound on the mean held-out FPR over FOLDS disjoint calibrations of FOLD items each.

    Split-conformal calibration guarantees E[FPR on new benign items] <= target; given one
    calibration set the FPR varies with sd ~ sqrt(target (1 - target) / (n + 2)) (a Beta law), so
    the mean over FOLDS independent calibrations has sd ~ that / sqrt(FOLDS) (0.5 points here).
    3.5 sd leaves about 1 in 4000 for a false alarm, far below 2x the target.
    """
    return target + 3.5 * float(np.sqrt(target * (1 - target) / (FOLD + 2) / FOLDS))


def _fold_splits(n: int):
    """(calibration, held-out) index pairs: FOLDS disjoint calibration blocks, the rest held out."""
    idx = np.arange(n)
    for f in range(FOLDS):
        cal = idx[f * FOLD : (f + 1) * FOLD]
        yield cal, np.setdiff1d(idx, cal)


def test_calibration_reaches_target_fpr_on_held_out_benign_pairs():
    n = FOLDS * FOLD + 200
    x = synth(n, seed=3)
    benign = make_benign_pairs(x, seed=4)
    scores = ReferenceDetector(t_edge=float("inf")).score(x, benign)  # per pair, independent of the thresholds
    fprs = []
    for cal, held in _fold_splits(n):
        det = calibrate_reference_detector(x[cal], benign[cal], target_fpr=0.05)
        assert det.calibration["calibration_fpr"] <= 0.05
        assert np.isfinite(det.thresholds["edge"])
        fprs.append(det.flag_scores({k: v[held] for k, v in scores.items()}).mean())
    assert det.thresholds["ssim"] == 0.95
    assert np.mean(fprs) <= _held_out_fpr_bound(0.05), fprs


def test_calibration_lowers_ssim_threshold_when_ssim_alone_exceeds_budget():
    x = synth(100, seed=7)
    heavy = sign_noise(x, 0.08, 2)  # "benign" pairs that SSIM 0.95 would mostly flag
    det = calibrate_reference_detector(x, heavy, target_fpr=0.1)
    assert det.calibration["ssim_adjusted"] and det.thresholds["ssim"] < 0.95
    assert det.flag(x, heavy).mean() <= 0.1


def test_evaluate_detector_json_shape():
    x = synth(120, seed=11)
    benign = make_benign_pairs(x, seed=1)
    det = calibrate_reference_detector(x[:60], benign[:60])
    suspects = {"noise16": sign_noise(x[60:], 16 / 255, 0), "noise2": sign_noise(x[60:], 1 / 255, 0)}
    res = evaluate_detector(det, x[60:], benign[60:], suspects).to_json()
    json.dumps(res, allow_nan=False)
    assert set(res) >= {"thresholds", "target_fpr", "benign_fpr", "per_condition"}
    assert res["target_fpr"] == 0.05 and 0.0 <= res["benign_fpr"] <= 1.0
    strong, weak = res["per_condition"]["noise16"], res["per_condition"]["noise2"]
    for c in (strong, weak):
        assert {"detection_rate", "auc_edge", "auc_ssim", "roc_edge"} <= set(c)
        assert 2 <= len(c["roc_edge"]) <= 50 and c["roc_edge"][0] == [0.0, 0.0] and c["roc_edge"][-1] == [1.0, 1.0]
    assert strong["detection_rate"] == 1.0 and strong["auc_ssim"] > 0.99
    assert strong["detection_rate"] >= weak["detection_rate"]
    with pytest.raises(UsageError):
        evaluate_detector(det, x[60:], None, suspects)


def test_compute_roc_hand_made_and_downsampled():
    auc, roc = compute_roc([0.1, 0.2, 0.3, 0.4], [0.35, 0.5, 0.6, 0.7])
    assert auc == pytest.approx(15 / 16)
    assert roc[0] == [0.0, 0.0] and roc[-1] == [1.0, 1.0]
    rng = np.random.default_rng(0)
    auc2, roc2 = compute_roc(rng.normal(0, 1, 500), rng.normal(1, 1, 500))
    assert 0.7 < auc2 < 0.85 and len(roc2) <= 50
    assert compute_roc([], [1.0]) == (None, [])


def test_fft_spectra():
    x = synth(1)
    sp = fft_spectra(x[0], x[0])
    assert set(sp) == {"clean", "suspect", "difference"}
    assert sp["clean"].shape == (32, 32) and sp["clean"].dtype == np.float32
    np.testing.assert_array_equal(sp["difference"], 0.0)
    # zero frequency is centred: the DC term (sum of pixels) sits at (H/2, W/2)
    assert sp["clean"][16, 16] == pytest.approx(np.log1p(x[0, 0].astype(np.float64).sum()), rel=1e-5)
    with pytest.raises(DataError):
        fft_spectra(synth(2), x)  # a batch, not one image


def toy_predict_proba(x: np.ndarray) -> np.ndarray:
    """Two classes; class 1 grows with high-frequency energy (mean |horizontal difference|)."""
    hf = np.abs(np.diff(x[:, 0], axis=2)).mean(axis=(1, 2))
    z = 60.0 * (hf - 0.02)
    p1 = 1 / (1 + np.exp(-z))
    return np.stack([1 - p1, p1], axis=1)


def test_feature_squeezing_detector():
    x = synth(300, seed=21)
    fs = FeatureSqueezingDetector(toy_predict_proba)
    assert fs.thresholds == {"score": None}
    with pytest.raises(UsageError):
        fs.flag(x[:2])
    fs.calibrate(x[:150])
    assert fs.calibration["calibration_fpr"] <= 0.05
    per = fs.score_per_squeezer(x[:4])
    assert set(per) == {"bitdepth:4", "median:3", "jpeg:75"}
    np.testing.assert_allclose(fs.score(x[:4]), np.max(np.stack(list(per.values())), axis=0))
    suspects = {"noise16": sign_noise(x[150:], 16 / 255, 3)}
    res = evaluate_detector(fs, x[150:], None, suspects).to_json()
    json.dumps(res, allow_nan=False)
    assert res["method"] == "feature_squeezing" and res["benign_fpr"] == np.mean(fs.flag(x[150:]))
    c = res["per_condition"]["noise16"]
    assert c["detection_rate"] > 0.9 and c["auc_score"] > 0.95 and len(c["roc_score"]) <= 50


def test_feature_squeezing_rejects_bad_predict_proba_and_target():
    with pytest.raises(UsageError):
        FeatureSqueezingDetector(toy_predict_proba, target_fpr=0.0)
    fs = FeatureSqueezingDetector(lambda x: np.zeros((len(x) + 1, 2)))
    with pytest.raises(DataError, match="predict_proba"):
        fs.score(synth(2))


def test_feature_squeezing_reaches_target_fpr_on_held_out_images():
    n = FOLDS * FOLD + 200
    x = synth(n, seed=23)
    scores = FeatureSqueezingDetector(toy_predict_proba).score(x)  # per image, independent of the threshold
    fprs = []
    for cal, held in _fold_splits(n):
        fs = FeatureSqueezingDetector(toy_predict_proba).calibrate(x[cal])
        assert fs.calibration["calibration_fpr"] <= 0.05
        fprs.append(fs.flag_scores(scores[held]).mean())
    assert np.mean(fprs) <= _held_out_fpr_bound(0.05), fprs
