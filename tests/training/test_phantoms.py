"""Phantoms: deterministic per seed, classes differ, dataset files written as documented."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from auditor.training.phantoms import CLASSES, make_phantom, make_phantom_batch, phantom_rng, write_phantom_dataset


def test_same_seed_same_pixels_other_seed_other_pixels():
    a, ya = make_phantom_batch(3, size=32, seed=5)
    b, yb = make_phantom_batch(3, size=32, seed=5)
    c, _ = make_phantom_batch(3, size=32, seed=6)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert np.abs(a - c).mean() > 0.01


def test_images_are_unit_range_float32():
    img = make_phantom("pneumothorax", phantom_rng(0, "pneumothorax", 0), 48)
    assert img.shape == (48, 48) and img.dtype == np.float32
    assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.05


def test_classes_are_learnable_well_above_chance():
    from sklearn.linear_model import LogisticRegression

    x, y = make_phantom_batch(30, size=32, seed=0)
    xt, yt = make_phantom_batch(15, size=32, seed=1)
    clf = LogisticRegression(max_iter=2000).fit(x.reshape(len(x), -1), y)
    # deterministic data; chance is 1/3
    assert clf.score(xt.reshape(len(xt), -1), yt) > 0.45


def test_pathology_changes_the_image_of_the_same_anatomy():
    base = make_phantom("normal", phantom_rng(3, "normal", 0), 64)
    for label in ("pneumonia", "pneumothorax"):
        other = make_phantom(label, phantom_rng(3, "normal", 0), 64)  # same draws up to the pathology
        assert np.abs(other - base).max() > 0.1


def test_unknown_class_is_refused():
    with pytest.raises(ValueError, match="unknown phantom class"):
        make_phantom("edema", phantom_rng(0, "normal", 0), 32)


def test_write_dataset_layout_manifest_and_readme(tmp_path):
    root = write_phantom_dataset(tmp_path / "p", 2, size=32, seed=1)
    for label in CLASSES:
        assert len(list((root / label).glob("*.png"))) == 2
    rows = list(csv.DictReader(open(root / "MANIFEST.csv", encoding="utf-8")))
    assert len(rows) == 6 and {"path", "label", "patient_id"} <= set(rows[0])
    assert all((root / r["path"]).is_file() and r["path"].startswith(r["label"] + "/") for r in rows)
    assert len({r["patient_id"] for r in rows}) == 6
    assert "SYNTHETIC" in (root / "README.md").read_text(encoding="utf-8")


def test_dataset_is_readable_by_the_auditor(tmp_path):
    from auditor.data import load_images, open_dataset

    root = write_phantom_dataset(tmp_path / "p", 2, size=32, seed=2)
    ds = open_dataset(root)
    assert ds.per_class() == {c: 2 for c in CLASSES}
    assert all(s.patient_id for s in ds.samples)
    x, kept, skipped = load_images(ds.samples, (32, 32))
    assert x.shape == (6, 1, 32, 32) and not skipped
