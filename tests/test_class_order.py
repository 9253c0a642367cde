"""Labels are scored by class *name*, whatever the model's class order (issue 24: every test used alphabetical
classes, so a model whose classes are ``pneumonia, normal`` would have been scored with swapped labels), and a
2-class model meets 3-class data only through an explicit ``--label-map`` drop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from onnx_factory import make_classifier

#: the model's classes, not in alphabetical order: index 0 = pneumonia (dark images), 1 = normal (bright)
MODEL_CLASSES = ["pneumonia", "normal"]
LEVELS = {"pneumonia": 0.15, "normal": 0.85, "pneumothorax": 0.5}


def _folder(root, classes, n=4):
    import cv2

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            img = np.clip(LEVELS[c] + rng.uniform(-0.05, 0.05, (32, 32)), 0, 1)
            cv2.imwrite(str(root / c / f"{c}_{i}.png"), np.rint(img * 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    # the brightness classifier: logit 1 rises with brightness, so dark -> index 0, bright -> index 1
    path = tmp_path_factory.mktemp("m") / "model.onnx"
    return make_classifier(path, channels=1, num_classes=2, class_names=MODEL_CLASSES)


def _scan(model, data, out, *extra):
    args = ["scan", str(model), "--data", str(data), "--out", str(out), "--format", "json", "--n-boot", "50", "-q"]
    r = CliRunner().invoke(cli, [*args, *extra])
    doc = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else None
    return r, doc


def test_non_alphabetical_classes_are_scored_by_name(tmp_path, model):
    r, doc = _scan(model, _folder(tmp_path / "data", ["normal", "pneumonia"]), tmp_path / "out")
    assert r.exit_code == 0, r.output
    m = doc["conditions"][0]["metrics"]
    assert m["labels"] == MODEL_CLASSES
    # every image right: swapped labels (data folders in alphabetical order) would give 0 % and an anti-diagonal
    assert m["accuracy"] == 1.0 and m["confusion_matrix"] == [[4, 0], [0, 4]]
    assert m["per_class"]["pneumonia"]["support"] == 4 and m["per_class"]["pneumonia"]["sensitivity"] == 1.0
    by_path = {s["path"].split("/")[-1]: s["label_index"] for s in doc["samples"]}
    assert {k: v for k, v in by_path.items() if k.startswith("pneumonia")} == {
        f"pneumonia_{i}.png": 0 for i in range(4)
    }
    assert {k: v for k, v in by_path.items() if k.startswith("normal")} == {f"normal_{i}.png": 1 for i in range(4)}


def test_two_class_model_on_three_class_data(tmp_path, model):
    data = _folder(tmp_path / "data", ["normal", "pneumonia", "pneumothorax"])
    r, _ = _scan(model, data, tmp_path / "refused")
    assert r.exit_code == 3 and "pneumothorax" in r.output and "--label-map" in r.output
    r, doc = _scan(model, data, tmp_path / "out", "--label-map", "pneumothorax=-")
    assert r.exit_code == 0, r.output
    m = doc["conditions"][0]["metrics"]
    assert m["n"] == 8 and m["labels"] == MODEL_CLASSES
    assert m["accuracy"] == 1.0 and m["confusion_matrix"] == [[4, 0], [0, 4]]
    assert doc["data"]["dropped"] == {"pneumothorax": 4}
