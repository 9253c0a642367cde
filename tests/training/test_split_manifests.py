"""bench/split_manifests.py reproduces the training split exactly (the disjoint surrogate relies on it)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

from auditor.training.common import load_training_data, patient_split

BENCH = Path(__file__).resolve().parents[2] / "bench" / "split_manifests.py"


def _module():
    spec = importlib.util.spec_from_file_location("split_manifests", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_manifests_are_the_training_split_and_patient_disjoint(tmp_path):
    from auditor.training.phantoms import write_phantom_dataset

    phantom_dir = write_phantom_dataset(tmp_path / "data", 40, size=32, seed=1)  # val part must itself be splittable
    mod = _module()
    summary = mod.write_manifests(str(phantom_dir), tmp_path / "split", seed=42)
    data = load_training_data(phantom_dir, 32, quiet=True, progress=False)
    split = patient_split(data.labels, data.groups(), seed=42)
    root = Path(data.root)
    for part in ("train", "val", "test"):
        rows = _rows(tmp_path / "split" / f"{part}.csv")
        expected = [str(root / data.rel_paths[i]) for i in getattr(split, part)]
        assert [r["path"] for r in rows] == expected
        assert [r["label"] for r in rows] == [data.class_names[int(data.labels[i])] for i in getattr(split, part)]
    assert summary["patient_overlap"] == {"train&val": 0, "train&test": 0, "val&test": 0}
    # the val manifest loads back as exactly those images
    val = load_training_data(
        tmp_path / "split" / "val.csv", 32, data.class_names, quiet=True, progress=False, allow_outside_root=True
    )
    np.testing.assert_array_equal(val.images, data.images[split.val])


def test_balanced_test_sample_has_equal_classes_from_the_test_part(phantom_dir, tmp_path):
    mod = _module()
    mod.write_manifests(str(phantom_dir), tmp_path, seed=42)
    test_paths = {r["path"] for r in _rows(tmp_path / "test.csv")}
    path = mod.write_balanced_test(tmp_path, 3, seed=0)
    rows = _rows(path)
    labels = sorted(r["label"] for r in rows)
    assert labels == sorted({r["label"] for r in _rows(tmp_path / "test.csv")})  # one per class (3 classes)
    assert {r["path"] for r in rows} <= test_paths
