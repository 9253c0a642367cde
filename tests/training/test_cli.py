"""`xray-audit train ...` and `xray-audit demo` through click's CliRunner; the demo's library entry."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from auditor.cli import cli

TINY = [
    "--arch",
    "small_cnn",
    "--image-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--max-steps",
    "1",
    "--n-boot",
    "10",
    "--device",
    "cpu",
    "-q",
]


def test_train_reference_cli_and_refusal_of_another_model(phantom_dir, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "reference", "--data", str(phantom_dir), "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output and str(out / "model.onnx") in r.output
    r2 = CliRunner().invoke(
        cli, ["train", "reference", "--data", str(phantom_dir), "--out", str(out), *TINY, "--seed", "1"]
    )
    assert r2.exit_code == 2
    assert r2.stderr.startswith("error: ") and "--overwrite" in r2.stderr and r2.stderr.count("\n") == 1


def test_train_data_errors_exit_3(tmp_path):
    from auditor.training.phantoms import write_phantom_dataset

    root = write_phantom_dataset(tmp_path / "few", 2, size=32)
    r = CliRunner().invoke(cli, ["train", "reference", "--data", str(root), "--out", str(tmp_path / "o"), *TINY])
    assert r.exit_code == 3 and "too few" in r.stderr


def test_adversarial_requires_init():
    r = CliRunner().invoke(cli, ["train", "adversarial", "--data", "x", "--out", "y"])
    assert r.exit_code == 2 and "--init" in r.output


def test_prepare_demo_quick(tmp_path):
    from auditor.training.demo import prepare_demo

    paths = prepare_demo(tmp_path / "demo", quick=True, quiet=True, progress=False, surrogate=False)
    assert Path(paths["model"]).is_file() and Path(paths["checkpoint"]).is_file()
    assert "SYNTHETIC" in (Path(paths["scan_data_dir"]) / "README.md").read_text(encoding="utf-8")
    card = json.loads(Path(paths["card"]).with_suffix(".json").read_text(encoding="utf-8"))
    assert card["synthetic"] is True and "SYNTHETIC" in card["name"]
    assert paths["surrogate"] is None


def test_demo_command_calls_the_scan(tmp_path, monkeypatch):
    import auditor.cli.scan_cmd as scan_cmd

    calls = []

    def fake_scan(model_path, data_dir, out_dir, surrogate_path, quiet=False, **extra):
        calls.append((model_path, data_dir, out_dir, surrogate_path))
        return 0

    monkeypatch.setattr(scan_cmd, "run_scan_from_demo", fake_scan)
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "--quick", "-q", "--no-progress"])
    assert r.exit_code == 0, r.output + r.stderr
    assert "SYNTHETIC" in r.output and "report" in r.output
    ((model, data, out, sur),) = calls
    assert model.endswith("model.onnx") and data.endswith("scan") and sur.endswith("model.pt")
