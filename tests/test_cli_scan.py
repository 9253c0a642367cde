"""`xray-audit scan` (clean) and `xray-audit report` through CliRunner: files, keys, gates, exit codes."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from onnx_factory import make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


@pytest.fixture()
def data(tmp_path):
    return write_image_folder(tmp_path / "data", n_per_class=4, patient_manifest=True)


def _scan(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args), "--n-boot", "100", "-q"])


@pytest.mark.parametrize("kind", ["keras", "torch"])
def test_clean_scan_writes_results(tmp_path, data, kind):
    if kind == "keras":
        model = make_classifier(
            tmp_path / "k.onnx", layout="NHWC", scaling="0-255", output="probabilities", class_names=CLASSES
        )
    else:
        model = make_classifier(tmp_path / "t.onnx", layout="NCHW", scaling="imagenet", size=None, class_names=CLASSES)
    out = tmp_path / "out"
    r = _scan(model, "--data", data, "--out", out, "--image-size", "32", "--format", "json,csv,html")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["conditions"][0]["name"] == "clean"
    assert doc["conditions"][0]["metrics"]["accuracy"] == 1.0
    assert doc["model"]["spec"]["layout"] == ("NHWC" if kind == "keras" else "NCHW")
    assert len(doc["model"]["sha256"]) == 64 and len(doc["data"]["manifest_sha256"]) == 64
    rows = list(csv.DictReader((out / "samples.csv").open()))
    assert len(rows) == 12 and {r["label"] for r in rows} == set(CLASSES)
    assert "clean" in (out / "report.html").read_text()
    assert "accuracy" in r.output.lower()  # console summary


def test_gates_drive_exit_code(tmp_path, data):
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    ok = _scan(model, "--data", data, "--out", tmp_path / "a", "--format", "json,junit", "--fail-under", "accuracy=0.9")
    assert ok.exit_code == 0, ok.output
    junit = (tmp_path / "a" / "junit.xml").read_text()
    assert "accuracy" in junit and "<failure" not in junit
    bad = _scan(
        model,
        "--data",
        data,
        "--out",
        tmp_path / "b",
        "--format",
        "json,junit",
        "--fail-under",
        "accuracy=0.9,robust_accuracy=0.5",
    )
    assert bad.exit_code == 1  # robust accuracy was not measured: the gate fails
    assert "<failure" in (tmp_path / "b" / "junit.xml").read_text()
    usage = _scan(model, "--data", data, "--out", tmp_path / "c", "--fail-under", "speed=3")
    assert usage.exit_code == 2


def test_strict_turns_skips_into_failure(tmp_path, data):
    (data / "normal" / "broken.png").write_bytes(b"junk")
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    assert _scan(model, "--data", data, "--out", tmp_path / "a", "--format", "json").exit_code == 0
    r = _scan(model, "--data", data, "--out", tmp_path / "b", "--format", "json", "--strict")
    assert r.exit_code == 1 and "skipped (image)" in r.output
    # the report command applies the same policy to a results.json
    r = CliRunner().invoke(
        cli, ["report", str(tmp_path / "b" / "results.json"), "--format", "json", "--out", str(tmp_path / "r")]
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        cli,
        ["report", str(tmp_path / "b" / "results.json"), "--format", "json", "--out", str(tmp_path / "r"), "--strict"],
    )
    assert r.exit_code == 1 and "skipped (image)" in r.output


def test_input_errors(tmp_path, data):
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    r = _scan(model, "--data", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert r.exit_code == 3 and r.output.startswith("error:") and "not found" in r.output
    other = write_image_folder(tmp_path / "other", classes=("cat", "dog", "bird"), n_per_class=1)
    r = _scan(model, "--data", other, "--out", tmp_path / "o")
    assert r.exit_code == 3 and "no data label matches" in r.output
    r = _scan(model, "--data", data, "--out", tmp_path / "o", "--attacks", "usmm")
    assert r.exit_code == 2 and "surrogate" in r.output
    r = _scan(model, "--data", data, "--out", tmp_path / "o", "--attacks", "fgsm2", "--surrogate", "x.pt")
    assert r.exit_code == 2 and "unknown attack" in r.output
    r = _scan(model, "--data", data, "--out", tmp_path / "o", "--eps", "300")
    assert r.exit_code == 2 and "outside (0, 1]" in r.output


def test_label_map_renames(tmp_path):
    data = write_image_folder(tmp_path / "d", classes=("NORMAL", "PNA", "PTX"), n_per_class=2)
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    r = _scan(
        model,
        "--data",
        data,
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--label-map",
        "pna=pneumonia,ptx=pneumothorax",
    )
    assert r.exit_code == 0, r.output


def test_label_map_dash_drops_a_data_class(tmp_path, data):
    model = make_classifier(tmp_path / "m.onnx", num_classes=2, class_names=["normal", "pneumonia"])
    r = _scan(model, "--data", data, "--out", tmp_path / "o", "--format", "json")
    assert r.exit_code == 3 and "pneumothorax" in r.output  # without the drop the extra class is an error
    out = tmp_path / "dropped"
    r = _scan(model, "--data", data, "--out", out, "--format", "json,csv,html", "--label-map", "Pneumothorax=-")
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["data"]["dropped"] == {"pneumothorax": 4}
    assert doc["data"]["n_images"] == 8 and set(doc["data"]["per_class"]) == {"normal", "pneumonia"}
    assert {row["label"] for row in csv.DictReader((out / "samples.csv").open())} == {"normal", "pneumonia"}
    html = (out / "report.html").read_text()
    assert "Data classes dropped" in html and '<td>pneumothorax</td><td class="num">4</td>' in html
    typo = _scan(
        model, "--data", data, "--out", tmp_path / "t", "--format", "json", "--label-map", "pneumothorax=-,ptx=-"
    )
    assert typo.exit_code == 2 and "ptx" in typo.output


@pytest.mark.parametrize("output", ["logits", "sigmoid_logit"])
def test_samples_csv_scores_agree_with_predictions(tmp_path, output):
    classes = CLASSES if output == "logits" else CLASSES[:2]
    data = write_image_folder(tmp_path / "d", classes=tuple(classes), n_per_class=3)
    (data / classes[0] / "broken.png").write_bytes(b"junk")
    model = make_classifier(tmp_path / "m.onnx", output=output, num_classes=len(classes), class_names=classes)
    out = tmp_path / "o"
    assert _scan(model, "--data", data, "--out", out, "--format", "csv").exit_code == 0
    rows = list(csv.DictReader((out / "samples.csv").open()))
    scored = [r for r in rows if r["skipped"] == "no"]
    assert len(scored) == 3 * len(classes)
    assert [(r["path"].endswith("broken.png"), r["skip_reason"] != "") for r in rows if r["skipped"] == "yes"] == [
        (True, True)
    ]
    for r in scored:
        if output == "logits":
            p = [float(r[f"clean:p({c})"]) for c in classes]
            assert abs(sum(p) - 1) < 1e-4 and classes[p.index(max(p))] == r["clean"]
        else:
            assert "clean:p(normal)" not in r
            assert (float(r["clean:p(pneumonia)"]) > 0.5) == (r["clean"] == "pneumonia")


def test_report_rerenders_without_recomputing(tmp_path, data):
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    out = tmp_path / "out"
    assert _scan(model, "--data", data, "--out", out, "--format", "json").exit_code == 0
    r = CliRunner().invoke(
        cli, ["report", str(out / "results.json"), "--format", "html,csv", "--out", str(tmp_path / "r")]
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "r" / "samples.csv").open()))
    assert len(rows) == 12 and all(row.get("clean") for row in rows)
    r = CliRunner().invoke(
        cli,
        [
            "report",
            str(out / "results.json"),
            "--format",
            "json",
            "--out",
            str(tmp_path / "g"),
            "--fail-under",
            "accuracy=1.0",
        ],
    )
    assert r.exit_code == 0
    doc = json.loads((out / "results.json").read_text())
    doc["schema_version"] = "99.0"
    (tmp_path / "new.json").write_text(json.dumps(doc))
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "new.json")])
    assert r.exit_code == 3 and "schema" in r.output


def _nan_for_dark_images(path, src):
    """``src`` with ``log(brightness - 0.3)`` added to every logit: NaN for the dark ("normal") images."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    g.initializer.append(numpy_helper.from_array(np.array(0.3, np.float32), "dark_cut"))
    g.node.extend(
        [
            helper.make_node("Sub", ["bright2", "dark_cut"], ["shifted"]),
            helper.make_node("Log", ["shifted"], ["nan_if_dark"]),
            helper.make_node("Add", ["logits", "nan_if_dark"], ["logits_nan"]),
        ]
    )
    g.output[0].name = "logits_nan"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_nan_outputs_are_an_error_not_a_class(tmp_path, data):
    good = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    model = _nan_for_dark_images(tmp_path / "nan.onnx", good)
    r = _scan(
        model,
        "--data",
        data,
        "--out",
        tmp_path / "o",
        "--format",
        "json",
        "--fail-under",
        "sensitivity:pneumothorax=0.9",
    )
    assert r.exit_code == 3, r.output
    assert "NaN or infinite outputs for 4 of 12 image(s)" in r.output and "normal/img_000.png" in r.output
    assert not (tmp_path / "o" / "results.json").exists()


def test_duplicate_files_are_counted_once_and_listed(tmp_path, data):
    import shutil

    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    src = sorted((data / "pneumonia").glob("*.png"))[0]
    shutil.copy(src, data / "pneumonia" / "again.png")
    shutil.copy(src, data / "pneumonia" / "zagain.png")
    r = _scan(model, "--data", data, "--out", tmp_path / "o", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["data"]["n_images"] == 12 and doc["conditions"][0]["metrics"]["n"] == 12
    dups = [s for s in doc["data"]["skipped"] if "exact duplicate" in s["reason"]]
    assert sorted(s["name"] for s in dups) == [f"pneumonia/{src.name}", "pneumonia/zagain.png"]
    assert any("2 exact-duplicate file(s)" in c for c in doc["data"]["caveats"])
    shutil.copy(src, data / "normal" / "same_pixels.png")
    r = _scan(model, "--data", data, "--out", tmp_path / "o2", "--format", "json")
    assert r.exit_code == 3 and "normal/same_pixels.png" in r.output and "pneumonia/again.png" in r.output


def test_jpeg_sweep_is_documented_in_help():
    r = CliRunner().invoke(cli, ["scan", "--help"])
    assert r.exit_code == 0 and "jpeg:90, jpeg:75, jpeg:50, jpeg:30" in " ".join(r.output.split())
