"""Patient-wise split and the data checks of the recipes."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.errors import DataError
from auditor.training.common import load_training_data, patient_split
from auditor.training.phantoms import write_phantom_dataset


def test_no_patient_on_two_sides():
    rng = np.random.default_rng(0)
    n_patients = 90
    pat_label = rng.integers(0, 3, n_patients)
    groups, labels = [], []
    for p in range(n_patients):
        for _ in range(int(rng.integers(1, 5))):  # 1-4 films per patient
            groups.append(f"p{p}")
            labels.append(int(pat_label[p]))
    split = patient_split(np.array(labels), groups, seed=42)
    parts = [{groups[i] for i in part} for part in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    all_idx = np.concatenate([split.train, split.val, split.test])
    assert sorted(all_idx.tolist()) == list(range(len(labels)))
    frac = np.array([len(split.train), len(split.val), len(split.test)]) / len(labels)
    assert np.allclose(frac, [0.6, 0.2, 0.2], atol=0.08)
    for part in (split.train, split.val, split.test):
        assert set(np.array(labels)[part]) == {0, 1, 2}


def test_same_seed_same_split_other_seed_other_split():
    labels = np.repeat([0, 1, 2], 20)
    groups = [f"g{i}" for i in range(60)]
    a, b, c = patient_split(labels, groups, 42), patient_split(labels, groups, 42), patient_split(labels, groups, 7)
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_images_without_patient_id_are_their_own_group(phantom_dir, tmp_path):
    # drop the patient ids: every image becomes its own group and the caveat is recorded
    root = write_phantom_dataset(tmp_path / "nopid", 6, size=32, seed=3)
    (root / "MANIFEST.csv").unlink()
    data = load_training_data(root, 32)
    assert all(p is None for p in data.patient_ids)
    assert len(set(data.groups())) == len(data.labels)
    assert any("own patient" in c for c in data.caveats)


def test_too_few_images_per_class(tmp_path):
    root = write_phantom_dataset(tmp_path / "few", 3, size=32, seed=0)
    with pytest.raises(DataError, match="too few readable images"):
        load_training_data(root, 32)


def test_single_class(tmp_path):
    root = write_phantom_dataset(tmp_path / "one", 6, size=32, seed=0)
    import shutil

    shutil.rmtree(root / "pneumonia")
    shutil.rmtree(root / "pneumothorax")
    with pytest.raises(DataError, match="only one class"):
        load_training_data(root, 32)


def test_unreadable_images_are_skipped_and_listed(tmp_path):
    root = write_phantom_dataset(tmp_path / "bad", 6, size=32, seed=0)
    (root / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data = load_training_data(root, 32)
    assert len(data.labels) == 18
    assert any("broken.png" in s.name for s in data.skipped)
