"""``xray-audit report --merge``: a transfer scan and a white-box scan of one model as one report (issue 29).

The target classifies mean brightness (``onnx_factory``); the transfer scan attacks it from an
unrelated surrogate (a SmallCNN, nothing transfers), the white-box scan attacks the target itself
with a budget that moves the brightness across the boundary. Merged, the report holds both and the
transfer verdict sees the white-box bound.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from onnx_factory import make_classifier

CLASSES = ["normal", "pneumonia"]


@pytest.fixture(scope="module")
def scans(scan_setup):
    s = scan_setup("merge", classes=CLASSES, n_per_class=6)

    def scan(out, surrogate_arg, eps, *extra):
        args = s.args(
            out, "--attacks", "mifgsm", "--eps", eps, "--seed", "0", "--no-detector", *extra, surrogate=surrogate_arg
        )
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == 0, r.output
        return s.root / out / "results.json"

    return {
        "root": s.root,
        "data": s.data,
        "transfer": scan("transfer", str(s.surrogate), "4"),
        "whitebox": scan("whitebox", "target", "64"),
        "scan": scan,
    }


def _merge(*paths, out):
    return CliRunner().invoke(cli, ["report", "--merge", *map(str, paths), "--out", str(out), "--format", "html"])


def test_merge_combines_transfer_and_white_box(scans):
    a, b = json.loads(scans["transfer"].read_text()), json.loads(scans["whitebox"].read_text())
    assert a["extras"]["transfer"]["whitebox_worst"] is None  # alone, the transfer scan has no bound
    out = scans["root"] / "merged"
    r = _merge(scans["transfer"], scans["whitebox"], out=out)
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "results.json").read_text())
    names = [c["name"] for c in doc["conditions"]]
    assert names == ["clean", "mifgsm@4", "mifgsm@64"]
    assert {c["name"]: c.get("threat_model") for c in doc["conditions"]}["mifgsm@64"] == "white-box"
    assert doc["extras"]["transfer"]["whitebox_worst"]["name"] == "mifgsm@64"
    assert [m["results"] for m in doc["extras"]["merged_from"]] == [str(scans["transfer"]), str(scans["whitebox"])]
    assert doc["command"].startswith("xray-audit report --merge")
    assert len(doc["samples"]) == len(a["samples"]) == len(b["samples"])
    worst = min(c["metrics"]["accuracy"] for c in doc["conditions"] if c["kind"] == "attack")
    assert worst == next(c for c in b["conditions"] if c["name"] == "mifgsm@64")["metrics"]["accuracy"]
    assert "mifgsm@64" in (out / "report.html").read_text() and "mifgsm@64" in r.output
    # the merged results.json renders again like any other
    again = CliRunner().invoke(cli, ["report", str(out / "results.json"), "--format", "json", "--out", str(out / "x")])
    assert again.exit_code == 0, again.output


def test_merge_refuses_another_model_or_data(scans):
    root = scans["root"]
    other = make_classifier(root / "other.onnx", channels=1, num_classes=2, class_names=CLASSES, size=None)
    r = CliRunner().invoke(
        cli,
        ["scan", str(other), "--data", str(scans["data"]), "--out", str(root / "other"), "--image-size", "32"]
        + ["--n-boot", "20", "--format", "json", "-q"],
    )
    assert r.exit_code == 0, r.output
    refused = _merge(scans["transfer"], root / "other" / "results.json", out=root / "m1")
    assert refused.exit_code == 3 and "different model SHA-256" in refused.output
    doc = json.loads(scans["whitebox"].read_text())
    doc["data"]["manifest_sha256"] = "0" * 64
    (root / "otherdata.json").write_text(json.dumps(doc))
    refused = _merge(scans["transfer"], root / "otherdata.json", out=root / "m2")
    assert refused.exit_code == 3 and "different data manifest SHA-256" in refused.output
    assert not (root / "m1").exists() and not (root / "m2").exists()


def test_merge_refuses_one_name_with_other_numbers(scans):
    root = scans["root"]
    doc = json.loads(scans["whitebox"].read_text())
    clean = doc["conditions"][0]
    clean["metrics"]["accuracy_ci"] = [0.0, 1.0]  # e.g. another --n-boot
    (root / "other_ci.json").write_text(json.dumps(doc))
    r = _merge(scans["transfer"], root / "other_ci.json", out=root / "m3")
    assert r.exit_code == 3 and "condition 'clean' has different numbers" in r.output
    # the same name with the same numbers (the clean condition of both scans) is kept once: shown above


def test_merge_needs_two_files_and_out(scans):
    r = CliRunner().invoke(cli, ["report", "--merge", str(scans["transfer"]), "--out", str(scans["root"] / "m4")])
    assert r.exit_code == 2 and "at least two" in r.output
    r = CliRunner().invoke(cli, ["report", "--merge", str(scans["transfer"]), str(scans["whitebox"])])
    assert r.exit_code == 2 and "--out" in r.output
    r = CliRunner().invoke(cli, ["report", str(scans["transfer"]), str(scans["whitebox"])])
    assert r.exit_code == 2 and "--merge" in r.output


def test_clean_numbers_are_the_same_in_both_scans(scans):
    """What the merge relies on: the clean condition of two scans with one seed is identical."""
    a, b = (json.loads(scans[k].read_text())["conditions"][0] for k in ("transfer", "whitebox"))
    assert a["metrics"] == b["metrics"] and a["predictions"] == b["predictions"]
    assert np.allclose(a["probabilities"], b["probabilities"])
