"""The clean part of a scan through the library: results keys, determinism, real data."""

from __future__ import annotations

import json

import pytest

from auditor.errors import DataError, UsageError
from auditor.models.onnx import OnnxClassifier
from auditor.models.spec import read_spec
from auditor.scan.options import ScanOptions
from auditor.scan.pipeline import Auditor
from onnx_factory import make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _scan(model_path, data, **opts):
    target = OnnxClassifier(model_path, spec=read_spec(model_path, overrides={"image_size": 32}))
    return Auditor(target, ScanOptions(n_boot=200, **opts), command="test").run(str(data))


def _strip_times(doc):
    doc = dict(doc)
    for key in ("created", "finished"):
        doc.pop(key)
    doc["environment"] = {k: v for k, v in doc["environment"].items() if not k.startswith("seconds")}
    return doc


def test_clean_scan_keys_and_values(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=4, patient_manifest=True)
    model = make_classifier(tmp_path / "m.onnx", layout="NHWC", scaling="0-255", class_names=CLASSES)
    res = _scan(model, data)
    doc = res.to_dict()
    for key in ("schema_version", "tool_version", "created", "command", "model", "data", "conditions"):
        assert key in doc
    assert set(doc["model"]) >= {"path", "sha256", "spec"}
    assert set(doc["data"]) >= {"manifest_sha256", "n_images", "per_class", "skipped"}
    clean = doc["conditions"][0]
    assert clean["name"] == "clean"
    m = clean["metrics"]
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    assert m["labels"] == CLASSES and m["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    assert set(m["per_class"]["pneumonia"]) >= {"precision", "recall", "f1", "support", "sensitivity", "specificity"}
    assert m["bootstrap"]["unit"] == "patient"
    assert doc["data"]["per_class"] == {"normal": 4, "pneumonia": 4, "pneumothorax": 4}


def test_same_inputs_same_json(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=3)
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    a = _strip_times(_scan(model, data, max_images=7, seed=1).to_dict(True))
    b = _strip_times(_scan(model, data, max_images=7, seed=1).to_dict(True))
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["data"]["n_images"] == 7


def test_corrupt_image_is_listed_in_results(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=2)
    (data / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = _scan(make_classifier(tmp_path / "m.onnx", class_names=CLASSES), data)
    assert res.data["n_images"] == 6
    assert [s["name"] for s in res.data["skipped"]] == ["normal/broken.png"]


def test_no_class_overlap_is_a_data_error(tmp_path):
    data = write_image_folder(tmp_path / "d", classes=("cat", "dog", "bird"), n_per_class=1)
    with pytest.raises(DataError, match="no data label matches"):
        _scan(make_classifier(tmp_path / "m.onnx", class_names=CLASSES), data)


def test_compare_models_with_different_classes_refused(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=1)
    a = make_classifier(tmp_path / "a.onnx", class_names=CLASSES)
    b = make_classifier(tmp_path / "b.onnx", class_names=["x", "y", "z"])
    target = OnnxClassifier(a, spec=read_spec(a))
    with pytest.raises(UsageError, match="differ"):
        Auditor(target, ScanOptions(n_boot=0)).run(str(data), compare=[OnnxClassifier(b)])


@pytest.mark.shared_data
def test_clean_scan_on_shared_chest_xrays(shared_cxr, tmp_path):
    """All 1,408 real images through a (meaningless) brightness model: the pipeline, not the model, is tested."""
    model = make_classifier(tmp_path / "m.onnx", size=None, channels=1, class_names=CLASSES)
    target = OnnxClassifier(model, spec=read_spec(model, overrides={"image_size": 64}))
    res = Auditor(target, ScanOptions(n_boot=100)).run(str(shared_cxr))
    assert res.data["n_images"] == 1408 and res.data["skipped"] == []
    assert res.data["per_class"] == {"normal": 428, "pneumonia": 392, "pneumothorax": 588}
    assert res.data["patient_ids"] == 428 + 392
    m = res.conditions[0].metrics
    assert sum(map(sum, m["confusion_matrix"])) == 1408
    assert m["bootstrap"]["unit"] == "patient"


def test_dicom_conversions_and_full_skip_reasons_reach_results_and_report(tmp_path):
    pytest.importorskip("pydicom", reason="pydicom is not installed")
    from pydicom.data import get_testdata_file

    from auditor.report.html import render_html

    colour = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False)
    truncated = get_testdata_file("MR_truncated.dcm", download=False)
    if not (colour and truncated):
        pytest.skip("pydicom's bundled test files are not installed")
    data = write_image_folder(tmp_path / "d", n_per_class=2)
    (data / "normal" / "sc.dcm").write_bytes(open(colour, "rb").read())
    (data / "pneumonia" / "cut.dcm").write_bytes(open(truncated, "rb").read())
    res = _scan(make_classifier(tmp_path / "m.onnx", class_names=CLASSES), data)
    doc = json.loads(json.dumps(res.to_dict()))
    assert [c["name"] for c in doc["data"]["conversions"]] == ["normal/sc.dcm"]
    assert any("0.299 R + 0.587 G + 0.114 B" in n for n in doc["data"]["conversions"][0]["notes"])
    (reason,) = [s["reason"] for s in doc["data"]["skipped"] if s["name"] == "pneumonia/cut.dcm"]
    assert reason.endswith("or the transfer syntax may be incorrect).")
    html = render_html(res)
    assert "Images converted while loading" in html and reason in html
