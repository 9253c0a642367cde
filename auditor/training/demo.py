"""The built-in demo: SYNTHETIC phantoms -> small reference model -> ONNX (+ checkpoint) -> scan.

Everything the demo writes is labelled synthetic. :func:`prepare_demo` does
the data and training part (the CLI then calls the scan); ``quick=True``
shrinks everything to seconds for tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.training.common import log
from auditor.training.phantoms import write_phantom_dataset

if TYPE_CHECKING:
    from auditor.training.recipe_config import TrainConfig


@dataclass(frozen=True)
class DemoSize:
    """How much the demo writes and trains: phantoms per class, their size, epochs, batches per epoch, resamples."""

    n_train: int
    n_scan: int
    size: int
    epochs: int
    surrogate_epochs: int
    max_steps: int | None
    n_boot: int


#: full demo: 3 x 120 training phantoms and 3 x 20 held-out phantoms at 64 px (about a minute on 2 CPU cores)
FULL = DemoSize(n_train=120, n_scan=20, size=64, epochs=40, surrogate_epochs=30, max_steps=None, n_boot=1000)
QUICK = DemoSize(n_train=10, n_scan=4, size=32, epochs=2, surrogate_epochs=1, max_steps=2, n_boot=50)


def prepare_demo(
    out_dir: str | Path,
    seed: int = 0,
    quick: bool = False,
    quiet: bool = False,
    progress: bool | None = None,
    surrogate: bool = True,
) -> dict[str, Any]:
    """Write phantoms, train the demo's target model (and a separate surrogate), export them.

    Layout under ``out_dir``::

        data/train/        SYNTHETIC training phantoms (+ MANIFEST.csv, README.md)
        data/scan/         SYNTHETIC held-out phantoms the scan audits (other seed)
        models/target/     model.onnx, model.pt, model_card.md/.json
        models/surrogate/  a second small CNN (other seed) used to craft transfer attacks

    Returns the paths (``data_dir``, ``scan_data_dir``, ``model``, ``checkpoint``,
    ``card``, ``surrogate``, ``surrogate_card``), the target's test ``metrics``
    and ``seconds``.
    """
    from auditor.training.recipe_config import TrainConfig
    from auditor.training.recipes import train_reference

    t0 = time.perf_counter()
    p = QUICK if quick else FULL
    out = Path(out_dir)
    train_dir = write_phantom_dataset(out / "data" / "train", p.n_train, size=p.size, seed=seed)
    scan_dir = write_phantom_dataset(out / "data" / "scan", p.n_scan, size=p.size, seed=seed + 1000)
    log(
        f"demo: wrote SYNTHETIC phantoms ({3 * p.n_train} training, {3 * p.n_scan} held-out) at {p.size} px",
        quiet,
    )

    def config(role: str, epochs: int, model_seed: int) -> TrainConfig:
        """The demo's small-CNN recipe for the ``role`` model (target or surrogate)."""
        return TrainConfig(
            data=str(train_dir),
            out=str(out / "models" / role),
            arch="small_cnn",
            image_size=p.size,
            epochs=epochs,
            batch_size=32,
            lr=1e-3,
            seed=model_seed,
            patience=6,
            plateau_patience=4,
            min_epochs=15,
            max_steps=p.max_steps,
            n_boot=p.n_boot,
            overwrite=True,
            quiet=quiet,
            progress=progress,
            synthetic=True,
            device="cpu",
            name=f"demo-{role}-small_cnn (SYNTHETIC)",
        )

    log("demo: training the target model (small CNN, SYNTHETIC data)", quiet)
    target = train_reference(config("target", p.epochs, seed + 42))
    result: dict[str, Any] = {
        "data_dir": str(train_dir),
        "scan_data_dir": str(scan_dir),
        "model": target["onnx"],
        "checkpoint": target["checkpoint"],
        "card": target["card_md"],
        "metrics": target["metrics"],
        "surrogate": None,
        "surrogate_card": None,
    }
    if surrogate:
        log("demo: training a separate surrogate (small CNN, other seed) for transfer attacks", quiet)
        sur = train_reference(config("surrogate", p.surrogate_epochs, seed + 7))
        result.update(surrogate=sur["checkpoint"], surrogate_card=sur["card_md"], surrogate_metrics=sur["metrics"])
    result["seconds"] = time.perf_counter() - t0
    return result
