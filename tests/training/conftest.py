"""Fixtures of the training tests: tiny SYNTHETIC phantom sets and one tiny trained reference model."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.training.phantoms import write_phantom_dataset


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """3 x 8 phantoms at 32 px (seed 0)."""
    return write_phantom_dataset(tmp_path_factory.mktemp("phantoms") / "data", 8, size=32, seed=0)


def tiny_config(data: Path, out: Path, **kw):
    """A reference-recipe config that runs in about a second."""
    from auditor.training.recipe_config import TrainConfig

    args = dict(
        data=str(data),
        out=str(out),
        arch="small_cnn",
        image_size=32,
        epochs=1,
        batch_size=8,
        lr=1e-3,
        max_steps=2,
        n_boot=20,
        quiet=True,
        progress=False,
        device="cpu",
    )
    args.update(kw)
    return TrainConfig(**args)


@pytest.fixture(scope="session")
def reference_run(phantom_dir, tmp_path_factory) -> dict:
    """One tiny reference model trained on ``phantom_dir`` (shared by several tests)."""
    from auditor.training.recipes import train_reference

    return train_reference(tiny_config(phantom_dir, tmp_path_factory.mktemp("runs") / "reference", epochs=2))
