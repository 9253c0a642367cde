"""The weak-transfer rule, the per-set diagnostics arithmetic, the headline and the --min-transfer guard."""

from __future__ import annotations

import pytest

from auditor.errors import UsageError
from auditor.report.console import ConsoleRenderer
from auditor.report.gates import check_min_transfer, evaluate_gates, parse_gates
from auditor.report.html import render_html
from auditor.report.transfer_view import headline
from auditor.transfer import audit_transfer, set_diagnostics, transfer_summary
from auditor.types import AuditResult, Condition

WEAK_TEXT = "The attacks did not transfer"


def _attack(name, target_flip, surrogate_flip, acc=0.8, threat="transfer", eff="auto", sizes=((32, 32),)):
    extra = {"flip_rate": target_flip, "attack_success_rate": 1 - acc}
    if surrogate_flip is not None:
        if eff == "auto":
            eff = target_flip / surrogate_flip if surrogate_flip else None
        extra["transfer"] = {
            "surrogate_accuracy_clean": 0.9,
            "surrogate_accuracy": 0.1,
            "surrogate_flip_rate": surrogate_flip,
            "agreement_clean": 0.75,
            "surrogate_input_size": [list(s) for s in sizes],
            "target_input_size": [32, 32],
            "same_input_size": all(tuple(s) == (32, 32) for s in sizes),
            "transfer_efficiency": eff,
        }
    return Condition(
        name=name,
        kind="attack",
        metrics={"accuracy": acc, "n": 20},
        attack=name.split("@")[0],
        epsilon=8 / 255,
        surrogate="s",
        threat_model=threat,
        extra=extra,
    )


def _result(*attacks):
    clean = Condition(name="clean", kind="clean", metrics={"accuracy": 0.85, "n": 20})
    return AuditResult(
        schema_version="1.0",
        tool_version="t",
        created="2026-01-01T00:00:00+00:00",
        finished="",
        command="",
        model={"path": "m.onnx", "sha256": "0" * 64, "spec": {"class_names": ["a", "b"]}},
        data={"n_images": 20},
        conditions=(clean, *attacks),
    )


def test_set_diagnostics_arithmetic():
    y = [0, 0, 1, 1, 1]
    d = set_diagnostics(
        y,
        target_clean=[0, 0, 1, 1, 0],
        target_adv=[0, 1, 1, 1, 0],
        surrogate_clean=[0, 0, 1, 0, 1],
        surrogate_adv=[1, 1, 0, 0, 1],
        surrogate_sizes=[(16, 16)],
        target_size=(32, 32),
    )
    assert d["surrogate_accuracy_clean"] == pytest.approx(0.8)
    assert d["surrogate_accuracy"] == pytest.approx(0.2)  # only the last image stays right
    assert d["surrogate_flip_rate"] == pytest.approx(3 / 5)  # its prediction changed on 3 of the 5 images
    assert d["surrogate_attack_success_rate"] == pytest.approx(3 / 4)  # 3 of its 4 correct images made wrong
    assert d["agreement_clean"] == pytest.approx(3 / 5)
    assert d["transfer_efficiency"] == pytest.approx((1 / 5) / (3 / 5))  # target: 1 of 5 predictions changed
    assert d["surrogate_input_size"] == [[16, 16]] and d["target_input_size"] == [32, 32]
    assert d["same_input_size"] is False


def test_efficiency_undefined_when_surrogate_flips_nothing():
    d = set_diagnostics([0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [(8, 8)], (8, 8))
    assert d["surrogate_flip_rate"] == 0.0 and d["transfer_efficiency"] is None and d["same_input_size"] is True


@pytest.mark.parametrize(
    "target_flip,surrogate_flip,weak",
    [
        (0.02, 0.95, True),
        (0.099, 0.81, True),
        (0.10, 0.95, False),  # 10 % of flips on the target is transfer
        (0.02, 0.80, False),  # the attack was not strong enough on the surrogate for the rule
        (0.30, 0.95, False),
    ],
)
def test_weak_rule_thresholds(target_flip, surrogate_flip, weak):
    r = _result(_attack("usmm@8", target_flip, surrogate_flip))
    assert audit_transfer(r.conditions)["weak"] is weak
    h = headline(r)
    assert h["weak"] is weak
    assert (WEAK_TEXT in " ".join(h["sentences"])) is weak
    assert (h["advice"] is not None) is weak


def test_weak_needs_every_transfer_condition_to_fail():
    # one set transferred (25 % flips): the audit is not vacuous even if another set did not carry over
    r = _result(_attack("usmm@4", 0.01, 0.95), _attack("usmm@8", 0.25, 0.99))
    v = audit_transfer(r.conditions)
    assert v["weak"] is False and v["efficiency"] == pytest.approx(0.25 / 0.99)


def test_no_diagnostics_means_no_headline():
    r = _result(_attack("usmm@8", 0.02, None))
    assert audit_transfer(r.conditions)["measured"] is False
    assert headline(r) is None
    assert WEAK_TEXT not in render_html(r)


def test_defended_conditions_are_ignored():
    weak = _attack("usmm@8", 0.02, 0.95)
    defended = Condition(
        **{
            **weak.__dict__,
            "name": "jpeg/usmm@8",
            "kind": "defense",
            "defense": "jpeg",
            "extra": {**weak.extra, "flip_rate": 0.5},
        }
    )
    assert audit_transfer(_result(weak, defended).conditions)["weak"] is True


def test_whitebox_bound_is_shown_when_it_ran():
    wb = _attack("mifgsm@8", 0.9, 0.95, acc=0.05, threat="white-box")
    r = _result(_attack("usmm@8", 0.02, 0.95), wb)
    v = audit_transfer(r.conditions)
    assert v["weak"] is True and v["whitebox_worst"] is wb and v["efficiency"] == 1.0
    text = " ".join(headline(r)["sentences"])
    assert "White-box bound: under mifgsm@8" in text and "5.0%" in text
    assert transfer_summary(r.conditions)["whitebox_worst"] == {"name": "mifgsm@8", "accuracy": 0.05}
    no_wb = " ".join(headline(_result(_attack("usmm@8", 0.02, 0.95)))["sentences"])
    assert "No white-box bound was measured" in no_wb


def test_size_mismatch_sentence_and_rendering():
    r = _result(_attack("usmm@8", 0.02, 0.95, sizes=((16, 16), (32, 32))))
    text = " ".join(headline(r)["sentences"])
    assert "The surrogate works at 16×16, 32×32 pixels, the target at 32×32." in text
    html = render_html(r)
    assert 'id="transfer-table"' in html and 'id="transfer-verdict"' in html and WEAK_TEXT in html
    console = ConsoleRenderer().render(r)
    assert "WEAK EVIDENCE" in console and "--surrogate target" in console


def test_strong_transfer_renders_without_warning():
    r = _result(_attack("usmm@8", 0.6, 0.95))
    html = render_html(r)
    assert 'id="transfer-table"' in html and WEAK_TEXT not in html
    assert "WEAK EVIDENCE" not in ConsoleRenderer().render(r)


def test_min_transfer_fails_robust_gates_on_a_vacuous_audit():
    r = _result(_attack("usmm@8", 0.02, 0.95, acc=0.8))
    gates = parse_gates("accuracy=0.5,robust_accuracy=0.7,max_flip_rate=0.5")
    # a transfer-only audit: --allow-transfer-only accepts its bound, so only --min-transfer decides here
    plain = evaluate_gates(r, gates, allow_transfer_only=True)
    assert all(g.passed for g in plain)
    guarded = evaluate_gates(r, gates, min_transfer=0.5, allow_transfer_only=True)
    assert [g.passed for g in guarded] == [True, False, False]
    assert "vacuous audit" in guarded[1].detail and "0.021" in guarded[1].detail
    assert guarded[1].value == pytest.approx(0.8)


def test_min_transfer_passes_a_transferring_or_whitebox_audit():
    gates = parse_gates("robust_accuracy=0.3")
    ok = evaluate_gates(
        _result(_attack("usmm@8", 0.6, 0.9, acc=0.4)), gates, min_transfer=0.5, allow_transfer_only=True
    )
    assert ok[0].passed and "transfer efficiency 0.667 >= --min-transfer 0.5" in ok[0].detail
    wb = evaluate_gates(_result(_attack("mifgsm@8", 0.2, 0.2, acc=0.7, threat="white-box")), gates, min_transfer=0.9)
    assert wb[0].passed


def test_min_transfer_not_measured_fails():
    out = evaluate_gates(_result(_attack("usmm@8", 0.02, None)), parse_gates("robust_accuracy=0.1"), min_transfer=0.1)
    assert not out[0].passed and "not measured" in out[0].detail


@pytest.mark.parametrize(
    "value,gates,msg",
    [
        (0.5, "accuracy=0.8", "guards robustness gates"),
        (1.5, "robust_accuracy=0.8", "between 0 and 1"),
        (float("nan"), "robust_accuracy=0.8", "between 0 and 1"),
    ],
)
def test_min_transfer_usage_errors(value, gates, msg):
    with pytest.raises(UsageError, match=msg):
        check_min_transfer(value, parse_gates(gates))
