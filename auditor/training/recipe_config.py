"""The classifier recipes' configuration: :class:`TrainConfig`, its validation (``_resolve``), the
contract of a trained network (:func:`classifier_spec`) and where the training data come from
(:func:`data_sources`). The recipes themselves: :mod:`auditor.training.recipes`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from auditor.errors import ModelContractError, UsageError
from auditor.models.checkpoints import build_network, read_checkpoint
from auditor.models.inputs import scaling_mean_std
from auditor.reference_models.registry import (
    list_architectures,
)
from auditor.types import ModelSpec

RECIPES = ("reference", "augment", "adversarial")
#: settings only the adversarial recipe uses (left out of the other recipes' model cards)
ADVERSARIAL_KNOBS = ("attack", "adv_eps", "adv_fraction")
#: the recipes' one-line description in a model card (the first line of :mod:`auditor.training.recipes`' docstring)
RECIPES_DESCRIPTION = "Classifier recipes: the seeds' reference recipe and two defenses built on it."
SEEDS_REPORTED = "the seeds' report: test accuracy 0.92 on 3,600 images with ImageNet weights"


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a classifier recipe (the CLI fills this; tests build it directly)."""

    data: str
    out: str
    recipe: str = "reference"
    arch: str = "resnet50"
    image_size: int = 224
    epochs: int = 30  #: maximum epochs of phase 2 (early stopping usually ends sooner)
    head_epochs: int | None = None  #: phase-1 epochs; None = 2 with ImageNet weights, 0 from scratch
    batch_size: int = 32
    lr: float = 1e-4
    head_lr: float = 1e-3
    seed: int = 42
    device: str = "auto"
    pretrained: str | None = None  #: "imagenet" (only from the local torch hub cache) or None
    patience: int = 3
    min_epochs: int = 0  #: phase-2 epochs before early stopping / lr reduction may act (Keras ``start_from_epoch``)
    plateau_patience: int = 2
    plateau_factor: float = 0.1
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    progress: bool | None = None
    max_steps: int | None = None  #: cap on batches per epoch (quick runs and tests)
    init: str | None = None  #: checkpoint to start from (required by ``adversarial``)
    attack: str = "fgsm-rs"
    adv_eps: tuple[float, ...] = (2 / 255, 4 / 255, 8 / 255)
    adv_fraction: float = 0.5
    allow_outside_root: bool = False  #: a CSV manifest may list images outside its folder
    n_boot: int = 1000
    class_names: tuple[str, ...] | None = None
    export: bool = True
    synthetic: bool | None = None  #: None = detect from the data folder's README
    name: str | None = None
    augmentation: str | None = None  #: None = "seeds" (reference/adversarial), "attack-families" (augment)
    #: the data set ``data`` was drawn from when ``data`` is a derived manifest (a zoo fold): its README
    #: says where the images come from (NIH, SIIM, Kermany), which decides the model card's data caveats
    source_data: str | None = None
    #: seconds between progress lines on stderr when no progress bar is drawn (not a terminal); 0: none
    progress_interval: float = 30.0


def _is_synthetic(root: str) -> bool:
    readme = Path(root) / "README.md"
    try:
        return readme.is_file() and "SYNTHETIC" in readme.read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False


def classifier_spec(class_names, size: int, scaling: str) -> ModelSpec:
    """The contract of a network trained here: NCHW, 1 channel, logits."""
    mean, std = scaling_mean_std(scaling, 1)
    return ModelSpec(
        input_name="image",
        layout="NCHW",
        channels=1,
        height=size,
        width=size,
        scaling=scaling,
        mean=mean,
        std=std,
        output_name="logits",
        output_kind="logits",
        class_names=tuple(class_names),
        sources={k: "training" for k in ("scaling", "class_names")},
    )


def _resolve(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None, nn.Module | None]:
    """Validate the config; load the init checkpoint (its arch/size/classes win)."""
    if cfg.recipe not in RECIPES:
        raise UsageError(f"unknown recipe {cfg.recipe!r}; choose {', '.join(RECIPES)}")
    if cfg.arch not in list_architectures():
        raise UsageError(f"--arch {cfg.arch!r}: choose one of {', '.join(list_architectures())}")
    if cfg.image_size < 16:
        raise UsageError(f"--image-size {cfg.image_size}: use at least 16")
    if cfg.batch_size < 2:
        raise UsageError(f"--batch-size {cfg.batch_size}: use at least 2 (batch norm)")
    if cfg.pretrained not in (None, "none", "imagenet"):
        raise UsageError(f"--pretrained {cfg.pretrained!r}: only 'imagenet' (from the local cache) is supported")
    if cfg.recipe == "adversarial" and not cfg.init:
        raise UsageError("the adversarial recipe fine-tunes a trained model: give --init CHECKPOINT (model.pt)")
    if not 0.0 < cfg.adv_fraction <= 1.0:
        raise UsageError(f"--adv-fraction {cfg.adv_fraction}: use a value in (0, 1]")
    init_meta, init_model = None, None
    if cfg.init:
        if not Path(cfg.init).is_file():
            raise UsageError(f"--init {cfg.init}: checkpoint not found")
        try:
            doc = read_checkpoint(cfg.init)
            init_model = build_network(doc, cfg.init)
        except ModelContractError as exc:
            raise UsageError(str(exc)) from None
        init_meta = {**{k: v for k, v in doc.items() if k != "state_dict"}, "spec": doc["spec"].to_dict()}
        spec = init_meta["spec"]
        if int(init_meta.get("in_channels", 1)) != 1:
            raise UsageError(
                f"--init {cfg.init}: the recipes train 1-channel models, checkpoint has "
                f"{init_meta.get('in_channels')} channels"
            )
        cfg = replace(
            cfg,
            arch=init_meta["arch"],
            image_size=int(spec.get("height") or cfg.image_size),
            class_names=tuple(spec.get("class_names") or ()) or cfg.class_names,
            pretrained=None if cfg.pretrained == "none" else cfg.pretrained,
        )
    if cfg.pretrained == "none":
        cfg = replace(cfg, pretrained=None)
    return cfg, init_meta, init_model


def _data_readme(root: str) -> str:
    """The first 8 kB of the README.md of a data folder (or of a CSV manifest's folder); ``""`` if none."""
    p = Path(root)
    readme = (p if p.is_dir() else p.parent) / "README.md"
    try:
        return readme.read_text(encoding="utf-8", errors="replace")[:8000] if readme.is_file() else ""
    except OSError:
        return ""


def data_sources(cfg: TrainConfig) -> frozenset[str]:
    """Which known collections the training images come from: ``nih``, ``siim``, ``kermany`` (maybe none).

    Read from the data set's README (of ``source_data`` for a zoo fold) and from an NIH
    ``Data_Entry`` table given as ``data``; the model card states a collection's caveats only for
    data from it (an NIH label caveat on a Kermany model would be wrong).
    """
    text = _data_readme(cfg.source_data or cfg.data).casefold()
    found = set()
    # "ChestX-ray14" names the NIH collection; a bare "NIH" may only contrast with it (Kermany's README does)
    if "chestx-ray14" in text or "chestxray14" in text or "data_entry" in Path(cfg.data).name.casefold():
        found.add("nih")
    if "siim" in text:
        found.add("siim")
    if "kermany" in text:
        found.add("kermany")
    return frozenset(found)
