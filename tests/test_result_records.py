"""The typed records of a result (auditor/result_records.py): results.json reads back to the same JSON, null and
absent keys stay apart, older layouts are still read, and nothing is written into a record after it is made."""

from __future__ import annotations

import dataclasses

import pytest

from auditor.detector_records import DetectorResult
from auditor.report.html_sections import _detector
from auditor.result_records import (
    AdaptiveSetMeta,
    AttackSetMeta,
    BlendSetMeta,
    ConditionExtra,
    QueryCurve,
    set_meta_from_json,
)
from auditor.types import AuditResult, Condition

RATES = {
    "attack_success_rate": None,  # no image correct when clean: measured as null, not absent
    "attack_success_rate_ci": None,
    "flip_rate": 0.25,
    "flip_rate_ci": [0.1, 0.4],
    "n_clean_correct": 0,
    "n_fooled": 0,
    "n_flipped": 3,
    "rates_bootstrap": {"n_boot": 50, "unit": "patient", "seed": 0, "level": 0.95},
}


def test_condition_extra_round_trips_nulls_absent_keys_and_unknown_keys():
    doc = {**RATES, "linf_mean": 0.03, "label": "MI-FGSM", "cache_hit": False, "backend": None, "from_v2": [1, 2]}
    extra = ConditionExtra.from_json(doc)
    assert extra.to_json() == doc
    assert "style_diversity" not in extra.to_json() and "backend" in extra.to_json()
    assert extra.attack_success_rate is None and extra.flip_rate == 0.25 and extra.label == "MI-FGSM"
    assert extra.unknown == (("from_v2", [1, 2]),)


def test_with_sets_fields_and_a_none_becomes_a_null():
    extra = ConditionExtra.from_json(RATES).with_(cost_ms_per_image=None, recovered_rate=0.5)
    assert extra.to_json() == {**RATES, "cost_ms_per_image": None, "recovered_rate": 0.5}
    assert extra.with_(cost_ms_per_image=2.0).to_json()["cost_ms_per_image"] == 2.0
    assert extra.rate_and_ci("flip_rate") == (0.25, [0.1, 0.4])
    with pytest.raises(ValueError):
        extra.rate_and_ci("accuracy")


def test_records_are_frozen():
    extra = ConditionExtra.from_json(RATES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        extra.benefit_vanishes = True  # type: ignore[misc]
    cond = Condition("jpeg/x@8", "defense", {}, extra=RATES)  # a mapping is read as the typed record
    assert isinstance(cond.extra, ConditionExtra) and cond.to_dict()["flip_rate"] == 0.25


def test_query_curve_is_typed_in_the_condition_and_json_in_results():
    curve = QueryCurve(100, 40.0, None, ((1, 0.0), (100, 0.5)))
    doc = ConditionExtra(queries=curve).to_json()
    assert doc == {
        "queries": {"budget": 100, "mean_used": 40.0, "median_used_successful": None, "curve": [[1, 0.0], [100, 0.5]]}
    }
    assert ConditionExtra.from_json(doc).queries == curve


@pytest.mark.parametrize(
    "doc, cls",
    [
        (
            {
                "name": "mifgsm@8",
                "key": "k",
                "dir": "/c/k",
                "cache_hit": True,
                "seconds": 0.0,
                "seconds_per_image": None,
                "backend": None,
                "cache_warnings": ["batch 0: poisoned"],
                "style_diversity": None,
                "surrogate": {"label": "resnet"},
                "params": {"epsilon": 0.03},
            },
            AttackSetMeta,
        ),
        ({"name": "blend@0.3", "cache_hit": False, "backend": None, "style_image": "built-in"}, BlendSetMeta),
        (
            {
                "name": "x@8+bpda:jpeg",
                "key": "k",
                "cache_hit": False,
                "gradient": "exact",
                "seconds": 1.5,
                "backend": None,
            },
            AdaptiveSetMeta,
        ),
    ],
)
def test_set_meta_reads_each_layout_back_to_the_same_json(doc, cls):
    meta = set_meta_from_json(doc)
    assert type(meta) is cls and meta.to_json() == doc


def _detector_doc(per: dict) -> dict:
    block = {
        "method": "feature_squeezing",
        "squeezers": ["jpeg:75"],
        "thresholds": {"score": 0.4},
        "target_fpr": 0.05,
        "benign_fpr": 0.0,
        "n_benign": 6,
        "benign": {"mean_score": 0.1},
        "calibration": {"budget": 1},
        "per_condition": per,
    }
    return {
        "calibration": {"calibration_images": 6, "held_out_images": 6, "seed": 0},
        "feature_squeezing": block,
        "fft_example": {"condition": "x@8", "sample": "a.png", "spectra": {"clean": [[0.0]]}, "note": "n"},
    }


def test_detector_result_round_trips_and_its_curves_are_typed():
    per = {
        "x@8": {
            "n": 6,
            "detection_rate": 0.5,
            "auc_score": 0.75,
            "roc_score": [[0.0, 0.0], [1.0, 1.0]],
            "mean_score": 0.3,
        }
    }
    doc = _detector_doc(per)
    det = DetectorResult.from_json(doc)
    assert det.to_json() == doc
    row = det.feature_squeezing.rows[0]
    assert row.condition == "x@8" and row.scores[0].roc.auc == 0.75 and row.scores[0].roc.fpr == [0.0, 1.0]
    result = AuditResult("1.0", "0", "", "", "", {}, {}, (Condition("clean", "clean", {}),), detector=doc)
    assert AuditResult.from_dict(result.to_dict()).detector == det


@pytest.mark.parametrize(
    "old_roc, labels",
    [
        ({"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "auc": 0.5}, ["x@8"]),
        ({"edge": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0], "auc": 0.9}}, ["x@8 (edge)"]),
    ],
)
def test_the_report_still_draws_the_roc_layouts_of_older_results(old_roc, labels):
    doc = _detector_doc({"x@8": {"n": 6, "detection_rate": 0.5, "roc": old_roc}})
    result = AuditResult("1.0", "0", "", "", "", {}, {}, (Condition("clean", "clean", {}),), detector=doc)
    curves = [c for block in _detector(result) for c in block["curves"]]
    assert [c["label"] for c in curves] == labels and curves[0]["fpr"] == [0.0, 1.0]
