"""Fixtures of the hostile-input suite: a tiny model, a tiny data set, a finished scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.hostile.helpers import invoke, scan_args, tiny_data, tiny_model


@pytest.fixture(scope="session")
def hostile_base(tmp_path_factory) -> dict[str, Path]:
    """A model, a data folder and the results.json of a clean scan with a defense (built once)."""
    root = tmp_path_factory.mktemp("hostile")
    model = tiny_model(root / "model.onnx")
    data = tiny_data(root / "data")
    out = root / "base"
    r = invoke(*scan_args(model, data, out, "--defenses", "jpeg:75"))
    assert r.exit_code == 0, r.stderr
    return {"root": root, "model": model, "data": data, "results": out / "results.json"}


@pytest.fixture()
def model(hostile_base) -> Path:
    return hostile_base["model"]


@pytest.fixture()
def data(hostile_base, tmp_path) -> Path:
    """A private copy of the data folder (tests may add hostile files to it)."""
    return Path(shutil.copytree(hostile_base["data"], tmp_path / "data"))
