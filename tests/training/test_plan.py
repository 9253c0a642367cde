"""``train surrogates`` on a CPU: the plan that fits a time budget, the estimates and the progress lines (issue 29)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.training.plan import MAX_EPOCHS, MIN_EPOCHS, PROBE_SIZE, plan_zoo
from tests.training.conftest import tiny_config

#: seconds per image of one training step at PROBE_SIZE (about this host's figures with one thread)
PROBE = {"resnet18": 0.11, "small_cnn": 0.02, "densenet121": 0.26}


def _measure(table=PROBE, calls=None):
    def measure(arch, n_classes):
        if calls is not None:
            calls.append(arch)
        return table[arch]

    return measure


def test_cpu_default_fits_the_budget_and_says_why():
    plan = plan_zoo(5190, 2, budget_seconds=3600, measure=_measure())
    assert plan.estimate_seconds <= 3600 and plan.epochs >= MIN_EPOCHS
    assert plan.image_size >= 128 and len(plan.archs) >= 2
    assert plan.chosen == ("archs", "image size", "epochs")
    # the estimate is the per-epoch cost of each member (60 % trained, 20 % evaluated) times the epochs
    fold = 5190 / len(plan.archs)
    per = [PROBE[a] * (plan.image_size / PROBE_SIZE) ** 2 * fold * (0.6 + 0.2 / 3) for a in plan.archs]
    assert plan.estimate_seconds == pytest.approx(sum(per) * plan.epochs)
    text = plan.describe()
    assert "why:" in text and "probe:" in text and "--budget-minutes" in text and f"{plan.image_size} px" in text


def test_a_larger_budget_keeps_the_full_zoo():
    plan = plan_zoo(1000, 2, budget_seconds=100 * 3600, measure=_measure())
    assert plan.archs == ("resnet18", "small_cnn", "densenet121") and plan.image_size == 224
    assert plan.epochs == MAX_EPOCHS


def test_what_is_given_is_kept():
    plan = plan_zoo(5190, 2, budget_seconds=3600, archs=("small_cnn", "resnet18"), epochs=4, measure=_measure())
    assert plan.archs == ("small_cnn", "resnet18") and plan.epochs == 4 and plan.chosen == ("image size",)
    assert plan.estimate_seconds <= 3600
    calls = []
    given = plan_zoo(5190, 2, archs=("small_cnn", "resnet18"), image_size=64, epochs=2, measure=_measure(calls=calls))
    assert (given.archs, given.image_size, given.epochs, given.chosen) == (("small_cnn", "resnet18"), 64, 2, ())
    assert calls == []  # nothing to pick: no probe


def test_a_gpu_keeps_the_full_defaults_without_a_probe():
    calls = []
    plan = plan_zoo(5190, 2, cuda=True, measure=_measure(calls=calls))
    assert (plan.archs, plan.image_size, plan.epochs) == (("resnet18", "small_cnn", "densenet121"), 224, 30)
    assert calls == [] and "CUDA" in plan.reason


def test_when_little_fits_the_plan_says_so():
    plan = plan_zoo(5190, 2, budget_seconds=3600, image_size=224, measure=_measure())
    assert 1 <= plan.epochs < MIN_EPOCHS and plan.estimate_seconds <= 3600 and "fits the most epochs" in plan.reason
    plan = plan_zoo(500_000, 2, budget_seconds=60, measure=_measure())
    assert plan.epochs == 1 and plan.estimate_seconds > 60 and "nothing fits" in plan.reason


def test_train_surrogates_prints_the_plan(tmp_path, monkeypatch):
    from auditor.training import plan as plan_mod
    from auditor.training.phantoms import write_phantom_dataset

    monkeypatch.setattr(plan_mod, "measure_step", _measure({"resnet18": 0.11, "small_cnn": 1e-4, "densenet121": 0.26}))
    data = write_phantom_dataset(tmp_path / "data", 12, size=32, seed=0)
    args = [
        "train",
        "surrogates",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "zoo"),
        "--archs",
        "small_cnn,small_cnn",
    ]
    args += ["--batch-size", "8", "--max-steps", "1", "--n-boot", "10", "--device", "cpu", "--no-progress"]
    args += ["--budget-minutes", "1", "--epochs", "2"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    assert "zoo plan: small_cnn,small_cnn at 224 px, at most 2 epochs each (picked: image size)" in r.output
    assert "zoo time estimate after member 1's first epoch" in r.output and "probe x" in r.output
    doc = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    assert doc["image_size"] == 224


# ----------------------------------------------------------------------------- estimates and progress lines
def test_heartbeat_prints_at_a_steady_interval():
    from auditor.training.common import Heartbeat

    now, lines = [0.0], []
    beat = Heartbeat("epoch 1/3", 100, 30.0, clock=lambda: now[0], say=lines.append)
    for step in range(1, 101):
        now[0] += 1.0  # one second per batch
        beat(step)
    assert len(lines) == 3  # at 30, 60 and 90 s
    assert lines[0] == "epoch 1/3: 30/100 batches (30%), 1.00 s each, about 1 min 10 s left"
    off = Heartbeat("x", 100, 30.0, enabled=False, clock=lambda: now[0], say=lines.append)
    now[0] += 100
    off(50)
    assert len(lines) == 3


def test_training_prints_an_estimate_and_progress_lines_off_a_terminal(phantom_dir, tmp_path, capsys):
    from auditor.training.recipes import train_reference

    cfg = tiny_config(phantom_dir, tmp_path / "run", epochs=3, patience=10, quiet=False, progress_interval=1e-9)
    train_reference(cfg)
    err = capsys.readouterr().err
    assert err.count("time estimate:") == 1 and "at most 2 more epoch(s)" in err
    assert "epoch 1/3: 1/2 batches (50%)" in err and "epoch 3/3: 2/2 batches (100%)" in err
