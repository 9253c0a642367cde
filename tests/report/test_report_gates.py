"""--fail-under parsing and evaluation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from auditor.errors import UsageError
from auditor.report.gates import GateSpec, evaluate_gates, parse_gates


def test_parse_full_spec():
    gates = parse_gates("accuracy=0.8,robust_accuracy=0.5,macro_f1=0.7,sensitivity:pneumothorax=0.8,max_flip_rate=0.3")
    assert [g.name for g in gates] == ["accuracy", "robust_accuracy", "macro_f1", "sensitivity:pneumothorax",
                                       "max_flip_rate"]
    assert gates[3] == GateSpec("sensitivity", 0.8, "pneumothorax")
    assert gates[4].upper_bound and not gates[0].upper_bound
    assert parse_gates(None) == () and parse_gates(" , ") == ()


@pytest.mark.parametrize("spec, message", [
    ("accuracyy=0.8", "unknown gate 'accuracyy'"),
    ("accuracy=high", "is not a number"),
    ("accuracy", "is not name=value"),
    ("sensitivity=0.8", "write sensitivity:<class>"),
    ("sensitivity:=0.8", "needs a class name"),
    ("accuracy:normal=0.8", "unknown gate"),
    ("accuracy=80", "between 0 and 1"),
    ("accuracy=nan", "between 0 and 1"),
    ("accuracy=0.8,accuracy=0.9", "given twice"),
])
def test_parse_errors_are_one_line_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message) as info:
        parse_gates(spec)
    assert "\n" not in str(info.value)


# (spec, expected passed, expected value, detail starts with)
CASES = [
    ("accuracy=0.8", True, 0.85, "passed"),
    ("accuracy=0.9", False, 0.85, "failed"),
    ("macro_f1=0.5", True, None, "passed"),
    ("robust_accuracy=0.5", True, 0.5, "passed"),          # worst attack: usmm@16 at exactly 0.5
    ("robust_accuracy=0.51", False, 0.5, "failed"),
    ("sensitivity:Pneumothorax=0.8", True, 0.8, "passed"),  # class names match case-insensitively
    ("robust_sensitivity:pneumothorax=0.5", False, 0.2, "failed"),
    # attack success rate counts only the 17 clean-correct images: usmm@16 fools 7 of them
    ("max_attack_success_rate=0.45", True, 7 / 17, "passed"),
    ("max_attack_success_rate=0.4", False, 7 / 17, "failed"),
    ("max_flip_rate=0.35", True, 7 / 20, "passed"),          # upper bound: equal passes (7 of 20 predictions change)
    ("max_flip_rate=0.3", False, 7 / 20, "failed"),
    ("sensitivity:cardiomegaly=0.5", False, None, "not measured"),
]


@pytest.mark.parametrize("spec, passed, value, detail", CASES)
def test_evaluate_table(plain_result, spec, passed, value, detail):
    (outcome,) = evaluate_gates(plain_result, parse_gates(spec))
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
                metrics["per_class"] = {**metrics["per_class"], per_class: {**metrics["per_class"][per_class], key: value}}
            elif key in metrics:
                metrics[key] = value
            c = replace(c, metrics=metrics, extra={**c.extra, key: value} if key in c.extra else c.extra)
        conds.append(c)
    return replace(result, conditions=tuple(conds))


@pytest.mark.parametrize("spec, cond, key, per_class", [
    ("accuracy=0.1", "clean", "accuracy", None),
    ("macro_f1=0.1", "clean", "macro_f1", None),
    ("sensitivity:normal=0.1", "clean", "sensitivity", "normal"),
    ("robust_accuracy=0.1", "usmm@4", "accuracy", None),       # usmm@16 (0.5) would still be the worst
    ("robust_sensitivity:normal=0.0", "usmm@4", "sensitivity", "normal"),
    ("max_flip_rate=1.0", "usmm@4", "flip_rate", None),
    ("max_attack_success_rate=1.0", "usmm@4", "attack_success_rate", None),
])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_gate_never_passes_on_nan(plain_result, spec, cond, key, per_class, bad):
    (ok,) = evaluate_gates(plain_result, parse_gates(spec))
    assert ok.passed  # the threshold is lax: only the NaN can make it fail
    (outcome,) = evaluate_gates(_with_value(plain_result, cond, key, bad, per_class), parse_gates(spec))
    assert not outcome.passed and outcome.value is None and outcome.detail.startswith("not measured")
