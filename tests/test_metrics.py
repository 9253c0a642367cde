"""Metrics: hand-checked values on tiny arrays, agreement with scikit-learn, bootstrap behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import classification_report

from auditor.metrics import (
    bootstrap_cms,
    compute_attack_rates,
    compute_metrics,
    guarded_ci,
    holm,
    mcnemar_exact,
    wilson_interval,
)

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
    # the width of a 95% interval: the normal approximation 2 * 1.96 * sqrt(acc (1 - acc) / n) within
    # 10% (a 90% interval is 16% narrower, a 99% one 31% wider)
    normal_width = 2 * 1.959964 * np.sqrt(a["accuracy"] * (1 - a["accuracy"]) / 300)
    assert lo < a["accuracy"] < hi and 0.9 < (hi - lo) / normal_width < 1.1
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
    # 0/10 and 0/20: the Wilson interval [0, z²/(n + z²)], not the bootstrap's zero-width [0, 0] (issue 24)
    z2 = 1.959964**2
    assert r["attack_success_rate_ci"] == pytest.approx([0.0, z2 / (10 + z2)], abs=1e-6)
    assert r["flip_rate_ci"] == pytest.approx([0.0, z2 / (20 + z2)], abs=1e-6)


def test_rate_cis_at_0_and_n_are_wilson_at_the_images_everywhere_else_bootstrap():
    """Issue 24: a rate of 0/n or n/n gets the Wilson interval at its n images (not at the patients), so no
    reported rate interval has zero width; other rates keep the cluster bootstrap; --n-boot 0 stays None."""
    z2 = 1.959964**2
    y = np.array([0] * 6 + [1] * 6)
    pred = np.array([0] * 6 + [0] * 3 + [1] * 3)  # class 0: 6/6 right, class 1: 3/6
    groups = [f"P{i // 3}" for i in range(12)]  # 4 patients of 3 images
    m = compute_metrics(y, pred, ["a", "b"], groups=groups, n_boot=200, seed=0)
    assert m["per_class"]["a"]["sensitivity_ci"] == pytest.approx([6 / (6 + z2), 1.0], abs=1e-6)
    assert m["per_class"]["a"]["sensitivity_ci"][1] == 1.0  # the rate 1.0 is inside its interval, exactly
    assert (
        m["per_class"]["b"]["sensitivity_ci"]
        == compute_metrics(y, pred, ["a", "b"], groups, 0, 200)["per_class"]["b"]["sensitivity_ci"]
    )
    lo, hi = m["per_class"]["b"]["sensitivity_ci"]
    assert 0 <= lo < 0.5 < hi <= 1  # 3/6: the bootstrap interval
    perfect = compute_metrics(y, y, ["a", "b"], groups=groups, n_boot=200, seed=0)
    assert perfect["accuracy_ci"] == pytest.approx([12 / (12 + z2), 1.0], abs=1e-6)
    assert perfect["macro_f1_ci"] == [1.0, 1.0]  # not a proportion of images: its bootstrap interval stays
    wrong = compute_metrics(y, 1 - y, ["a", "b"], n_boot=200, seed=0)
    assert wrong["accuracy_ci"] == pytest.approx([0.0, z2 / (12 + z2)], abs=1e-6) and wrong["accuracy_ci"][0] == 0.0
    assert compute_metrics(y, y, ["a", "b"], n_boot=0)["accuracy_ci"] is None
    rates = compute_attack_rates(y, y, y, groups=groups, n_boot=0)
    assert rates["flip_rate_ci"] is None and rates["attack_success_rate_ci"] is None


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


def test_group_index_gives_anonymous_samples_their_own_group():
    from auditor.metrics import _group_index

    np.testing.assert_array_equal(_group_index(["a", None, "a", "", "b"], 5), [2, 0, 2, 1, 3])
    np.testing.assert_array_equal(_group_index(None, 3), [0, 1, 2])


def test_macro_precision_recall_and_bootstrap_default_seed():
    m = compute_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], CLASSES, n_boot=10)
    # precision 1/2, 2/3, 0; recall 1/2, 1, 0
    assert m["macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert m["macro_recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    y, p = np.array([0, 1, 2, 0, 1]), np.array([0, 1, 1, 0, 2])
    np.testing.assert_array_equal(bootstrap_cms(y, p, 3, n_boot=30), bootstrap_cms(y, p, 3, n_boot=30, seed=0))


def test_empty_input():
    m = compute_metrics([], [], CLASSES)
    assert m["n"] == 0 and m["accuracy"] is None


#: simulated data sets per coverage check; the coverage estimate has sd sqrt(.95 * .05 / M) ~ 1.1 points
COVERAGE_RUNS = 400


def _coverage_bounds() -> tuple[float, float]:
    """95% nominal coverage +- 3 binomial sd of its estimate over COVERAGE_RUNS intervals.

    A 90% interval labelled 95% covers ~90% and fails (4.5 sd below); so does an image-level
    bootstrap on clustered data (see below).
    """
    sd = float(np.sqrt(0.95 * 0.05 / COVERAGE_RUNS))
    return 0.95 - 3 * sd, 0.95 + 3 * sd


def _intervals(y, p, k, groups, seed):
    """The intervals compute_metrics reports, from the same functions it uses."""
    from auditor.metrics import _ci, _metrics_from_cm, bootstrap_cms

    boot = _metrics_from_cm(bootstrap_cms(y, p, k, groups, 400, seed))
    return _ci(boot["accuracy"]), _ci(boot["recall"][:, 0])


def test_interval_helpers_are_what_compute_metrics_reports():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 120)
    p = np.where(rng.random(120) < 0.7, y, (y + 1) % 3)
    groups = [f"P{i // 2}" for i in range(120)]
    m = compute_metrics(y, p, CLASSES, groups=groups, seed=9, n_boot=400)
    acc_ci, sens_ci = _intervals(y, p, 3, groups, 9)
    assert m["accuracy_ci"] == acc_ci and m["per_class"][CLASSES[0]]["sensitivity_ci"] == sens_ci
    assert m["bootstrap"]["level"] == 0.95


def test_bootstrap_intervals_cover_the_truth_95_percent_of_the_time():
    """Accuracy and sensitivity intervals on simulated sets with known truth (independent images)."""
    prior, recall = np.array([0.5, 0.3, 0.2]), np.array([0.9, 0.7, 0.8])
    truth = float(prior @ recall)
    rng = np.random.default_rng(1)
    hits = np.zeros(2)
    for run in range(COVERAGE_RUNS):
        y = rng.choice(3, 200, p=prior)
        right = rng.random(200) < recall[y]
        p = np.where(right, y, (y + 1 + rng.integers(0, 2, 200)) % 3)
        (alo, ahi), (slo, shi) = _intervals(y, p, 3, None, run)
        hits += [alo <= truth <= ahi, slo <= recall[0] <= shi]
    lo, hi = _coverage_bounds()
    assert lo <= hits[0] / COVERAGE_RUNS <= hi and lo <= hits[1] / COVERAGE_RUNS <= hi, hits / COVERAGE_RUNS


def test_patient_bootstrap_covers_on_clustered_data():
    """50 patients x 4 images whose correctness shares the patient's ability (Beta(2, 0.5), mean 0.8):
    resampling patients covers the population accuracy; resampling images would not (too narrow)."""
    rng = np.random.default_rng(2)
    patient = np.repeat(np.arange(50), 4)
    groups = [f"P{i}" for i in patient]
    y = np.zeros(200, dtype=np.int64)
    hits = hits_images = 0
    for run in range(COVERAGE_RUNS):
        right = rng.random(200) < rng.beta(2, 0.5, 50)[patient]
        p = np.where(right, 0, 1)
        (lo, hi), _ = _intervals(y, p, 2, groups, run)
        hits += lo <= 0.8 <= hi
        (lo, hi), _ = _intervals(y, p, 2, None, run)
        hits_images += lo <= 0.8 <= hi
    lo, hi = _coverage_bounds()
    assert lo <= hits / COVERAGE_RUNS <= hi, hits / COVERAGE_RUNS
    assert hits_images / COVERAGE_RUNS < lo  # the check has the power to see a wrong resampling unit


def test_bootstrap_intervals_equal_an_independent_resampling():
    """The percentile intervals re-derived from scratch: the same seeded image resamples, each scored
    with scikit-learn (accuracy, macro-F1 over the classes present, per-class recall), then the
    2.5% and 97.5% quantiles. A rare class (3 of 40) is absent from some resamples and has one
    prediction in others."""
    from sklearn.metrics import f1_score, recall_score

    rng = np.random.default_rng(11)
    y = np.array([0] * 22 + [1] * 15 + [2] * 3)
    p = np.where(rng.random(40) < 0.75, y, (y + 1 + rng.integers(0, 2, 40)) % 3)
    p[37:] = [2, 0, 1]
    n_boot, seed = 300, 4
    m = compute_metrics(y, p, CLASSES, seed=seed, n_boot=n_boot)
    draws = np.random.default_rng(seed).integers(0, 40, size=(n_boot, 40))
    acc, f1, rec = [], [], {k: [] for k in range(3)}
    for d in draws:
        yt, yp = y[d], p[d]
        present = sorted(set(yt.tolist()))
        acc.append(np.mean(yt == yp))
        f1.append(f1_score(yt, yp, labels=present, average="macro", zero_division=0))
        for k in present:
            rec[k].append(recall_score(yt, yp, labels=[k], average="macro", zero_division=0))
    assert len(rec[2]) < n_boot  # the rare class is missing from some resamples

    def q(v):
        return np.quantile(v, [0.025, 0.975])

    np.testing.assert_allclose(m["accuracy_ci"], q(acc), rtol=0, atol=1e-12)
    np.testing.assert_allclose(m["macro_f1_ci"], q(f1), rtol=0, atol=1e-12)
    for k, name in enumerate(CLASSES):
        np.testing.assert_allclose(m["per_class"][name]["sensitivity_ci"], q(rec[k]), rtol=0, atol=1e-12)


def test_small_supports_defaults_and_empty_bootstrap():
    m = compute_metrics([0, 1, 1, 2], [0, 1, 0, 2], CLASSES, n_boot=20)
    assert m["per_class"]["normal"]["sensitivity"] == 1.0  # one image is enough to have a sensitivity
    assert m["per_class"]["pneumonia"]["sensitivity"] == 0.5
    assert m["bootstrap"]["seed"] == 0 and m["bootstrap"]["n_boot"] == 20
    assert compute_metrics([0, 1], [0, 1], CLASSES, n_boot=0)["accuracy_ci"] is None
    np.testing.assert_array_equal(bootstrap_cms(np.array([], int), np.array([], int), 3, n_boot=5), np.zeros((5, 3, 3)))


@pytest.mark.parametrize("chunk", [1, 7, 29_999, 10**9])
def test_bootstrap_resamples_do_not_depend_on_the_block_size(monkeypatch, chunk):
    """The draws are made a block of resamples at a time to bound memory; the resamples, hence every CI,
    are the same whatever the block (one resample per block, a partial last block, all at once)."""
    import auditor.metrics as metrics

    rng = np.random.default_rng(5)
    y, p = rng.integers(0, 3, 3000), rng.integers(0, 3, 3000)
    groups = [f"P{i // 3}" if i % 4 else None for i in range(3000)]
    want = bootstrap_cms(y, p, 3, groups, 50, 0)
    monkeypatch.setattr(metrics, "BOOT_CHUNK_DRAWS", chunk)
    assert np.array_equal(bootstrap_cms(y, p, 3, groups, 50, 0), want)


@pytest.mark.parametrize(
    "k,n,want",
    [
        # Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 1998, Table II (Wilson)
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
        # closed forms: 0/n -> [0, z²/(n+z²)], n/n -> [n/(n+z²), 1] with z = 1.959964
        (0, 12, (0.0, 0.242494)),
        (12, 12, (0.757506, 1.0)),
    ],
)
def test_wilson_interval_at_known_values(k, n, want):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(want[0], abs=1e-4) and hi == pytest.approx(want[1], abs=1e-4)


def test_wilson_interval_is_never_zero_width_and_guards_a_degenerate_bootstrap():
    assert wilson_interval(0, 0) is None
    for n in (1, 5, 40):
        for k in (0, n):
            lo, hi = wilson_interval(k, n)
            assert hi - lo > 0.05
    assert guarded_ci([0.0, 0.0], 0.0, 12) == pytest.approx([0.0, 0.242494], abs=1e-6)
    assert guarded_ci([1.0, 1.0], 1.0, 12) == pytest.approx([0.757506, 1.0], abs=1e-6)
    assert guarded_ci([0.1, 0.9], 0.5, 12) == [0.1, 0.9]  # a wide bootstrap interval is kept
    assert guarded_ci(None, 0.0, 12) is None


def test_mcnemar_exact_counts_only_discordant_pairs():
    # 6 images only A gets right, 1 only B: two-sided binomial p = 2 * P(X <= 1 | 7, 1/2) = 16/128
    a = [1] * 6 + [0] + [1] * 5 + [0] * 3
    b = [0] * 6 + [1] + [1] * 5 + [0] * 3
    r = mcnemar_exact(a, b)
    assert (r["a_only"], r["b_only"]) == (6, 1) and r["p"] == pytest.approx(16 / 128)
    assert mcnemar_exact([1, 0], [1, 0])["p"] == 1.0  # no discordant pair: nothing decided
    assert mcnemar_exact([1] * 5, [0] * 5)["p"] == pytest.approx(2 / 32)
    with pytest.raises(ValueError):
        mcnemar_exact([1], [1, 0])


def test_holm_adjusts_in_step_down_order():
    assert holm([0.031, 0.2, 0.01, 0.5]) == pytest.approx([0.093, 0.4, 0.04, 0.5])
    assert holm([0.04, 0.04]) == pytest.approx([0.08, 0.08])
    assert holm([0.5, 0.9, 0.001]) == pytest.approx([1.0, 1.0, 0.003])  # capped at 1, monotone
    assert holm([]) == []
