"""The surrogate zoo: disjoint patient folds, held-out exclusion, training through the CLI, use as --surrogate DIR."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.errors import ModelContractError, UsageError

N_PER_CLASS = 24


@pytest.fixture(scope="module")
def paired_phantoms(tmp_path_factory) -> Path:
    """3 x 24 phantoms at 32 px; two images per patient (ids rewritten in MANIFEST.csv)."""
    from auditor.training.phantoms import write_phantom_dataset

    root = write_phantom_dataset(tmp_path_factory.mktemp("zoo") / "data", N_PER_CLASS, size=32, seed=1)
    with open(root / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        label, num = r["patient_id"].rsplit("-", 1)
        r["patient_id"] = f"{label}-p{int(num) // 2}"
    with open(root / "MANIFEST.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def _holdout(root: Path, out: Path, patients: set[str]) -> Path:
    with open(root / "MANIFEST.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["patient_id"] in patients]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "patient_id"])
        w.writerows([[str(root / r["path"]), r["label"], r["patient_id"]] for r in rows])
    return out


def test_folds_are_disjoint_stratified_and_skip_held_out_patients(paired_phantoms, tmp_path):
    from auditor.training.zoo import draw_folds

    held = {"synthetic-normal-p0", "synthetic-pneumonia-p3"}
    f = draw_folds(str(paired_phantoms), 3, seed=0, exclude=str(_holdout(paired_phantoms, tmp_path / "t.csv", held)))
    assert f.excluded_images == 4 and f.excluded_patients == 2
    patients = [{s.patient_id for s in fold} for fold in f.folds]
    assert all(not (a & b) for i, a in enumerate(patients) for b in patients[i + 1 :])
    assert not any(held & p for p in patients)
    assert sum(len(fold) for fold in f.folds) == 3 * N_PER_CLASS - 4
    assert all({s.label for s in fold} == {"normal", "pneumonia", "pneumothorax"} for fold in f.folds)
    again = draw_folds(str(paired_phantoms), 3, seed=0, exclude=str(tmp_path / "t.csv"))
    assert [[s.path for s in fold] for fold in again.folds] == [[s.path for s in fold] for fold in f.folds]


@pytest.mark.parametrize("archs,msg", [("small_cnn", "at least two"), ("small_cnn,vgg99", "unknown architecture")])
def test_parse_archs_errors(archs, msg):
    from auditor.training.zoo import parse_archs

    with pytest.raises(UsageError, match=msg):
        parse_archs(archs)


@pytest.mark.heavy
def test_train_surrogates_and_scan_with_the_zoo(paired_phantoms, tmp_path):
    from auditor.models.surrogate import load_surrogate
    from auditor.models.torch import Ensemble

    held = _holdout(paired_phantoms, tmp_path / "test.csv", {"synthetic-normal-p1", "synthetic-pneumothorax-p2"})
    zoo = tmp_path / "zoo"
    r = CliRunner().invoke(
        cli,
        [
            "train",
            "surrogates",
            "--data",
            str(paired_phantoms),
            "--out",
            str(zoo),
            "--archs",
            "small_cnn,densenet121",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--max-steps",
            "1",
            "--n-boot",
            "10",
            "--device",
            "cpu",
            "--exclude",
            str(held),
            "-q",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((zoo / "zoo.json").read_text())
    assert [m["arch"] for m in doc["members"]] == ["small_cnn", "densenet121"]
    assert doc["excluded_images"] == 4 and "StratifiedGroupKFold" in doc["folds"]
    for m in doc["members"]:
        assert (zoo / m["checkpoint"]).is_file() and (zoo / m["card"]).is_file()
        card = json.loads((zoo / m["card"]).with_suffix(".json").read_text())
        assert card["spec"]["height"] == 32 and card["name"].startswith(f"zoo-{m['fold']}-{m['arch']}")
    fold_paths = [
        {row["path"] for row in csv.DictReader(open(zoo / m["manifest"], encoding="utf-8"))} for m in doc["members"]
    ]
    assert not fold_paths[0] & fold_paths[1]
    held_paths = {row["path"] for row in csv.DictReader(open(held, encoding="utf-8"))}
    assert not held_paths & (fold_paths[0] | fold_paths[1])

    sur = load_surrogate(str(zoo), None, None)
    assert isinstance(sur.module, Ensemble) and len(sur.module.members) == 2
    assert sur.identity["kind"] == "ensemble" and sur.identity["arch"] == "small_cnn+densenet121"

    target = doc["members"][0]["checkpoint"].replace("model.pt", "model.onnx")
    scan = CliRunner().invoke(
        cli,
        [
            "scan",
            str(zoo / target),
            "--data",
            str(held),
            "--out",
            str(tmp_path / "audit"),
            "--surrogate",
            str(zoo),
            "--attacks",
            "mifgsm",
            "--eps",
            "8",
            "--no-detector",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--n-boot",
            "10",
            "--format",
            "json",
            "-q",
            "--allow-outside-root",
        ],
    )  # the held-out CSV lists images of the phantom folder
    assert scan.exit_code == 0, scan.output
    res = json.loads((tmp_path / "audit" / "results.json").read_text())
    cond = next(c for c in res["conditions"] if c["name"] == "mifgsm@8")
    assert (
        cond["surrogate"].startswith("ensemble of small_cnn")
        and cond["transfer"]["surrogate_input_size"] == [[32, 32]] * 2
    )

    # a member that changed after training is refused
    with open(zoo / doc["members"][1]["checkpoint"], "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelContractError, match="SHA-256"):
        load_surrogate(str(zoo), None, None)


def test_a_plain_folder_is_not_a_surrogate(tmp_path):
    from auditor.models.surrogate import load_surrogate

    with pytest.raises(UsageError, match="zoo.json"):
        load_surrogate(str(tmp_path), None, None)
