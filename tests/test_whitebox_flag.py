"""``--whitebox``: transfer attacks from a surrogate and white-box attacks on the target in one scan
(issue 29 item 2), with the worst case over both."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from auditor.cli import cli
from auditor.reference_models.registry import build_model, make_checkpoint
from onnx_factory import make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _surrogate(path):
    spec = {"layout": "NCHW", "channels": 1, "height": 32, "width": 32, "scaling": "unit", "mean": [0.0]}
    spec.update(std=[1.0], class_names=CLASSES, output_kind="logits")
    torch.manual_seed(0)
    torch.save(make_checkpoint(build_model("small_cnn", 3, 1).eval(), "small_cnn", 3, 1, spec), path)
    return path


def test_one_scan_holds_transfer_and_white_box_conditions(tmp_path):
    data = write_image_folder(tmp_path / "data", n_per_class=2, size=32)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=CLASSES)
    sur = _surrogate(tmp_path / "s.pt")
    args = ["scan", str(model), "--data", str(data), "--surrogate", str(sur), "--attacks", "mifgsm"]
    args += ["--whitebox", "apgd", "--attack-param", "apgd.steps=5", "--eps", "64", "--no-probes", "--no-detector"]
    args += ["--n-boot", "20", "--cache-dir", str(tmp_path / "c"), "--format", "json", "--out", str(tmp_path / "o")]
    args += ["--fail-under", "robust_accuracy=0.5"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output  # the white-box condition fails the gate the transfer one passes
    res = json.loads((tmp_path / "o" / "results.json").read_text())
    tm = {c["name"]: c["threat_model"] for c in res["conditions"] if c["kind"] == "attack"}
    assert tm == {"mifgsm@64": "transfer", "apgd@64": "white-box"}
    assert res["parameters"]["whitebox_attacks"] == ["apgd"]
    assert "apgd@64 (white-box)" in r.output


def test_whitebox_flag_errors(tmp_path):
    base = ["scan", str(tmp_path / "m.onnx"), "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    for extra, msg in [
        (["--surrogate", "s.pt", "--attacks", "apgd", "--whitebox", "apgd"], "also in --attacks"),
        (["--surrogate", "target", "--attacks", "apgd", "--whitebox", "mifgsm"], "with --surrogate target"),
        (["--whitebox", "square"], "not a gradient attack"),
        (["--whitebox", "nope"], "unknown attack"),
    ]:
        r = CliRunner().invoke(cli, [*base, *extra])
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
