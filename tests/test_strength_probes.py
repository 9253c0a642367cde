"""Attack-strength probes (auditor.scan.probes): a large-ε run and a longer run of the scan's strongest
attack on a seeded subset, recorded in results.json extras.strength_probes."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from auditor.cli import cli
from auditor.scan.probes import LARGE_EPS, PROBE_IMAGES, probe_indices
from onnx_factory import make_classifier, write_image_folder


def test_probe_indices_are_a_seeded_sorted_sample():
    assert probe_indices(5, 0).tolist() == [0, 1, 2, 3, 4]
    a, b = probe_indices(1000, 3), probe_indices(1000, 4)
    assert len(a) == PROBE_IMAGES and (np.diff(a) > 0).all() and not np.array_equal(a, b)
    assert np.array_equal(a, probe_indices(1000, 3))


def test_a_white_box_scan_records_both_probes_and_no_probes_turns_them_off(tmp_path):
    data = write_image_folder(tmp_path / "data", n_per_class=3, size=32)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=["normal", "pneumonia", "pneumothorax"])
    base = ["scan", str(model), "--data", str(data), "--surrogate", "target", "--attacks", "mifgsm", "--eps", "8"]
    base += ["--n-boot", "20", "--cache-dir", str(tmp_path / "cache"), "--format", "json", "--no-progress"]
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    probes = json.loads((tmp_path / "a" / "results.json").read_text())["extras"]["strength_probes"]
    by_kind = {p["kind"]: p for p in probes}
    assert set(by_kind) == {"large_eps", "more_iterations"}
    big, more = by_kind["large_eps"], by_kind["more_iterations"]
    assert big["threat_model"] == "white-box" and big["epsilon"] == LARGE_EPS and big["n"] == 9
    assert big["accuracy"] <= big["reference_accuracy"]  # half the intensity range breaks this linear model
    assert big["accuracy"] < 0.5
    assert more["steps"] == 2 * more["reference_steps"] and more["epsilon"] == 8 / 255
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "b"), "--no-probes"])
    assert r.exit_code == 0, r.output
    assert "strength_probes" not in json.loads((tmp_path / "b" / "results.json").read_text())["extras"]
