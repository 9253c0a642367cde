"""Classifier recipes end to end on tiny SYNTHETIC data: ONNX contract, resume, output-folder guard."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from auditor.errors import UsageError
from tests.training.conftest import tiny_config


def test_reference_onnx_has_the_contract(reference_run, phantom_dir):
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.spec import read_spec

    spec = read_spec(reference_run["onnx"])
    assert spec.class_names == ("normal", "pneumonia", "pneumothorax")
    assert (spec.channels, spec.height, spec.width, spec.layout) == (1, 32, 32, "NCHW")
    assert spec.scaling == "unit" and spec.output_kind == "logits" and spec.dynamic_batch
    assert spec.sources["class_names"] == "metadata" and not spec.warnings
    clf = OnnxClassifier(reference_run["onnx"], device="cpu")
    x = np.random.default_rng(0).random((5, 1, 32, 32), dtype=np.float32)
    p = clf.predict_proba(x)
    assert p.shape == (5, 3) and np.allclose(p.sum(1), 1.0, atol=1e-5)


def test_checkpoint_matches_onnx_and_loads_weights_only(reference_run):
    from auditor.models.checkpoints import load_checkpoint
    from auditor.models.onnx import OnnxClassifier
    from auditor.reference_models.registry import CHECKPOINT_FORMAT

    raw = torch.load(reference_run["checkpoint"], weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and raw["arch"] == "small_cnn" and raw["in_channels"] == 1
    assert raw["spec"]["class_names"] == ["normal", "pneumonia", "pneumothorax"]
    net = load_checkpoint(reference_run["checkpoint"])
    x = np.random.default_rng(1).random((4, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        p_torch = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    assert np.allclose(OnnxClassifier(reference_run["onnx"], device="cpu").predict_proba(x), p_torch, atol=1e-4)


def test_onnx_metadata_and_model_card(reference_run):
    import onnx

    props = {p.key: p.value for p in onnx.load(reference_run["onnx"]).metadata_props}
    assert json.loads(props["xray_audit.recipe"])["name"] == "reference"
    assert len(props["xray_audit.data_manifest_sha256"]) == 64
    assert "accuracy" in json.loads(props["xray_audit.metrics"])
    card = json.loads(open(reference_run["card_json"], encoding="utf-8").read())
    assert card["synthetic"] is True and card["data"]["manifest_sha256"] == props["xray_audit.data_manifest_sha256"]
    assert card["metrics"]["accuracy_ci"] is not None and card["split"]["counts"]["test"]
    md = open(reference_run["card_md"], encoding="utf-8").read()
    assert "SYNTHETIC" in md and "95% CI" in md and "Known limitations" in md


def test_resume_continues_the_epoch_counter(phantom_dir, tmp_path):
    from auditor.training.recipes import train_reference

    out = tmp_path / "run"
    first = train_reference(tiny_config(phantom_dir, out, epochs=1, patience=10))
    assert [h["epoch"] for h in first["history"]] == [1]
    second = train_reference(tiny_config(phantom_dir, out, epochs=3, patience=10, resume=True))
    assert [h["epoch"] for h in second["history"]] == [1, 2, 3]
    assert second["history"][0] == first["history"][0]  # epoch 1 was not re-run
    state = torch.load(out / "state.pt", weights_only=True)
    assert state["epoch"] == 3


def test_resume_without_state_is_a_usage_error(phantom_dir, tmp_path):
    from auditor.training.recipes import train_reference

    with pytest.raises(UsageError, match="no training state"):
        train_reference(tiny_config(phantom_dir, tmp_path / "empty", resume=True))


def test_refuses_a_folder_holding_a_different_model(phantom_dir, tmp_path):
    from auditor.training.recipes import train_reference

    out = tmp_path / "run"
    train_reference(tiny_config(phantom_dir, out))
    with pytest.raises(UsageError, match="holds a different model.*--overwrite") as exc:
        train_reference(tiny_config(phantom_dir, out, seed=7))
    assert "\n" not in str(exc.value)
    result = train_reference(tiny_config(phantom_dir, out, seed=7, overwrite=True))
    assert json.loads((out / "run.json").read_text())["identity"]["seed"] == 7
    assert result["onnx"]


def test_augment_and_adversarial_recipes(reference_run, phantom_dir, tmp_path):
    from auditor.models.spec import read_spec
    from auditor.training.recipes import train_adversarial, train_augment

    aug = train_augment(tiny_config(phantom_dir, tmp_path / "aug"))
    assert read_spec(aug["onnx"]).class_names == ("normal", "pneumonia", "pneumothorax")
    adv = train_adversarial(
        tiny_config(phantom_dir, tmp_path / "adv", init=reference_run["checkpoint"], arch="resnet50", image_size=224)
    )
    # arch and size come from the --init checkpoint
    spec = read_spec(adv["onnx"])
    assert (spec.height, spec.width) == (32, 32)
    card = json.loads(open(adv["card_json"], encoding="utf-8").read())
    assert card["recipe"]["hyperparameters"]["attack"] == "fgsm-rs"
    assert card["pretrained"].startswith("initialised from")


def test_adversarial_needs_init_and_known_attack(reference_run, phantom_dir, tmp_path):
    from auditor.training.recipes import train_adversarial

    with pytest.raises(UsageError, match="--init"):
        train_adversarial(tiny_config(phantom_dir, tmp_path / "a"))
    with pytest.raises(UsageError, match="nosuchattack"):
        train_adversarial(
            tiny_config(phantom_dir, tmp_path / "b", init=reference_run["checkpoint"], attack="nosuchattack")
        )


def test_adversarial_with_an_auditor_attack(reference_run, phantom_dir, tmp_path):
    from auditor.training.recipes import train_adversarial

    res = train_adversarial(
        tiny_config(phantom_dir, tmp_path / "mi", init=reference_run["checkpoint"], attack="mifgsm", max_steps=1)
    )
    assert res["history"][0]["epoch"] == 1


def test_pretrained_imagenet_without_cache_is_a_usage_error(phantom_dir, tmp_path, monkeypatch):
    from auditor.training.recipes import train_reference

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UsageError, match="nothing is downloaded"):
        train_reference(tiny_config(phantom_dir, tmp_path / "r", arch="resnet18", pretrained="imagenet"))
