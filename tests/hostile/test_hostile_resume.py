"""STM's style-diversity figure after a kill -9 / Ctrl-C resume or a repaired cache batch: it covers every
batch of the set, not only the batches this run recomputed (the counts live in each batch's done-marker)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auditor.attacks.set_records import SetData, SetRun
from auditor.attacks.sets import build_adversarial_set
from auditor.models.surrogate import Surrogate
from tests.attacks.attack_nets import CountingNet

H = W = 32
PARAMS = {"epsilon": 4 / 255, "steps": 1, "num_style": 2, "style_backend": "randconv"}


def _surrogate() -> Surrogate:
    return Surrogate(CountingNet(), ("a", "b", "c"), {"kind": "checkpoint", "sha256": ["0" * 64]}, "transfer")


def _data(n: int = 5) -> SetData:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, 1, H, W)).astype(np.float32)
    return SetData(x, (np.arange(n) % 3).astype(np.int64), [f"c/img{i}.png" for i in range(n)], "m")


def _build(root, progress=None):
    return build_adversarial_set(
        "stm", dict(PARAMS), _surrogate(), _data(), SetRun(root, 1, batch_size=2), progress=progress
    )


def test_style_diversity_survives_an_interrupted_run(tmp_path):
    full = _build(tmp_path / "a").params["style_diversity"]

    def stop(n):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _build(tmp_path / "b", progress=stop)
    resumed = _build(tmp_path / "b")
    assert resumed.batches_loaded == 1 and resumed.batches_computed == 2
    assert resumed.params["style_diversity"] == full
    index = json.loads(next((tmp_path / "b").rglob("index.json")).read_text())
    assert index["params"]["style_diversity"] == full


def test_style_diversity_survives_a_repaired_batch(tmp_path):
    full = _build(tmp_path / "a")
    png = sorted(full.dir.rglob("*.png"))[0]
    png.write_bytes(png.read_bytes()[:-8] + b"\x00" * 8)  # poison one PNG: its batch is recomputed
    (full.dir / "index.json").unlink()
    repaired = _build(tmp_path / "a")
    assert repaired.batches_computed == 1 and repaired.batches_loaded == 2
    assert repaired.params["style_diversity"] == full.params["style_diversity"]
