"""``--whitebox``: transfer attacks from a surrogate and white-box attacks on the target in one scan
(issue 29 item 2), with the worst case over both."""

from __future__ import annotations

import json

from click.testing import CliRunner

from auditor.cli import cli

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def test_one_scan_holds_transfer_and_white_box_conditions(scan_setup):
    s = scan_setup("whitebox", classes=CLASSES, n_per_class=2)
    extra = ["--attacks", "mifgsm", "--whitebox", "apgd", "--attack-param", "apgd.steps=5", "--eps", "64"]
    extra += ["--no-probes", "--no-detector", "--fail-under", "robust_accuracy=0.5"]
    r = CliRunner().invoke(cli, s.args("o", *extra, quiet=False))
    assert r.exit_code == 1, r.output  # the white-box condition fails the gate the transfer one passes
    res = json.loads((s.root / "o" / "results.json").read_text())
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
