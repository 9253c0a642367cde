"""The attack stage's plan (auditor.scan.plan) and the stage clock's calibrated, steadily revised projection
(issue 29 item 3)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from auditor.attack_eta import StageClock
from auditor.cli import cli
from auditor.scan.plan import plan_lines
from onnx_factory import make_classifier, write_image_folder


def test_a_probed_attack_is_projected_from_its_own_probe_not_from_another_attack():
    said: list[str] = []
    plan = [("mifgsm@4", "mifgsm"), ("usmm@4", "usmm")]
    clock = StageClock.for_sets(plan, 10, said.append, costs={"mifgsm": 10, "usmm": 150}, probed={"usmm": 2.0})
    clock.batch_done("mifgsm@4", 2, 1.0)  # 0.5 s/image measured; usmm from its probe (2 s), not 0.5 * 15
    assert clock.projections[0]["seconds_remaining"] == pytest.approx(8 * 0.5 + 10 * 2.0)
    assert "usmm from a probe of 2 images" in said[0]


def test_the_projection_is_revised_at_a_steady_interval():
    said: list[str] = []
    now = [0.0]
    clock = StageClock.for_sets([("mifgsm@4", "mifgsm")], 100, said.append, costs={"mifgsm": 10})
    clock.clock, clock.interval = (lambda: now[0]), 60.0
    clock.batch_done("mifgsm@4", 10, 10.0)  # first batch: a projection
    now[0] = 30.0
    clock.batch_done("mifgsm@4", 10, 10.0)  # within the interval: nothing new
    assert len(said) == 1
    now[0] = 61.0
    clock.batch_done("mifgsm@4", 10, 30.0)  # slower batches: the revision uses every batch measured so far
    assert len(said) == 2 and "30 of 100 images done" in said[1]
    assert clock.projections[-1]["seconds_remaining"] == pytest.approx(70 * 50.0 / 30, abs=0.05)  # rounded to 0.1 s


def test_plan_lines_say_what_fits_a_budget():
    rows = [
        {"set": "a@8", "attack": "a", "on": "s", "seconds_per_image": 1.0, "images": 100, "seconds": 100.0},
        {"set": "b@8", "attack": "b", "on": "s", "seconds_per_image": 5.0, "images": 100, "seconds": 500.0},
    ]
    lines = plan_lines(rows, budget_minutes=5)
    assert "about 10 min 00 s" in lines[2]
    assert "50 of 100 images fit (--max-images 50)" in lines[3] and "only a" in lines[3]
    assert "fits the budget" in plan_lines(rows, budget_minutes=11)[-1]


def test_scan_plan_measures_prints_and_writes_nothing(tmp_path):
    data = write_image_folder(tmp_path / "data", n_per_class=2, size=32)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=["normal", "pneumonia", "pneumothorax"])
    args = ["scan", str(model), "--data", str(data), "--surrogate", "target", "--attacks", "mifgsm,square"]
    args += ["--eps", "8", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--plan"])
    assert r.exit_code == 0, r.output
    assert "plan: mifgsm@8 on target" in r.output and "plan: square@8 on target (queries)" in r.output
    assert "plan: attack stage about" in r.output and not (tmp_path / "o" / "results.json").exists()
    r = CliRunner().invoke(cli, [*args, "--budget", "0.1", "--no-probes", "--n-boot", "20", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert "plan: attack stage about" in r.output and (tmp_path / "o" / "results.json").exists()
