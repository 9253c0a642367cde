"""Issue 23 item 4 and issue 24 items 3 and 5: the verdict is the worst case over every threat model,
transfer-only audits do not pass robustness gates, missing values are "not measured", and gates whose
threshold lies inside the 95% CI are "inconclusive" in every output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from synthetic_results import audit, condition, labels, result, wrong_on

from auditor.cli import cli
from auditor.errors import ResultsError, UsageError
from auditor.report.console import ConsoleRenderer
from auditor.report.gate_specs import GatePolicy, parse_gates
from auditor.report.gate_view import gate_notes, gate_rows
from auditor.report.gates import apply_gates, evaluate_gates, transfer_only
from auditor.report.html import render_html
from auditor.report.io import load_results
from auditor.report.jsonfmt import results_json
from auditor.report.junit import JunitRenderer
from auditor.report.summary import summary_numbers, worst_case

ROOT = Path(__file__).resolve().parents[2]
KERMANY = ROOT / "bench" / "results" / "kermany" / "transfer" / "results.json"
ROBUST = "robust_accuracy=0.5,max_flip_rate=0.6,max_attack_success_rate=0.6"


def _mixed():
    """Transfer usmm@8 wrong on 10 of 60, white-box apgd-ce@8 on 50, query square@8 on 30."""
    return audit(**{"usmm_t_8": range(10), "apgd-ce_w_8": range(50), "square_q_8": range(30)})


def _by_name(outcomes):
    return {o.name: o for o in outcomes}


# --------------------------------------------------------------------------- worst over every threat model


def test_robustness_gates_use_the_worst_condition_over_every_threat_model():
    r = apply_gates(_mixed(), parse_gates(ROBUST + ",robust_sensitivity:normal=0.5"))
    rows = {g["name"]: g for g in gate_rows(r)}
    assert rows["robust_accuracy"]["value"] == pytest.approx(10 / 60)
    for name in ("robust_accuracy", "max_flip_rate", "max_attack_success_rate", "robust_sensitivity:normal"):
        assert (rows[name]["condition"], rows[name]["threat_model"]) == ("apgd-ce@8", "white-box"), name
        assert not rows[name]["passed"] and not rows[name]["transfer_only"]
    wc = worst_case(r)
    assert wc["condition"].name == "apgd-ce@8" and wc["threat_model"] == "white-box"
    assert wc["threat_models"] == ["transfer", "white-box", "query"] and not wc["transfer_only"]
    assert {t: c.name for t, c in wc["per_threat"].items()} == {
        "transfer": "usmm@8",
        "white-box": "apgd-ce@8",
        "query": "square@8",
    }
    assert summary_numbers(r)["worst"].name == "apgd-ce@8"
    # named with its threat model in every output
    assert "apgd-ce@8 (white-box)" in ConsoleRenderer().render(r)
    junit = ET.fromstring(JunitRenderer().render(r))
    messages = [f.get("message") for f in junit.iter("failure")]
    assert all("apgd-ce@8 (white-box)" in m for m in messages) and len(messages) == 4
    html = render_html(r)
    assert "apgd-ce@8 (white-box)" in html and "Worst per threat model" in html


def test_a_query_attack_alone_is_not_transfer_only():
    r = audit(**{"usmm_t_8": range(10), "square_q_8": range(20)})
    assert not transfer_only(r)
    out = _by_name(evaluate_gates(r, parse_gates("robust_accuracy=0.5")))
    assert out["robust_accuracy"].passed and out["robust_accuracy"].detail.endswith("worst: square@8)")


# --------------------------------------------------------------------------- transfer-only audits


def test_transfer_only_audit_fails_robustness_gates_with_the_reason_unless_allowed():
    r = audit(usmm_t_8=range(5), mifgsm_t_8=range(3))
    assert transfer_only(r)
    gates = parse_gates("accuracy=0.9," + ROBUST)
    strict = apply_gates(r, gates)
    out = _by_name(strict.gates)
    assert out["accuracy"].passed  # a clean gate is not a robustness gate
    for name in ("robust_accuracy", "max_flip_rate", "max_attack_success_rate"):
        assert not out[name].passed
        assert out[name].detail.startswith("failed: transfer-only audit")
        assert "measured " in out[name].detail  # the value is still shown
    notes = gate_notes(strict)
    assert len(notes) == 1  # one line: why, and what to add
    assert "--attacks square" in notes[0] and "--surrogate target --attacks apgd" in notes[0]
    assert "--allow-transfer-only" in notes[0] and "lower bound" in notes[0]
    allowed = apply_gates(r, gates, GatePolicy(allow_transfer_only=True))
    assert all(g.passed for g in allowed.gates)
    assert allowed.extras["gate_evaluation"]["allow_transfer_only"] is True
    assert gate_notes(allowed) == []
    # the headline says what the figure is, and states the acceptance
    wc = worst_case(strict)
    assert wc["transfer_only"] and any("only a lower bound on the model's vulnerability" in s for s in wc["sentences"])
    assert not any("--allow-transfer-only" in s for s in wc["sentences"])
    assert any("--allow-transfer-only" in s for s in worst_case(allowed)["sentences"])
    html = render_html(allowed)
    assert 'id="transfer-only-bound"' in html and "allowed to pass on transfer attacks alone" in html
    assert "only a lower bound" in ConsoleRenderer().render(strict)


def test_a_gate_failing_on_its_value_keeps_its_detail_and_lists_the_transfer_reason():
    r = apply_gates(audit(usmm_t_8=range(40)), parse_gates("robust_accuracy=0.5"))
    (g,) = r.gates
    assert g.detail == "failed: 0.3333 (required >= 0.5; worst: usmm@8)"
    (row,) = gate_rows(r)
    assert row["transfer_only"] and row["reasons"][0].startswith("transfer-only audit")


def test_unrecorded_threat_models_do_not_count_as_a_stronger_attacker():
    r = audit(usmm_t_8=range(5))
    r = replace(r, conditions=tuple(replace(c, threat_model=None) if c.kind == "attack" else c for c in r.conditions))
    assert transfer_only(r)
    (g,) = evaluate_gates(r, parse_gates("robust_accuracy=0.5"))
    assert not g.passed and "not recorded" in g.detail


def test_defended_and_adaptive_white_box_conditions_do_not_lift_the_transfer_only_rule():
    r = audit(usmm_t_8=range(5))
    y = labels(60)
    wb_defended = condition("jpeg:75/mifgsm@8", y, y, tuple(y), kind="defense", attack="mifgsm", threat="white-box")
    r = replace(r, conditions=(*r.conditions, replace(wb_defended, defense="jpeg:75")))
    assert transfer_only(r)


# --------------------------------------------------------------------------- not measured


@pytest.mark.parametrize(
    "spec, key, where",
    [
        ("robust_accuracy=0.02", "accuracy", "metrics"),
        ("max_attack_success_rate=0.99", "attack_success_rate", "extra"),
        ("max_flip_rate=0.99", "flip_rate", "extra"),
    ],
)
def test_a_missing_value_on_the_worst_condition_never_lets_the_next_worst_pass(spec, key, where):
    """Issue 24: ``accuracy: null`` on the worst condition made robust_accuracy=0.02 pass at the next-worst."""
    r = audit(**{"usmm_t_8": range(57), "mifgsm_w_8": range(60)})  # worst: mifgsm@8 at 0.0
    conds = []
    for c in r.conditions:
        if c.name == "mifgsm@8":
            c = (
                replace(c, metrics={**c.metrics, key: None})
                if where == "metrics"
                else replace(c, extra=c.extra.with_(**{key: None}))
            )
        conds.append(c)
    broken = replace(r, conditions=tuple(conds))
    (g,) = evaluate_gates(broken, parse_gates(spec))
    assert not g.passed and g.value is None
    assert g.detail.startswith("not measured") and "mifgsm@8" in g.detail
    # a results.json holding that null is refused before any gate is read (issue 24 item 3, schema part)
    with pytest.raises(ResultsError, match=f"{key} is None although it is measured"):
        load_results_from(broken)


def load_results_from(r):
    """``r`` written to results.json and read back."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "results.json"
        path.write_text(results_json(r))
        return load_results(path)


def test_the_headline_never_skips_an_unmeasured_condition_silently():
    r = audit(**{"usmm_t_8": range(57), "mifgsm_w_8": range(60)})
    conds = tuple(
        replace(c, metrics={**c.metrics, "accuracy": float("nan")}) if c.name == "mifgsm@8" else c for c in r.conditions
    )
    broken = replace(r, conditions=conds)
    wc = worst_case(broken)
    assert wc["unmeasured"] == ["mifgsm@8"] and wc["condition"].name == "usmm@8"
    assert any("Not measured" in s and "mifgsm@8" in s and "not determined" in s for s in wc["sentences"])
    assert 'id="worst-unmeasured"' in render_html(broken)
    assert "Not measured: the accuracy of mifgsm@8" in ConsoleRenderer().render(broken)


# --------------------------------------------------------------------------- point and CI


def _near_threshold():
    """A white-box audit whose worst accuracy 0.71 (71 of 100) has a Wilson CI of about 0.62–0.79."""
    return audit(100, **{"apgd-ce_w_8": range(29)})


def test_threshold_inside_the_ci_is_inconclusive_and_point_decides_by_default():
    r = _near_threshold()
    point = apply_gates(r, parse_gates("robust_accuracy=0.7,accuracy=0.9"))
    rows = {g["name"]: g for g in gate_rows(point)}
    ra = rows["robust_accuracy"]
    assert ra["passed"] and ra["status"] == "inconclusive" and ra["label"] == "PASS (inconclusive)"
    lo, hi = ra["ci"]
    assert lo < 0.7 < hi and ra["value"] == pytest.approx(0.71)
    assert rows["accuracy"]["status"] == "passed"  # clean: 100/100, Wilson CI 0.963–1
    record = point.extras["gate_evaluation"]["records"][0]
    assert (
        record["status"] == "inconclusive"
        and record["ci"] == [lo, hi]
        and point.extras["gate_evaluation"]["gate_on"] == "point"
    )
    assert any("inconclusive gate(s)" in n and "--gate-on ci" in n for n in gate_notes(point))
    ci = apply_gates(r, parse_gates("robust_accuracy=0.7,accuracy=0.9"), GatePolicy(gate_on="ci"))
    out = _by_name(ci.gates)
    assert not out["robust_accuracy"].passed and "inconclusive under --gate-on ci" in out["robust_accuracy"].detail
    assert out["accuracy"].passed
    # every output says so
    console = ConsoleRenderer().render(point)
    assert "PASS (inconclusive)" in console and "decided on the point estimate" in console
    assert "FAIL (inconclusive)" in ConsoleRenderer().render(ci)
    suite = ET.fromstring(JunitRenderer().render(ci))
    failure = next(suite.iter("failure"))
    assert failure.get("type") == "GateInconclusive" and "inconclusive" in failure.get("message")
    assert "95% CI" in failure.get("message")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["gate_on"] == "ci"
    passing = ET.fromstring(JunitRenderer().render(point))
    assert "inconclusive" in next(passing.iter("system-out")).text
    html = render_html(point)
    assert 'class="badge badge-warn gate-inconclusive"' in html and "decided on the point estimate" in html


@pytest.mark.parametrize(
    "spec, status",
    [
        ("robust_accuracy=0.5", "passed"),  # whole CI above
        ("robust_accuracy=0.9", "failed"),  # whole CI below
        ("max_flip_rate=0.5", "passed"),  # flip 0.29, CI about 0.21–0.38
        ("max_flip_rate=0.3", "inconclusive"),
        ("max_flip_rate=0.1", "failed"),
    ],
)
def test_status_follows_the_ci(spec, status):
    r = apply_gates(_near_threshold(), parse_gates(spec))
    (row,) = gate_rows(r)
    assert row["status"] == status
    ci = apply_gates(_near_threshold(), parse_gates(spec), GatePolicy(gate_on="ci"))
    assert ci.gates[0].passed is (status == "passed")


def test_another_condition_whose_ci_holds_the_threshold_makes_the_gate_inconclusive():
    # worst: apgd-ce@8 at 0.80 (CI ~0.71–0.87 on 100), but a white-box condition on 20 images is not possible in one
    # result, so give the second condition a wide stored CI by hand
    r = audit(100, **{"apgd-ce_w_8": range(20), "square_q_8": range(18)})
    conds = tuple(
        replace(c, metrics={**c.metrics, "accuracy_ci": [0.6, 0.95]}) if c.name == "square@8" else c
        for c in r.conditions
    )
    (row,) = gate_rows(apply_gates(replace(r, conditions=conds), parse_gates("robust_accuracy=0.7")))
    assert row["condition"] == "apgd-ce@8" and row["status"] == "inconclusive"
    assert row["inconclusive_conditions"] == ["square@8"]


def test_a_gate_without_a_ci_is_inconclusive():
    r = _near_threshold()
    conds = tuple(replace(c, metrics={**c.metrics, "accuracy_ci": None}) for c in r.conditions)
    (row,) = gate_rows(apply_gates(replace(r, conditions=conds), parse_gates("robust_accuracy=0.3")))
    assert row["passed"] and row["status"] == "inconclusive" and row["ci"] is None


def test_gate_on_must_be_point_or_ci():
    with pytest.raises(UsageError, match="--gate-on"):
        GatePolicy(gate_on="median")


def test_an_older_results_json_without_records_still_renders_its_gates(tmp_path):
    r = apply_gates(_near_threshold(), parse_gates("robust_accuracy=0.7"))
    old = replace(r, extras={})
    (row,) = gate_rows(old)
    assert row["status"] == "passed" and row["ci"] is None and row["condition"] is None
    doc = json.loads(results_json(r))
    assert doc["gates"][0].keys() == {"name", "threshold", "value", "passed", "detail"}  # the stored verdict's shape
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc))
    (again,) = gate_rows(load_results(path))
    assert again["status"] == "inconclusive" and again["threat_model"] == "white-box"
    hostile = replace(r, extras={"gate_evaluation": {"records": [{"name": 3}, "x", {"status": "<b>"}]}})
    assert gate_rows(hostile)[0]["status"] == "passed"
    odd = dict(
        r.extras["gate_evaluation"]["records"][0], reasons=5, inconclusive_conditions="ab", ci="x", condition=[1]
    )
    for block in ({"records": [odd], "gate_on": ["x"]}, {"records": 7}, "junk"):
        weird = replace(r, extras={"gate_evaluation": block, "strength_probes": {"a": 1}})
        (row,) = gate_rows(weird)
        assert row["reasons"] == [] and row["ci"] is None and row["condition"] is None
        assert "robust_accuracy" in render_html(weird) and "robust_accuracy" in JunitRenderer().render(weird)


# --------------------------------------------------------------------------- the CLI


def _report(*args):
    return CliRunner().invoke(cli, ["report", *map(str, args)])


@pytest.mark.skipif(not KERMANY.is_file(), reason="the committed Kermany transfer results are not in this checkout")
def test_report_on_the_committed_kermany_transfer_results(tmp_path):
    """Issue 23: on the committed transfer-only audit, robustness gates exit 1 with the reason."""
    gates = ("--fail-under", "robust_accuracy=0.7,max_flip_rate=0.25")
    r = _report(KERMANY, "--out", tmp_path / "a", "--format", "json,junit", *gates)
    assert r.exit_code == 1, r.output
    reason = [line for line in r.stderr.splitlines() if "transfer-only audit" in line]
    assert len(reason) == 1 and "--attacks square" in reason[0] and "--surrogate target --attacks apgd" in reason[0]
    doc = json.loads((tmp_path / "a" / "results.json").read_text())
    assert [g["passed"] for g in doc["gates"]] == [False, False]
    records = doc["extras"]["gate_evaluation"]["records"]
    assert records[0]["condition"] == "stm[randconv]@8" and records[0]["threat_model"] == "transfer"
    assert records[0]["status"] == "inconclusive"  # 0.71, CI 0.65–0.77
    allowed = _report(KERMANY, "--out", tmp_path / "b", "--format", "json", *gates, "--allow-transfer-only")
    assert allowed.exit_code == 0, allowed.output  # 0.71 >= 0.7 and 0.25 <= 0.25 on the point estimates
    assert "inconclusive gate(s)" in allowed.stderr
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert doc["extras"]["gate_evaluation"]["allow_transfer_only"] is True
    ci = _report(
        KERMANY, "--out", tmp_path / "c", "--format", "json", *gates, "--allow-transfer-only", "--gate-on", "ci"
    )
    assert ci.exit_code == 1
    # --min-transfer keeps working
    mt = _report(
        KERMANY, "--out", tmp_path / "d", "--format", "json", *gates, "--allow-transfer-only", "--min-transfer", "0.5"
    )
    assert (
        mt.exit_code in (0, 1)
        and "min-transfer" in json.loads((tmp_path / "d" / "results.json").read_text())["gates"][0]["detail"]
    )


def test_report_re_evaluates_stored_gates_under_a_new_policy(tmp_path):
    r = apply_gates(audit(usmm_t_8=range(5)), parse_gates("robust_accuracy=0.5"))
    src = tmp_path / "results.json"
    src.write_text(results_json(r))
    plain = _report(src, "--out", tmp_path / "a", "--format", "json")
    assert plain.exit_code == 1 and "transfer-only audit" in plain.stderr
    allowed = _report(src, "--out", tmp_path / "b", "--format", "json,html", "--allow-transfer-only")
    assert allowed.exit_code == 0, allowed.output
    assert "allowed to pass on transfer attacks alone" in (tmp_path / "b" / "report.html").read_text()
    bad = _report(src, "--out", tmp_path / "c", "--gate-on", "mean")
    assert bad.exit_code == 2


def test_results_json_with_gate_records_and_strength_checks_is_valid(tmp_path):
    from auditor.strength import strength_checks

    r = apply_gates(_mixed(), parse_gates(ROBUST))
    r = replace(r, extras={**r.extras, "strength_checks": strength_checks(r)})
    path = tmp_path / "results.json"
    path.write_text(results_json(r))
    back = load_results(path)
    assert back.extras["gate_evaluation"] == json.loads(json.dumps(r.extras["gate_evaluation"]))
    assert [g["status"] for g in gate_rows(back)] == [g["status"] for g in gate_rows(r)]


def test_y_helpers_are_consistent():
    y = labels(6)
    assert wrong_on(y, [0]) == (1, 1, 2, 0, 1, 2) and result(y, []).data["n_images"] == 6


def test_scan_records_the_gate_policy_and_the_strength_checks(tmp_path):
    from onnx_factory import make_classifier, write_image_folder

    data = write_image_folder(tmp_path / "data", n_per_class=4)
    model = make_classifier(tmp_path / "m.onnx", class_names=["normal", "pneumonia", "pneumothorax"])
    args = ["scan", str(model), "--data", str(data), "--out", str(tmp_path / "out"), "--format", "json,junit", "-q"]
    r = CliRunner().invoke(cli, [*args, "--n-boot", "50", "--fail-under", "accuracy=0.5", "--gate-on", "ci"])
    assert r.exit_code == 0, r.output  # 12/12 correct: the whole 95% CI clears 0.5
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    block = doc["extras"]["gate_evaluation"]
    assert (block["gate_on"], block["allow_transfer_only"], block["transfer_only"]) == ("ci", False, False)
    assert block["records"][0]["status"] == "passed" and block["records"][0]["condition"] == "clean"
    assert doc["extras"]["strength_checks"]["possible_masking"] is False
    props = {p.get("name"): p.get("value") for p in ET.parse(tmp_path / "out" / "junit.xml").iter("property")}
    assert props["gate_on"] == "ci"
    bad = CliRunner().invoke(cli, [*args, "--gate-on", "mean"])
    assert bad.exit_code == 2
