"""Issue 23 item 3: the attack-strength checks (auditor/strength.py) and where the reports show them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from synthetic_results import audit

from auditor.cli import cli
from auditor.report.console import ConsoleRenderer
from auditor.report.html import render_html
from auditor.report.jsonfmt import results_json
from auditor.report.summary import worst_case
from auditor.strength import MASKING_TEXT, holm, strength_checks
from auditor.strength_probes import StrengthProbe, read_probes


def _check(result, name):
    return strength_checks(result)["checks"][name]


def _without_predictions(result):
    return replace(result, conditions=tuple(replace(c, predictions=()) for c in result.conditions))


# --------------------------------------------------------------------------- white-box / query vs transfer


def test_a_white_box_attack_weaker_than_transfer_is_flagged():
    r = audit(**{"usmm_t_8": range(40), "apgd-ce_w_8": range(5)})
    chk = _check(r, "stronger_than_transfer")
    assert chk["status"] == "violated" and chk["tested"] == 1
    (v,) = chk["violations"]
    assert v["conditions"] == ["apgd-ce@8"] and v["versus"] == "usmm@8" and v["p_holm"] < 0.05
    assert "exact McNemar (35 vs 0 images)" == v["test"]
    assert strength_checks(r)["flagged"] == {"apgd-ce@8": [v["text"]]}


@pytest.mark.parametrize("wb_wrong", [range(45), range(38)])  # stronger; weaker by 2 images only (noise)
def test_a_white_box_attack_as_strong_or_within_noise_passes(wb_wrong):
    r = audit(**{"usmm_t_8": range(40), "square_q_8": wb_wrong})
    assert _check(r, "stronger_than_transfer")["status"] == "passed"


def test_only_the_same_epsilon_is_compared():
    r = audit(**{"usmm_t_8": range(40), "apgd-ce_w_4": range(5)})
    assert _check(r, "stronger_than_transfer")["status"] == "not run"


def test_without_per_image_predictions_non_overlapping_intervals_decide():
    weak = _without_predictions(audit(**{"usmm_t_8": range(40), "apgd-ce_w_8": range(5)}))
    chk = _check(weak, "stronger_than_transfer")
    assert chk["status"] == "violated" and chk["violations"][0]["test"] == "95% intervals do not overlap"
    near = _without_predictions(audit(**{"usmm_t_8": range(40), "apgd-ce_w_8": range(33)}))
    assert _check(near, "stronger_than_transfer")["status"] == "passed"


# --------------------------------------------------------------------------- accuracy vs ε


def test_accuracy_rising_with_epsilon_is_flagged_on_the_larger_budget():
    r = audit(**{"usmm_t_4": range(50), "usmm_t_8": range(10)})
    chk = _check(r, "monotone_in_eps")
    assert chk["status"] == "violated"
    (v,) = chk["violations"]
    assert v["conditions"] == ["usmm@8"] and v["versus"] == "usmm@4" and "accuracy rises with ε" in v["text"]


def test_a_rise_within_noise_is_not_flagged():
    r = audit(**{"usmm_t_2": range(10), "usmm_t_4": range(12), "usmm_t_8": range(11)})
    chk = _check(r, "monotone_in_eps")
    assert chk["status"] == "passed" and chk["tested"] == 3  # every pair of budgets


def test_series_are_per_attack_and_threat_model():
    # a weak attack at 8 and a strong one at 4 are different series: no violation
    r = audit(**{"mifgsm_t_4": range(50), "usmm_t_8": range(10)})
    assert _check(r, "monotone_in_eps")["status"] == "not run"


def test_holm_adjusts_within_a_check():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []
    # two comparisons each at p ~ 0.03 alone: Holm keeps them below 0.05 only if both are that small
    assert holm([0.03, 0.5]) == pytest.approx([0.06, 0.5])


# --------------------------------------------------------------------------- probes


def _probe(**kw):
    base = {"kind": "large_eps", "attack": "apgd-ce", "threat_model": "white-box", "epsilon": 64 / 255, "n": 30}
    return {**base, **kw}


@pytest.mark.parametrize("accuracy, status", [(0.8, "violated"), (0.3, "passed"), (0.0, "passed"), (0.4, "passed")])
def test_large_eps_probe_must_reach_chance(accuracy, status):
    r = audit(**{"apgd-ce_w_8": range(20)})
    r = replace(r, extras={"strength_probes": [_probe(accuracy=accuracy)]})
    chk = _check(r, "large_eps")
    assert chk["status"] == status  # 0.4 on 30 images (12 correct) is within noise of chance 1/3
    if status == "violated":
        assert chk["violations"][0]["conditions"] == ["apgd-ce@8"]
        assert "above chance 33.3%" in chk["violations"][0]["text"]


@pytest.mark.parametrize(
    "acc, ref, steps, ref_steps, status",
    [
        (0.9, 0.2, 100, 10, "violated"),
        (0.2, 0.9, 10, 100, "violated"),  # the same probe written the other way round
        (0.25, 0.2, 100, 10, "passed"),
        (0.1, 0.3, 100, 10, "passed"),
    ],
)
def test_more_iterations_must_not_raise_accuracy(acc, ref, steps, ref_steps, status):
    probe = _probe(
        kind="more_iterations",
        epsilon=8 / 255,
        n=40,
        accuracy=acc,
        reference_accuracy=ref,
        steps=steps,
        reference_steps=ref_steps,
    )
    r = replace(audit(**{"apgd-ce_w_8": range(20)}), extras={"strength_probes": [probe]})
    chk = _check(r, "more_iterations")
    assert chk["status"] == status
    if status == "violated":
        v = chk["violations"][0]
        assert (v["steps"], v["reference_steps"]) == (100, 10) and v["conditions"] == ["apgd-ce@8"]


def test_probe_record_round_trip_and_validation():
    d = _probe(kind="more_iterations", accuracy=0.1, reference_accuracy=0.2, steps=200, reference_steps=100)
    p = StrengthProbe.from_dict(d)
    assert p.to_dict() == d and StrengthProbe.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    assert StrengthProbe.from_dict(_probe(accuracy=0.5)).reference_accuracy is None
    for bad, msg in [
        (_probe(kind="huge", accuracy=0.5), "kind"),
        (_probe(n=0, accuracy=0.5), "n must"),
        (_probe(accuracy=1.5), "accuracy"),
        (_probe(accuracy=float("nan")), "accuracy"),
        (_probe(kind="more_iterations", accuracy=0.5), "needs steps"),
        ({**_probe(accuracy=0.5), "extra": 1}, "unknown"),
        ({"kind": "large_eps"}, "lacks"),
        (_probe(attack=5, accuracy=0.5), "attack must"),
        (_probe(threat_model=None, accuracy=0.5), "threat_model must"),
    ]:
        with pytest.raises(ValueError, match=msg):
            StrengthProbe.from_dict(bad)
    r = replace(audit(), extras={"strength_probes": [_probe(accuracy=0.5), {"kind": "x"}, "junk"]})
    probes, notes = read_probes(r)
    assert len(probes) == 1 and len(notes) == 2
    assert strength_checks(r)["notes"] == notes


def test_nothing_to_check_is_not_run_not_passed():
    out = strength_checks(audit(**{"usmm_t_8": range(5)}))
    assert {k: c["status"] for k, c in out["checks"].items()} == dict.fromkeys(out["checks"], "not run")
    assert not out["possible_masking"] and out["flagged"] == {}


# --------------------------------------------------------------------------- the reports


def test_a_violation_is_shown_next_to_the_figure_it_puts_in_doubt(tmp_path):
    r = audit(**{"usmm_t_8": range(40), "apgd-ce_w_8": range(5)})
    assert worst_case(r)["masking"]
    html = render_html(r)
    row = html[html.index('id="conditions-table"') :]
    row = row[row.index("apgd-ce@8") : row.index("</tr>", row.index("apgd-ce@8"))]
    assert MASKING_TEXT in row  # beside the condition row
    assert 'id="worst-masking"' in html  # beside the worst-case figure
    assert 'id="strength-table"' in html and "violated: possible gradient masking" in html
    console = ConsoleRenderer().render(r)
    assert f"{MASKING_TEXT} (apgd-ce@8): apgd-ce@8 (white-box) fools 8.3%" in console
    assert "apgd-ce@8          │ attack │    91.7%" in console and "│ [possible gradient │" in console  # its row
    assert "Attack-strength checks: 0 of 1 passed; violated (possible gradient masking)" in console
    clean = audit(**{"usmm_t_8": range(5), "apgd-ce_w_8": range(40)})
    assert MASKING_TEXT not in render_html(clean) and MASKING_TEXT not in ConsoleRenderer().render(clean)
    # results.json gets the checks (xray-audit report recomputes them)
    src = tmp_path / "in.json"
    src.write_text(results_json(r))
    out = CliRunner().invoke(cli, ["report", str(src), "--out", str(tmp_path / "o"), "--format", "json"])
    assert out.exit_code == 0, out.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["extras"]["strength_checks"]["possible_masking"] is True
    assert doc["extras"]["strength_checks"]["flagged"] == {
        "apgd-ce@8": [doc["extras"]["strength_checks"]["checks"]["stronger_than_transfer"]["violations"][0]["text"]]
    }


def test_a_probe_of_an_attack_without_conditions_still_counts_but_flags_no_row():
    r = replace(audit(**{"usmm_t_8": range(5)}), extras={"strength_probes": [_probe(accuracy=0.9)]})
    out = strength_checks(r)
    assert out["checks"]["large_eps"]["status"] == "violated" and out["possible_masking"]
    assert out["flagged"] == {} and out["checks"]["large_eps"]["violations"][0]["conditions"] == []
    assert worst_case(r)["masking"] and json.loads(json.dumps(out)) == out


def test_robustness_gates_carry_the_masking_flag_in_every_output():
    from xml.etree import ElementTree as ET

    from auditor.report.gate_specs import parse_gates
    from auditor.report.gate_view import gate_rows
    from auditor.report.gates import apply_gates
    from auditor.report.junit import JunitRenderer

    r = apply_gates(
        audit(**{"usmm_t_8": range(40), "apgd-ce_w_8": range(5)}), parse_gates("accuracy=0.5,robust_accuracy=0.1")
    )
    rows = {g["name"]: g for g in gate_rows(r)}
    assert rows["robust_accuracy"]["masking"] and not rows["accuracy"]["masking"]
    console = " ".join(ConsoleRenderer().render(r).split())
    assert f"robust_accuracy: passed: 0.3333 (required >= 0.1; worst: usmm@8) [{MASKING_TEXT}" in console
    assert f"usmm@8 (transfer) [{MASKING_TEXT}]" in render_html(r)
    out = next(ET.fromstring(JunitRenderer().render(r)).iter("system-out")).text
    assert MASKING_TEXT not in out  # the clean accuracy gate
    outs = [e.text for e in ET.fromstring(JunitRenderer().render(r)).iter("system-out")]
    assert MASKING_TEXT in outs[1]
    quiet = apply_gates(audit(**{"usmm_t_8": range(5), "apgd-ce_w_8": range(40)}), parse_gates("robust_accuracy=0.1"))
    assert not gate_rows(quiet)[0]["masking"]
