"""Metrics: hand-checked values on tiny arrays, agreement with scikit-learn, bootstrap behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import classification_report

from auditor.metrics import bootstrap_cms, compute_attack_rates, compute_metrics

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def test_hand_computed_values():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = compute_metrics(y_true, y_pred, CLASSES, n_boot=0)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    pc = m["per_class"]
    # normal: TP 1, FP 1 (a pneumothorax called normal), FN 1
    assert pc["normal"]["precision"] == pytest.approx(0.5)
    assert pc["normal"]["recall"] == pytest.approx(0.5)
    # specificity of pneumonia: of the 4 non-pneumonia images, 3 were not called pneumonia
    assert pc["pneumonia"]["specificity"] == pytest.approx(3 / 4)
    assert pc["pneumothorax"]["sensitivity"] == pytest.approx(0.5)
    assert pc["pneumothorax"]["specificity"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["accuracy_ci"] is None


def test_agrees_with_sklearn_report():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 3, 200))
    m = compute_metrics(y_true, y_pred, CLASSES, n_boot=0)
    rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    for i, c in enumerate(CLASSES):
        for key in ("precision", "recall", "f1-score"):
            assert m["per_class"][c][key.replace("-score", "")] == pytest.approx(rep[str(i)][key])
    assert m["macro_f1"] == pytest.approx(rep["macro avg"]["f1-score"])
    assert m["weighted_f1"] == pytest.approx(rep["weighted avg"]["f1-score"])


def test_bootstrap_ci_contains_point_and_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.8, y, (y + 1) % 3)
    a = compute_metrics(y, p, CLASSES, seed=5, n_boot=400)
    b = compute_metrics(y, p, CLASSES, seed=5, n_boot=400)
    assert a == b
    lo, hi = a["accuracy_ci"]
    assert lo < a["accuracy"] < hi and hi - lo < 0.15
    assert a["bootstrap"]["unit"] == "image"


def test_bootstrap_by_patient_keeps_patients_together():
    # two patients, each with 3 images that are all right (P1) or all wrong (P2)
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0, 0, 0, 0, 0, 0])
    cms = bootstrap_cms(y, p, 2, groups=["P1"] * 3 + ["P2"] * 3, n_boot=200, seed=0)
    acc = np.trace(cms, axis1=1, axis2=2) / cms.sum(axis=(1, 2))
    assert set(np.round(acc, 6)) <= {0.0, 0.5, 1.0}  # whole patients only
    m = compute_metrics(y, p, ["a", "b"], groups=["P1"] * 3 + ["P2"] * 3, n_boot=200)
    assert m["bootstrap"]["unit"] == "patient"
    assert m["accuracy_ci"] == [0.0, 1.0]


def test_absent_class_has_no_sensitivity():
    m = compute_metrics([0, 0, 1], [0, 1, 1], CLASSES, n_boot=50)
    assert m["per_class"]["pneumothorax"]["support"] == 0
    assert m["per_class"]["pneumothorax"]["sensitivity"] is None
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)


def test_attack_rates():
    # clean-correct: images 0, 1, 3; the attack makes 0 and 3 wrong; predictions change on 0 and 3
    r = compute_attack_rates([0, 1, 2, 0], [0, 1, 0, 0], [1, 1, 0, 2], n_boot=50)
    assert r["attack_success_rate"] == pytest.approx(2 / 3)  # over the 3 clean-correct images
    assert r["flip_rate"] == pytest.approx(2 / 4)  # prediction changed vs clean, over all images
    assert r["n_clean_correct"] == 3 and r["n_fooled"] == 2 and r["n_flipped"] == 2


def test_attack_success_rate_ignores_clean_errors():
    # the model is wrong on half the images when clean and the attack changes nothing
    y = [0, 1] * 10
    clean = [0, 0] * 10
    r = compute_attack_rates(y, clean, clean, n_boot=100)
    assert r["attack_success_rate"] == 0.0
    assert r["flip_rate"] == 0.0
    assert r["attack_success_rate_ci"] == [0.0, 0.0] and r["flip_rate_ci"] == [0.0, 0.0]


def test_attack_rate_cis_resample_patients():
    y = np.array([0] * 12)
    clean = np.array([0] * 12)
    adv = np.array([1] * 6 + [0] * 6)  # patient P1 (first 6 images) fully fooled, P2 not at all
    groups = ["P1"] * 6 + ["P2"] * 6
    r = compute_attack_rates(y, clean, adv, groups=groups, n_boot=300, seed=0)
    assert r["attack_success_rate"] == pytest.approx(0.5)
    assert r["rates_bootstrap"]["unit"] == "patient"
    # whole patients only: each resample is 0, 0.5 or 1, so the interval spans [0, 1]
    assert r["attack_success_rate_ci"] == [0.0, 1.0] and r["flip_rate_ci"] == [0.0, 1.0]
    by_image = compute_attack_rates(y, clean, adv, n_boot=300, seed=0)
    assert by_image["rates_bootstrap"]["unit"] == "image"
    lo, hi = by_image["attack_success_rate_ci"]
    assert 0.0 < lo < 0.5 < hi < 1.0


def test_empty_input():
    m = compute_metrics([], [], CLASSES)
    assert m["n"] == 0 and m["accuracy"] is None
