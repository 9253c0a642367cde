"""`xray-audit inspect` and the CLI's error handling, through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from auditor.cli import cli
from onnx_factory import make_classifier

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def test_inspect_keras_style_nhwc_0_255(tmp_path):
    path = make_classifier(tmp_path / "keras.onnx", layout="NHWC", scaling="0-255", class_names=CLASSES)
    r = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["spec"]["layout"] == "NHWC" and doc["spec"]["scaling"] == "0-255"
    assert doc["spec"]["class_names"] == CLASSES and len(doc["sha256"]) == 64 and doc["opset"] == 17


def test_inspect_torch_style_imagenet_table(tmp_path):
    path = make_classifier(tmp_path / "pt.onnx", scaling="imagenet", size=None, class_names=CLASSES)
    r = CliRunner().invoke(cli, ["inspect", str(path), "--image-size", "96"])
    assert r.exit_code == 0, r.output
    assert "NCHW" in r.output and "imagenet" in r.output and "96 x 96 (dynamic)" in r.output


def test_inspect_flags_override(tmp_path):
    path = make_classifier(tmp_path / "m.onnx", declare_scaling=False)
    r = CliRunner().invoke(cli, ["inspect", str(path), "--json", "--labels", "a,b,c", "--scaling", "minus1-1"])
    doc = json.loads(r.output)
    assert doc["spec"]["class_names"] == ["a", "b", "c"] and doc["spec"]["sources"]["scaling"] == "flag"


def test_inspect_warns_about_defaults(tmp_path):
    path = make_classifier(tmp_path / "m.onnx", declare_scaling=False)
    r = CliRunner().invoke(cli, ["inspect", str(path)])
    assert r.exit_code == 0 and "warning: input scaling not declared" in r.output


def test_bad_model_is_one_line_exit_3(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    r = CliRunner().invoke(cli, ["inspect", str(bad)])
    assert r.exit_code == 3
    assert r.output.strip().startswith("error: ") and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output


def test_missing_model_exit_3(tmp_path):
    r = CliRunner().invoke(cli, ["inspect", str(tmp_path / "none.onnx")])
    assert r.exit_code == 3 and "not found" in r.output


def test_usage_errors_exit_2(tmp_path):
    path = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    r = CliRunner().invoke(cli, ["inspect", str(path), "--scaling", "weird"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["inspect", str(path), "--scaling", "custom"])
    assert r.exit_code == 2 and "needs --mean and --std" in r.output
