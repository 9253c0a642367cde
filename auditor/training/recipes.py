"""Classifier recipes: the seeds' reference recipe and two defenses built on it.

The reference recipe (docs/algorithms.md §12, from the STM member's final
report) as reproduced here:

* patient-wise 60/20/20 split, stratified, seed 42 (:func:`training.common.patient_split`);
* ResNet50 backbone -> GAP -> Dense(128, ReLU) -> Dropout(0.5) -> Dense(K)
  (``reference_models.registry``), 1 input channel;
* class balancing with inverse-frequency class weights in the cross-entropy;
* the seeds' augmentation: rotation +-5 degrees, shifts/zoom +-5 %, brightness;
* phase 1: head only on the frozen backbone (Adam, ``head_lr``); phase 2: all
  layers unfrozen, Adam lr 1e-4; early stopping on validation loss (patience 3,
  best weights restored); ReduceLROnPlateau (factor 0.1, patience 2);
* test-split metrics with 95 % bootstrap intervals (:func:`auditor.metrics.compute_metrics`).

Defenses (docs/algorithms.md §7.7):

* ``augment`` -- the same recipe with the attack families' transforms added
  (:func:`training.augment.attack_family_augment`);
* ``adversarial`` -- fine-tune a reference checkpoint (``init``) on batches in
  which a fraction (default 50 %) of the images is replaced by adversarial
  versions: FGSM with random start at eps drawn from {2, 4, 8}/255 against the
  model being trained (Wong et al., ICLR 2020), or, with ``attack`` set, an
  attack of :mod:`auditor.attacks` run on the frozen initial model.

A from-scratch run (no cached ImageNet weights; nothing is downloaded) skips
phase 1 by default: training a head on a random frozen backbone teaches
nothing. The model card says which weights were used.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from auditor.training.recipe_config import TrainConfig
from auditor.training.recipe_loop import _prepare, _train_epochs
from auditor.training.recipe_publish import _publish


def train_classifier(cfg: TrainConfig, on_epoch: Callable[[dict, int], None] | None = None) -> dict[str, Any]:
    """Run a classifier recipe end to end: data, split, training, test metrics, checkpoint, ONNX, model card.

    Returns ``{"out", "onnx", "checkpoint", "card_md", "card_json", "metrics",
    "history", "epochs_run", "best_epoch", "seconds", "split", "export"}``.
    """
    t_start = time.perf_counter()
    setup = _prepare(cfg)
    progress = _train_epochs(setup, on_epoch)
    return _publish(setup, progress, t_start)


def train_reference(cfg: TrainConfig) -> dict[str, Any]:
    """The seeds' reference recipe (see the module docstring)."""
    return train_classifier(replace(cfg, recipe="reference"))


def train_augment(cfg: TrainConfig) -> dict[str, Any]:
    """Defense 6.1: the reference recipe with the attack families' augmentations."""
    return train_classifier(replace(cfg, recipe="augment"))


def train_adversarial(cfg: TrainConfig) -> dict[str, Any]:
    """Defense 6.2: adversarial fine-tuning of ``cfg.init`` (50/50 clean/adversarial batches)."""
    return train_classifier(replace(cfg, recipe="adversarial"))
