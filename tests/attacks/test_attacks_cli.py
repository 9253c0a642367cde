"""``xray-audit attack`` through click's CliRunner on a tiny data set and a tiny small_cnn checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from auditor.cli import cli
from auditor.cli.attack_cmd import attack_command
from auditor.reference_models.registry import CHECKPOINT_FORMAT, build_model
from auditor.types import ModelSpec
from onnx_factory import make_classifier

CLASSES = ("normal", "pneumonia", "pneumothorax")


@pytest.fixture()
def tiny(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for c in CLASSES:
        (data / c).mkdir(parents=True)
        for i in range(2):
            img = (rng.uniform(0, 1, (40, 40)) * 255).astype(np.uint8)
            Image.fromarray(img).save(data / c / f"{c}_{i}.png")
    torch.manual_seed(0)
    net = build_model("small_cnn", 3, 1)
    spec = ModelSpec(channels=1, height=32, width=32, scaling="unit", class_names=tuple(c.upper() for c in CLASSES))
    ckpt = tmp_path / "surrogate.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "arch": "small_cnn",
            "num_classes": 3,
            "in_channels": 1,
            "state_dict": net.state_dict(),
            "spec": spec.to_dict(),
        },
        ckpt,
    )
    return data, ckpt, tmp_path / "sets"


def _run(args):
    return CliRunner().invoke(attack_command, args, catch_exceptions=False)


def test_attack_command_writes_sets_and_hits_cache(tiny):
    data, ckpt, out = tiny
    args = [
        "--surrogate",
        str(ckpt),
        "--data",
        str(data),
        "--attacks",
        "mifgsm,usmm,stm",
        "--eps",
        "8",
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--quiet",
        "--no-progress",
    ]
    res = _run(args)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "attack_summary.json").read_text())
    assert [s["name"] for s in doc["sets"]] == ["mifgsm@8", "usmm@8", "stm[randconv]@8"]  # STM names its backend
    assert doc["image_size"] == [32, 32] and doc["surrogate"]["arch"] == "small_cnn"
    for s in doc["sets"]:
        # 40 -> 32 px resize puts the clean images off the 8-bit grid: still within eps of the float values
        assert not s["cache_hit"] and s["stats"]["linf_max"] <= 8 / 255 + 1e-6
        pngs = sorted(p.relative_to(s["dir"]).as_posix() for p in __import__("pathlib").Path(s["dir"]).rglob("*.png"))
        assert len(pngs) == 6 and pngs[0] == f"{s['attack']}_eps8/normal/normal_0.png"
    assert doc["sets"][2]["label"] == "STM (style backend: randconv)"
    assert doc["sets"][2]["style_diversity"]["copies"] > 0 and doc["sets"][0]["style_diversity"] is None
    assert doc["sets"][1]["label"] == "USMM (masks: other-class pool)"
    res2 = _run(args)
    assert res2.exit_code == 0
    assert all(s["cache_hit"] for s in json.loads((out / "attack_summary.json").read_text())["sets"])


def test_attack_command_skips_or_fails_without_ghiasi_weights(tiny):
    data, ckpt, out = tiny
    base = [
        "--surrogate",
        str(ckpt),
        "--data",
        str(data),
        "--attacks",
        "stm",
        "--eps",
        "4",
        "--out",
        str(out),
        "--style-backend",
        "ghiasi",
        "--quiet",
        "--max-images",
        "3",
    ]
    res = _run(base)
    assert res.exit_code == 0
    doc = json.loads((out / "attack_summary.json").read_text())
    assert doc["sets"] == [] and doc["skipped"][0]["kind"] == "attack"
    assert "checkpoint_transformer.pth" in doc["skipped"][0]["reason"]
    (out / "attack_summary.json").unlink()
    res = _run([*base, "--strict"])  # the one --strict policy: the summary is written, then exit 1
    assert res.exit_code == 1 and "skipped (attack)" in res.output
    assert json.loads((out / "attack_summary.json").read_text())["skipped"][0]["kind"] == "attack"


def test_attack_command_rejects_unknown_attack(tiny):
    data, ckpt, out = tiny
    from auditor.errors import UsageError

    with pytest.raises(UsageError, match="choose from mifgsm, usmm, stm"):
        _run(["--surrogate", str(ckpt), "--data", str(data), "--attacks", "pgd", "--out", str(out)])


def test_a_scan_reuses_the_attack_commands_sets_even_with_an_unreadable_image(tiny):
    """`xray-audit attack` loads the data as the scan does (the manifest covers the readable images only), so a
    later `scan --cache-dir` finds every set it made, also when one file of the folder cannot be read."""
    data, ckpt, out = tiny
    (data / "normal" / "broken.png").write_bytes(b"not a png")
    res = _run(
        [
            "--surrogate",
            str(ckpt),
            "--data",
            str(data),
            "--attacks",
            "mifgsm,usmm",
            "--eps",
            "8",
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--precision",
            "fp32",
            "--quiet",
            "--no-progress",
        ]
    )
    assert res.exit_code == 0, res.output
    made = json.loads((out / "attack_summary.json").read_text())
    assert [s["kind"] for s in made["skipped"]] == ["image"] and len(made["sets"]) == 2
    target = make_classifier(out.parent / "t.onnx", channels=1, class_names=tuple(c.upper() for c in CLASSES))
    scan = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--surrogate",
            str(ckpt),
            "--attacks",
            "mifgsm,usmm",
            "--eps",
            "8",
            "--cache-dir",
            str(out),
            "--precision",
            "fp32",
            "--attack-batch-size",
            "4",
            "--n-boot",
            "0",
            "--no-detector",
            "--format",
            "json",
            "--out",
            str(out.parent / "o"),
            "-q",
        ],
    )
    assert scan.exit_code == 0, scan.output
    doc = json.loads((out.parent / "o" / "results.json").read_text())
    assert doc["data"]["manifest_sha256"] == made["manifest_sha256"]
    assert [(s["name"], s["key"], s["cache_hit"]) for s in doc["extras"]["adversarial_sets"]] == [
        (s["name"], s["key"], True) for s in made["sets"]
    ]
