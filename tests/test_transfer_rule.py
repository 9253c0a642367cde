"""The graded transfer verdict (success-rate efficiency, transfer conditions only), the per-set diagnostics
arithmetic, the headline and the --min-transfer guard."""

from __future__ import annotations

import pytest

from auditor.errors import UsageError
from auditor.report.console import ConsoleRenderer
from auditor.report.gate_specs import check_min_transfer, parse_gates
from auditor.report.gates import evaluate_gates
from auditor.report.html import render_html
from auditor.report.numbers import fmt_pct
from auditor.report.transfer_view import GRADE_WORDS, diagnostic_rows, headline
from auditor.transfer import (
    NO_TRANSFER_EFFICIENCY,
    STRONG_EFFICIENCY,
    WEAK_EFFICIENCY,
    audit_transfer,
    set_diagnostics,
    transfer_summary,
)
from auditor.transfer import grade as transfer_grade
from auditor.types import AuditResult, Condition

WEAK_TEXT = "weak evidence of robustness"


def _attack(name, target_succ, surrogate_succ, acc=0.8, threat="transfer", eff="auto", sizes=((32, 32),)):
    """An undefended attack condition: ``target_succ``/``surrogate_succ`` are attack success rates (of the
    clean-correct images); the flip rates are set apart from them so that a rule on the wrong one shows."""
    extra = {"flip_rate": target_succ * 0.7, "attack_success_rate": target_succ}
    if surrogate_succ is not None:
        if eff == "auto":
            eff = target_succ / surrogate_succ if surrogate_succ else None
        extra["transfer"] = {
            "surrogate_accuracy_clean": 0.9,
            "surrogate_accuracy": 0.1,
            "surrogate_flip_rate": surrogate_succ * 0.7,
            "surrogate_attack_success_rate": surrogate_succ,
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
    # success rates, not flip rates: the target fools 1 of its 4 correct images, the surrogate 3 of its 4
    assert d["transfer_efficiency"] == pytest.approx((1 / 4) / (3 / 4))
    assert d["surrogate_input_size"] == [[16, 16]] and d["target_input_size"] == [32, 32]
    assert d["same_input_size"] is False


def test_efficiency_undefined_when_surrogate_is_fooled_on_nothing():
    d = set_diagnostics([0, 1], [0, 1], [1, 1], [0, 1], [0, 1], [(8, 8)], (8, 8))
    assert d["surrogate_attack_success_rate"] == 0.0 and d["transfer_efficiency"] is None
    assert d["same_input_size"] is True


def test_efficiency_uses_success_rates_of_an_inaccurate_surrogate():
    # the CXR case: the surrogate is right on 3 of 4 images and fooled on all 3 (success 1, flips 3/4);
    # the target is right on all 4 and fooled on 1 (success 1/4): efficiency 0.25, not (1/4) / (3/4)
    y = [0, 0, 1, 1]
    d = set_diagnostics(y, [0, 0, 1, 1], [1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0], [(8, 8)], (8, 8))
    assert d["surrogate_attack_success_rate"] == 1.0 and d["surrogate_flip_rate"] == pytest.approx(3 / 4)
    assert d["transfer_efficiency"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "target_succ,surrogate_succ,grade,weak",
    [
        (0.02, 0.95, "none", True),
        (0.15, 1.0, "none", True),  # the case: surrogate success 100 %, target 14-15 %
        (0.199, 1.0, "none", True),
        (0.20, 1.0, "weak", True),
        (0.499, 1.0, "weak", True),
        (0.40, 0.80, "partial", False),  # efficiency 0.5: half of the surrogate's success carried over
        (0.79, 1.0, "partial", False),
        (0.80, 1.0, "strong", False),
        (0.30, 0.30, "strong", False),  # efficiency 1 even though the attack is weak on both
    ],
)
def test_graded_transfer(target_succ, surrogate_succ, grade, weak):
    r = _result(_attack("usmm@8", target_succ, surrogate_succ))
    v = audit_transfer(r.conditions)
    assert v["grade"] == grade and v["weak"] is weak
    h = headline(r)
    assert h["weak"] is weak and h["grade"] == grade
    text = " ".join(h["sentences"])
    assert (WEAK_TEXT in text) is weak
    assert (h["advice"] is not None) is weak
    assert text.startswith(GRADE_WORDS[grade])
    assert f"best transfer efficiency {target_succ / surrogate_succ:.2f}" in text
    # the sentence quotes success rates (share of the correctly classified images), not flip rates
    assert f"fooled up to {fmt_pct(surrogate_succ)} of the images it classified correctly" in text


def test_grade_cutoffs_are_the_documented_ones():
    assert (NO_TRANSFER_EFFICIENCY, WEAK_EFFICIENCY, STRONG_EFFICIENCY) == (0.2, 0.5, 0.8)
    assert [transfer_grade(e) for e in (None, float("nan"), 0.0, 0.2, 0.5, 0.8, 1.3)] == [
        None,
        None,
        "none",
        "weak",
        "partial",
        "strong",
        "strong",
    ]


def test_weak_needs_every_transfer_condition_to_fail():
    # one set transferred (efficiency 0.6): the audit is not weak even if another set did not carry over
    r = _result(_attack("usmm@4", 0.01, 0.95), _attack("usmm@8", 0.6, 1.0))
    v = audit_transfer(r.conditions)
    assert v["weak"] is False and v["efficiency"] == pytest.approx(0.6) and v["grade"] == "partial"


def test_surrogate_accuracy_does_not_hide_weak_transfer():
    # fb43584 compared the all-image flip rate with 80 %: a 74 %-accurate surrogate fooled on every correct
    # image has flip rate <= 0.74 and the rule never fired; the success-rate efficiency (0.15) does
    r = _result(_attack("usmm@8", 0.15, 1.0))
    assert r.conditions[1].extra.transfer["surrogate_flip_rate"] < 0.8
    assert audit_transfer(r.conditions)["weak"] is True


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
            "extra": weak.extra.with_(flip_rate=0.5),
        }
    )
    assert audit_transfer(_result(weak, defended).conditions)["weak"] is True


def test_whitebox_bound_is_shown_when_it_ran():
    wb = _attack("mifgsm@8", 0.9, 0.95, acc=0.05, threat="white-box")
    r = _result(_attack("usmm@8", 0.02, 0.95), wb)
    v = audit_transfer(r.conditions)
    # the white-box condition is reported apart: it no longer counts as efficiency 1
    assert v["weak"] is True and v["whitebox_worst"] is wb
    assert v["efficiency"] == pytest.approx(0.02 / 0.95) and v["transfer_efficiency"] == v["efficiency"]
    assert v["transfer_conditions"] == 1 and v["whitebox_conditions"] == 1
    text = " ".join(headline(r)["sentences"])
    assert "White-box bound: under mifgsm@8" in text and "5.0%" in text
    assert "best transfer efficiency 0.02" in text and "efficiency 1.00" not in text
    assert [row["name"] for row in diagnostic_rows(r)] == ["usmm@8"]  # no efficiency row for white-box
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


def test_min_transfer_ignores_whitebox_conditions_next_to_transfer_ones():
    # fb43584 counted the white-box condition as efficiency 1 and passed this audit's weak transfer
    gates = parse_gates("robust_accuracy=0.3")
    r = _result(_attack("usmm@8", 0.1, 1.0, acc=0.7), _attack("mifgsm@8", 0.9, 0.9, acc=0.4, threat="white-box"))
    out = evaluate_gates(r, gates, min_transfer=0.5)
    assert not out[0].passed and "vacuous audit, transfer efficiency 0.100" in out[0].detail


@pytest.mark.parametrize("min_transfer,passed", [(0.5, True), (0.5000001, False), (0.4999999, True)])
def test_min_transfer_boundary(min_transfer, passed):
    # efficiency exactly 0.5 (target success 0.4 / surrogate success 0.8) meets --min-transfer 0.5
    r = _result(_attack("usmm@8", 0.4, 0.8, acc=0.6))
    assert audit_transfer(r.conditions)["efficiency"] == 0.5
    out = evaluate_gates(r, parse_gates("robust_accuracy=0.3"), min_transfer=min_transfer, allow_transfer_only=True)
    assert out[0].passed is passed


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
