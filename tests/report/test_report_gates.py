"""--fail-under parsing and evaluation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from auditor.errors import UsageError
from auditor.report.gate_specs import GateSpec, parse_gates
from auditor.report.gates import evaluate_gates


def test_parse_full_spec():
    gates = parse_gates("accuracy=0.8,robust_accuracy=0.5,macro_f1=0.7,sensitivity:pneumothorax=0.8,max_flip_rate=0.3")
    assert [g.name for g in gates] == [
        "accuracy",
        "robust_accuracy",
        "macro_f1",
        "sensitivity:pneumothorax",
        "max_flip_rate",
    ]
    assert gates[3] == GateSpec("sensitivity", 0.8, "pneumothorax")
    assert gates[4].upper_bound and not gates[0].upper_bound
    assert parse_gates(None) == () and parse_gates(" , ") == ()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("accuracyy=0.8", "unknown gate 'accuracyy'"),
        ("accuracy=high", "is not a number"),
        ("accuracy", "is not name=value"),
        ("sensitivity=0.8", "write sensitivity:<class>"),
        ("sensitivity:=0.8", "needs a class name"),
        ("accuracy:normal=0.8", "unknown gate"),
        ("accuracy=80", "between 0 and 1"),
        ("accuracy=nan", "between 0 and 1"),
        ("accuracy=0.8,accuracy=0.9", "given twice"),
        ("accuracy=-0.1", "between 0 and 1"),
        ("max_flip_rate=-0.5", "between 0 and 1"),
    ],
)
def test_parse_errors_are_one_line_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_gates(spec)
    assert "\n" not in str(info.value)


# (spec, expected passed, expected value, detail starts with)
CASES = [
    ("accuracy=0.8", True, 0.85, "passed"),
    ("accuracy=0.9", False, 0.85, "failed"),
    ("macro_f1=0.5", True, None, "passed"),
    ("robust_accuracy=0.5", True, 0.5, "passed"),  # worst attack: usmm@16 at exactly 0.5
    ("robust_accuracy=0.51", False, 0.5, "failed"),
    ("sensitivity:Pneumothorax=0.8", True, 0.8, "passed"),  # class names match case-insensitively
    ("robust_sensitivity:pneumothorax=0.5", False, 0.2, "failed"),
    # attack success rate counts only the 17 clean-correct images: usmm@16 fools 7 of them
    ("max_attack_success_rate=0.45", True, 7 / 17, "passed"),
    ("max_attack_success_rate=0.4", False, 7 / 17, "failed"),
    ("max_flip_rate=0.35", True, 7 / 20, "passed"),  # upper bound: equal passes (7 of 20 predictions change)
    ("max_flip_rate=0.3", False, 7 / 20, "failed"),
    ("max_attack_success_rate=0.5", True, 7 / 17, "passed"),  # upper bound: below passes
    ("sensitivity:cardiomegaly=0.5", False, None, "not measured"),
]


@pytest.mark.parametrize("spec, passed, value, detail", CASES)
def test_evaluate_table(plain_result, spec, passed, value, detail):
    # the fixture is a transfer-only audit: accept its transfer bound to test the measurement itself
    (outcome,) = evaluate_gates(plain_result, parse_gates(spec), allow_transfer_only=True)
    assert outcome.passed is passed
    if value is not None:
        assert outcome.value == pytest.approx(value)
    assert outcome.detail.startswith(detail)
    assert outcome.threshold == parse_gates(spec)[0].threshold


def test_no_attack_conditions_is_not_measured(plain_result):
    clean_only = replace(plain_result, conditions=(plain_result.condition("clean"),))
    outcomes = evaluate_gates(clean_only, parse_gates("robust_accuracy=0.5,max_flip_rate=0.3,accuracy=0.8"))
    assert [(o.passed, o.value, o.detail) for o in outcomes[:2]] == [(False, None, "not measured")] * 2
    assert outcomes[2].passed


def _with_value(result, name: str, key: str, value, per_class: str | None = None):
    conds = []
    for c in result.conditions:
        if c.name == name:
            metrics = dict(c.metrics)
            if per_class:
                metrics["per_class"] = {
                    **metrics["per_class"],
                    per_class: {**metrics["per_class"][per_class], key: value},
                }
            elif key in metrics:
                metrics[key] = value
            c = replace(
                c, metrics=metrics, extra=c.extra.with_(**{key: value}) if key in c.extra.to_json() else c.extra
            )
        conds.append(c)
    return replace(result, conditions=tuple(conds))


@pytest.mark.parametrize(
    "spec, cond, key, per_class",
    [
        ("accuracy=0.1", "clean", "accuracy", None),
        ("macro_f1=0.1", "clean", "macro_f1", None),
        ("sensitivity:normal=0.1", "clean", "sensitivity", "normal"),
        ("robust_accuracy=0.1", "usmm@4", "accuracy", None),  # usmm@16 (0.5) would still be the worst
        ("robust_sensitivity:normal=0.0", "usmm@4", "sensitivity", "normal"),
        ("max_flip_rate=1.0", "usmm@4", "flip_rate", None),
        ("max_attack_success_rate=1.0", "usmm@4", "attack_success_rate", None),
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_gate_never_passes_on_nan(plain_result, spec, cond, key, per_class, bad):
    (ok,) = evaluate_gates(plain_result, parse_gates(spec), allow_transfer_only=True)
    assert ok.passed  # the threshold is lax: only the NaN can make it fail
    bad_result = _with_value(plain_result, cond, key, bad, per_class)
    (outcome,) = evaluate_gates(bad_result, parse_gates(spec), allow_transfer_only=True)
    assert not outcome.passed and outcome.value is None and outcome.detail.startswith("not measured")


def test_one_strict_policy():
    from auditor.report.gate_view import exit_status
    from auditor.types import Skipped

    img = {"name": "a.png", "reason": "truncated", "kind": "image"}
    assert exit_status([], [], strict=True) == (0, None)
    assert exit_status([], [img], strict=False) == (0, None)
    for item in (img, Skipped("stm@8", "no weights", "attack"), Skipped("detector", "too few", "detector")):
        code, message = exit_status([], [item], strict=True)
        assert code == 1 and "1 item(s) skipped" in message
    code, message = exit_status(["accuracy"], [img], strict=False)
    assert code == 1 and message == "gate(s) failed: accuracy"


def test_skipped_items_lists_data_and_stage_skips(plain_result):
    from dataclasses import replace

    from auditor.report.gate_view import skipped_items
    from auditor.types import Skipped

    res = replace(
        plain_result,
        skipped=(Skipped("bpda:jpeg:75", "no torch path", "defense"),),
        data={**plain_result.data, "skipped": [{"name": "x.png", "reason": "junk", "kind": "image"}]},
    )
    assert [s["kind"] for s in skipped_items(res)] == ["image", "defense"]


def test_parse_bounds_and_empty_items():
    assert [g.threshold for g in parse_gates("accuracy=0,macro_f1=1")] == [0.0, 1.0]
    assert [g.name for g in parse_gates("accuracy=0.8,,macro_f1=0.5, ,max_flip_rate=0.3")] == [
        "accuracy",
        "macro_f1",
        "max_flip_rate",
    ]


def test_details_say_what_was_measured_where(plain_result):
    out = {
        o.name: o
        for o in evaluate_gates(
            plain_result,
            parse_gates(
                "accuracy=0.8,max_attack_success_rate=0.4,sensitivity:pneumothorax=0.8,macro_f1=0.5,"
                "robust_sensitivity:cardiomegaly=0.5"
            ),
        )
    }
    assert out["accuracy"].detail == "passed: 0.8500 (required >= 0.8; clean)"
    assert out["max_attack_success_rate"].detail == "failed: 0.4118 (required <= 0.4; worst: usmm@16)"
    assert out["sensitivity:pneumothorax"].detail.endswith("(required >= 0.8; clean)")
    assert out["macro_f1"].detail.endswith("; clean)")
    assert out["robust_sensitivity:cardiomegaly"].detail == (
        "not measured: no class 'cardiomegaly' in the results (classes: normal, pneumonia, pneumothorax)"
    )


def test_gates_on_a_reloaded_results_json(plain_result, tmp_path):
    """``xray-audit report --fail-under``: gates on results read back from JSON give the same verdicts."""
    from auditor.report.io import load_results
    from auditor.report.jsonfmt import results_json

    path = tmp_path / "results.json"
    path.write_text(results_json(plain_result))
    gates = parse_gates("accuracy=0.8,robust_accuracy=0.5,max_flip_rate=0.3,robust_sensitivity:pneumothorax=0.5")
    fresh = [(o.passed, o.value, o.detail) for o in evaluate_gates(plain_result, gates)]
    assert [(o.passed, o.value, o.detail) for o in evaluate_gates(load_results(path), gates)] == fresh
    assert all(v is not None for _, v, _ in fresh)


def test_clean_condition_found_by_kind_and_unreadable_numbers(plain_result, tmp_path):
    from auditor.report.io import load_results
    from auditor.report.jsonfmt import results_json

    clean = plain_result.condition("clean")
    renamed = replace(
        plain_result,
        conditions=tuple(replace(c, name="baseline") if c is clean else c for c in plain_result.conditions),
    )
    (tmp_path / "r.json").write_text(results_json(renamed))
    for res in (renamed, load_results(tmp_path / "r.json")):
        (acc,) = evaluate_gates(res, parse_gates("accuracy=0.8"))
        assert acc.value == pytest.approx(0.85) and acc.passed
    broken = replace(plain_result, conditions=(replace(clean, metrics={**clean.metrics, "accuracy": "n/a"}),))
    (acc,) = evaluate_gates(broken, parse_gates("accuracy=0.8"))
    assert (acc.passed, acc.value) == (False, None) and acc.detail.startswith("not measured")
