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

import copy
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.atomic import write_atomic
from auditor.attack_eta import format_duration
from auditor.errors import ModelContractError, UsageError
from auditor.models.device import pick_device
from auditor.models.inputs import scaling_mean_std
from auditor.models.torch import InputEncoder, build_network, read_checkpoint
from auditor.reference_models.registry import (
    build_model,
    find_local_imagenet_weights,
    list_architectures,
    load_imagenet_backbone,
    make_checkpoint,
)
from auditor.training.common import (
    Heartbeat,
    RunDir,
    TrainData,
    load_training_data,
    log,
    patient_split,
    progress_bar,
    show_bars,
)
from auditor.types import ModelSpec

RECIPES = ("reference", "augment", "adversarial")
#: settings only the adversarial recipe uses (left out of the other recipes' model cards)
ADVERSARIAL_KNOBS = ("attack", "adv_eps", "adv_fraction")
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


def _limitations(data: TrainData, cfg: TrainConfig, synthetic: bool, pretrained_path: str | None) -> list[str]:
    out = []
    sources = data_sources(cfg)
    if synthetic:
        out.append(
            "Trained and tested on SYNTHETIC procedural phantoms: the numbers say nothing about real "
            "radiographs; never use this model on patients."
        )
    else:
        out.append("Research model, not a medical device; not validated for clinical use.")
    if not pretrained_path and not cfg.init:
        out.append(
            "Trained from scratch (no ImageNet weights available offline); with a few hundred images per "
            f"class expect far lower accuracy than {SEEDS_REPORTED}."
        )
    names = [c.lower() for c in data.class_names]
    if "pneumothorax" in names and not synthetic:
        k = names.index("pneumothorax")
        no_pid = sum(1 for lab, p in zip(data.labels, data.patient_ids) if int(lab) == k and not p)
        if no_pid and "siim" in sources:
            out.append(
                "Shortcut risk: the pneumothorax images (SIIM-ACR) went through two lossy JPEG steps the other "
                "classes did not; the model may detect 'JPEG-processed' rather than pneumothorax. Check by "
                "re-compressing normal images as JPEG (quality ~75, twice) and watching the pneumothorax score."
            )
        if no_pid:
            out.append(
                f"{no_pid} pneumothorax images have no patient id: each was split as its own patient, so repeat "
                "films of one patient may sit in both training and test parts (optimistic test metrics)."
            )
        out.append("Chest drains and lines on treated pneumothorax films are a known non-disease cue.")
    if "pneumonia" in names and not synthetic and "nih" in sources:
        out.append(
            "NIH pneumonia labels are NLP-mined and mostly multi-label: 'pneumonia vs normal' is partly "
            "'sick vs normal'."
        )
    if "kermany" in sources and not synthetic:
        out.append(
            "Kermany et al. (2018) images: children aged 1-5 from one hospital (Guangzhou); the model says "
            "nothing about adult radiographs or other sites."
        )
    out.append(
        f"Test part: {int(round(len(data.labels) * 0.2))} images or so; read the confidence intervals, not the "
        "point estimates alone."
    )
    out.append("Clean accuracy only; robustness to USMM/STM and other attacks is measured by `xray-audit scan`.")
    if cfg.recipe == "adversarial":
        eps = ", ".join(f"{e * 255:.0f}/255" for e in cfg.adv_eps)
        out.append(
            f"Adversarially fine-tuned ({cfg.attack}, eps in {{{eps}}}); robustness to other attacks or larger "
            "budgets is not implied."
        )
    if cfg.recipe == "augment":
        out.append(
            "Augmented with the attack families' transforms; this raises invariance to those transforms, not "
            "certified robustness."
        )
    return out


def _predict(net: nn.Module, norm: nn.Module, images: np.ndarray, idx: np.ndarray, device, batch: int = 64):
    net.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(idx), batch):
            xb = torch.from_numpy(images[idx[s : s + batch]]).to(device)
            outs.append(net(norm(xb)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros((0, 1))


def _set_phase(net: nn.Module, phase: int) -> list[nn.Parameter]:
    """Freeze the backbone in phase 1; return the parameters to optimise."""
    head = net.fc
    for p in net.parameters():
        p.requires_grad_(phase == 2)
    for p in head.parameters():
        p.requires_grad_(True)
    return list(head.parameters()) if phase == 1 else list(net.parameters())


def _train_mode(net: nn.Module, phase: int) -> None:
    if phase == 1:  # frozen layers run in inference mode (BN statistics untouched), as Keras does
        net.eval()
        net.fc.train()
    else:
        net.train()


def _make_adv_fn(cfg: TrainConfig, init_model: nn.Module | None, norm: nn.Module, device) -> Callable:
    """``adv(net, x, y, gen) -> x_adv`` for the adversarial recipe."""
    from auditor.training.perturb import fgsm_rs

    eps_choices = torch.tensor(cfg.adv_eps, dtype=torch.float32)
    if cfg.attack == "fgsm-rs":

        def adv(net, x, y, gen):
            eps = eps_choices[torch.randint(0, len(eps_choices), (x.shape[0],), generator=gen)]
            was = net.training
            net.eval()
            out = fgsm_rs(nn.Sequential(norm, net), x, y, eps, gen)
            net.train(was)
            return out

        return adv
    from auditor.attacks.registry import make_attack

    surrogate = nn.Sequential(copy.deepcopy(norm), copy.deepcopy(init_model)).to(device).eval()
    for p in surrogate.parameters():
        p.requires_grad_(False)
    attacks = {}
    for e in cfg.adv_eps:
        try:
            attacks[e] = make_attack(cfg.attack, surrogate, epsilon=float(e))
        except UsageError:
            raise
        except Exception as exc:  # parameters the attack refuses: report in one line
            raise UsageError(f"--attack {cfg.attack}: cannot be built ({str(exc).splitlines()[0][:160]})") from None

    def adv_external(net, x, y, gen):
        k = int(torch.randint(0, len(cfg.adv_eps), (1,), generator=gen))
        return attacks[cfg.adv_eps[k]](x, y, generator=gen).detach().to(x.device)

    return adv_external


@dataclass
class _Setup:
    """Everything a classifier run fixes before its first epoch."""

    cfg: TrainConfig
    device: torch.device
    data: TrainData
    split: Any
    synthetic: bool
    spec: ModelSpec
    pretrained_path: str | None
    head_epochs: int
    augmentation: str
    augment: Callable | None
    init_sha: str | None
    identity: dict[str, Any]
    run: RunDir
    net: nn.Module
    norm: nn.Module
    class_w: torch.Tensor
    adv_fn: Callable | None


@dataclass
class _Progress:
    """The training loop's state across epochs (what ``state.pt`` holds for a resume)."""

    start_epoch: int = 0
    best_val: float = float("inf")
    best_state: dict[str, Any] | None = None
    best_epoch: int | None = None
    bad: int = 0
    stopped: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    opt_state: dict[str, Any] | None = None
    sched_state: dict[str, Any] | None = None
    saved_phase: int | None = None


def _pretrained_weights(cfg: TrainConfig) -> str | None:
    """Path of the cached ImageNet weights asked for by ``--pretrained imagenet`` (never downloaded)."""
    if cfg.pretrained != "imagenet":
        return None
    if cfg.arch == "small_cnn":
        raise UsageError("--pretrained imagenet: there are no ImageNet weights for small_cnn")
    path = find_local_imagenet_weights(cfg.arch)
    if path is None:
        raise UsageError(
            f"--pretrained imagenet: no cached torchvision weights for {cfg.arch} in "
            f"{torch.hub.get_dir()}/checkpoints (nothing is downloaded); drop --pretrained to train from scratch"
        )
    return path


def _init_sha(cfg: TrainConfig, data: TrainData) -> str | None:
    """SHA-256 of the ``--init`` checkpoint, after checking its classes are the data's."""
    if not cfg.init:
        return None
    from auditor.data.fingerprint import file_sha256

    if tuple(c.lower() for c in data.class_names) != tuple(c.lower() for c in (cfg.class_names or data.class_names)):
        raise UsageError(f"--init {cfg.init}: classes {list(cfg.class_names or ())} differ from the data's")
    return file_sha256(cfg.init)


def _prepare(cfg: TrainConfig) -> _Setup:
    """Resolve the config, load and split the data, open the run folder, build the network."""
    from auditor.training.augment import AUGMENTATIONS

    cfg, init_meta, init_model = _resolve(cfg)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)  # weight initialisation of the freshly built network
    data = load_training_data(
        cfg.data,
        cfg.image_size,
        cfg.class_names,
        quiet=cfg.quiet,
        progress=cfg.progress,
        allow_outside_root=cfg.allow_outside_root,
    )
    synthetic = _is_synthetic(cfg.data) if cfg.synthetic is None else cfg.synthetic
    split = patient_split(data.labels, data.groups(), seed=cfg.seed)
    pretrained_path = _pretrained_weights(cfg)
    scaling = "imagenet" if pretrained_path else ((init_meta or {}).get("spec", {}).get("scaling") or "unit")
    spec = classifier_spec(data.class_names, cfg.image_size, scaling)
    head_epochs = cfg.head_epochs if cfg.head_epochs is not None else (2 if pretrained_path and not cfg.init else 0)
    augmentation = cfg.augmentation or ("attack-families" if cfg.recipe == "augment" else "seeds")
    if augmentation not in AUGMENTATIONS:
        raise UsageError(f"augmentation {augmentation!r}: choose {', '.join(AUGMENTATIONS)}")
    init_sha = _init_sha(cfg, data)
    identity = {
        "recipe": cfg.recipe,
        "arch": cfg.arch,
        "image_size": cfg.image_size,
        "classes": list(data.class_names),
        "data_manifest_sha256": data.manifest_sha256,
        "seed": cfg.seed,
        "pretrained": cfg.pretrained,
        "init_sha256": init_sha,
        "in_channels": 1,
    }
    run = RunDir(cfg.out, identity, overwrite=cfg.overwrite, resume=cfg.resume)

    net = build_model(cfg.arch, len(data.class_names), 1)
    if pretrained_path:
        load_imagenet_backbone(net, pretrained_path)
    if init_model is not None:
        net.load_state_dict(init_model.state_dict())
    net.to(device)
    norm = InputEncoder(spec).to(device)  # the model-input contract of auditor.models, as in the audit
    counts = np.bincount(data.labels[split.train], minlength=len(data.class_names)).astype(np.float64)
    class_w = torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    adv_fn = _make_adv_fn(cfg, init_model, norm, device) if cfg.recipe == "adversarial" else None
    return _Setup(
        cfg,
        device,
        data,
        split,
        synthetic,
        spec,
        pretrained_path,
        head_epochs,
        augmentation,
        AUGMENTATIONS[augmentation],
        init_sha,
        identity,
        run,
        net,
        norm,
        class_w,
        adv_fn,
    )


def _resume(s: _Setup) -> _Progress:
    """The loop state of an interrupted run (``--resume``), or a fresh one."""
    state = s.run.load_state() if s.cfg.resume else None
    if state is None:
        return _Progress()
    s.net.load_state_dict(state["model"])
    log(f"resuming {s.run.path} after epoch {int(state['epoch'])}", s.cfg.quiet)
    return _Progress(
        start_epoch=int(state["epoch"]),
        best_val=float(state["best_val"]),
        best_state=state.get("best_model"),
        best_epoch=state.get("best_epoch"),
        bad=int(state["bad_epochs"]),
        stopped=bool(state["stopped"]),
        history=list(state["history"]),
        opt_state=state.get("optimizer"),
        sched_state=state.get("scheduler"),
        saved_phase=int(state.get("phase", 0)) if "phase" in state else None,
    )


def _phase_optimizer(s: _Setup, p: _Progress, phase: int, previous: int | None):
    """Adam and ReduceLROnPlateau for ``phase`` (restored from a resumed state of the same phase)."""
    params = _set_phase(s.net, phase)
    opt = torch.optim.Adam(params, lr=s.cfg.head_lr if phase == 1 else s.cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=s.cfg.plateau_factor, patience=s.cfg.plateau_patience
    )
    if p.opt_state is not None and (p.saved_phase is None or p.saved_phase == phase):
        opt.load_state_dict(p.opt_state)
        sched.load_state_dict(p.sched_state)
    p.opt_state = p.sched_state = None
    if phase == 2 and previous == 1:
        p.best_val, p.best_state, p.best_epoch, p.bad = float("inf"), None, None, 0
    return opt, sched


def _train_steps(
    s: _Setup, opt, phase: int, epoch: int, total_epochs: int, gen: torch.Generator
) -> tuple[float, int, int]:
    """One epoch of optimiser steps; returns ``(summed loss, correct, images seen)``."""
    cfg, data, device = s.cfg, s.data, s.device
    n_train = len(s.split.train)
    perm = s.split.train[torch.randperm(n_train, generator=gen).numpy()]
    steps = (n_train + cfg.batch_size - 1) // cfg.batch_size
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    bars = show_bars(cfg.quiet, cfg.progress)
    advance, close = progress_bar(steps, f"epoch {epoch + 1}/{total_epochs}", bars)
    beat = Heartbeat(
        f"epoch {epoch + 1}/{total_epochs}", steps, cfg.progress_interval, enabled=not bars and not cfg.quiet
    )
    loss_sum, correct, seen = 0.0, 0, 0
    _train_mode(s.net, phase)
    try:
        for step in range(steps):
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(idx) < 2:
                continue
            xb = torch.from_numpy(data.images[idx]).to(device)
            yb = torch.from_numpy(data.labels[idx]).to(device)
            if s.augment is not None:
                xb = s.augment(xb, gen)
            if s.adv_fn is not None:
                sel = (torch.rand(len(idx), generator=gen) < cfg.adv_fraction).to(device)
                if bool(sel.any()):
                    xb = xb.clone()
                    xb[sel] = s.adv_fn(s.net, xb[sel], yb[sel], gen)
                    _train_mode(s.net, phase)
            logits = s.net(s.norm(xb))
            loss = F.cross_entropy(logits, yb, weight=s.class_w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
            advance(1)
            beat(step + 1)
    finally:
        close()
    return loss_sum, correct, seen


def _validate(s: _Setup, p: _Progress, sched, phase: int, epoch: int) -> tuple[float, float]:
    """Validation loss and accuracy; steps the scheduler and the early-stopping counter."""
    val_logits = _predict(s.net, s.norm, s.data.images, s.split.val, s.device)
    val_y = torch.from_numpy(s.data.labels[s.split.val])
    val_loss = float(F.cross_entropy(val_logits, val_y, weight=s.class_w.cpu()))
    val_acc = float((val_logits.argmax(1) == val_y).float().mean())
    warm = phase == 2 and (epoch - s.head_epochs) < s.cfg.min_epochs
    if not warm:
        sched.step(val_loss)
    if phase == 2:
        if val_loss < p.best_val - 1e-6:
            p.best_val, p.best_epoch, p.bad = val_loss, epoch + 1, 0
            p.best_state = {k: v.detach().cpu().clone() for k, v in s.net.state_dict().items()}
        elif not warm:
            p.bad += 1
            p.stopped = p.bad >= s.cfg.patience
    return val_loss, val_acc


def epoch_estimate(first_seconds: float, epochs_left: int) -> str:
    """The line printed after a run's first epoch: how long the remaining epochs take at most."""
    total = first_seconds * epochs_left
    return (
        f"time estimate: {format_duration(first_seconds)} per epoch; at most {epochs_left} more epoch(s), "
        f"about {format_duration(total)} (early stopping may end sooner), then the test split and the export"
    )


def _train_epochs(s: _Setup, on_epoch: Callable[[dict, int], None] | None = None) -> _Progress:
    """The two-phase training loop with early stopping; a per-epoch state makes it resumable.

    After the first epoch this invocation runs, the time the remaining epochs take at most is printed;
    ``on_epoch(record, total_epochs)`` is called after every epoch (the zoo's overall estimate).
    """
    cfg = s.cfg
    p = _resume(s)
    total_epochs = s.head_epochs + cfg.epochs
    opt = sched = None
    cur_phase = None
    for epoch in range(p.start_epoch, total_epochs):
        if p.stopped:
            break
        phase = 1 if epoch < s.head_epochs else 2
        if phase != cur_phase:
            opt, sched = _phase_optimizer(s, p, phase, cur_phase)
            cur_phase = phase
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        loss_sum, correct, seen = _train_steps(s, opt, phase, epoch, total_epochs, gen)
        val_loss, val_acc = _validate(s, p, sched, phase, epoch)
        rec = {
            "epoch": epoch + 1,
            "phase": phase,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": time.perf_counter() - t0,
        }
        p.history.append(rec)
        log(
            f"epoch {epoch + 1}/{total_epochs} (phase {phase}): train loss {rec['train_loss']:.4f} "
            f"acc {rec['train_accuracy']:.3f} | val loss {val_loss:.4f} acc {val_acc:.3f} | lr {rec['lr']:.1e} | "
            f"{rec['seconds']:.1f}s" + (" | early stop" if p.stopped else ""),
            cfg.quiet,
        )
        if epoch == p.start_epoch and not p.stopped and epoch + 1 < total_epochs:
            log(epoch_estimate(rec["seconds"], total_epochs - epoch - 1), cfg.quiet)
        if on_epoch is not None:
            on_epoch(rec, total_epochs)
        s.run.save_state(
            {
                "epoch": epoch + 1,
                "phase": phase,
                "model": {k: v.detach().cpu() for k, v in s.net.state_dict().items()},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "best_val": p.best_val,
                "best_model": p.best_state,
                "best_epoch": p.best_epoch,
                "bad_epochs": p.bad,
                "stopped": p.stopped,
                "history": p.history,
                "identity": json.dumps(s.identity, sort_keys=True),
            }
        )
    return p


def _hyperparameters(s: _Setup) -> dict[str, Any]:
    """The recipe's settings as recorded in the ONNX metadata and the model card."""
    cfg = s.cfg
    hyper = {
        k: v
        for k, v in asdict(cfg).items()
        if k
        not in (
            "data",
            "out",
            "resume",
            "overwrite",
            "quiet",
            "progress",
            "export",
            "synthetic",
            "name",
            "source_data",
            "progress_interval",
        )
        and (cfg.recipe == "adversarial" or k not in ADVERSARIAL_KNOBS)
    }
    hyper.update(
        head_epochs=s.head_epochs,
        augmentation=s.augmentation,
        class_weights=[float(v) for v in s.class_w.cpu()],
        optimizer="Adam",
        loss="cross-entropy (class-weighted)",
        early_stopping=f"val loss, patience {cfg.patience}, best restored",
        lr_schedule=f"ReduceLROnPlateau(factor {cfg.plateau_factor}, patience {cfg.plateau_patience})",
    )
    if cfg.recipe == "adversarial":
        hyper["adv_eps"] = [float(e) for e in cfg.adv_eps]
    return hyper


def _model_card(
    s: _Setup, p: _Progress, metrics: dict[str, Any], recipe: dict[str, Any], files: dict[str, Any], seconds: float
) -> dict[str, Any]:
    """The model card of a finished run (:mod:`auditor.reference_models.cards`)."""
    cfg, data = s.cfg, s.data
    epoch_secs = [h["seconds"] for h in p.history]
    return {
        "name": cfg.name or f"{cfg.recipe}-{cfg.arch}-{cfg.image_size}px",
        "kind": "classifier",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "synthetic": s.synthetic,
        "summary": {
            "reference": "Reference chest X-ray classifier (the seeds' recipe, patient-wise split).",
            "augment": "Defense: reference recipe plus the attack families' augmentations (docs/algorithms.md §7.7).",
            "adversarial": "Defense: adversarial fine-tuning of a reference model (docs/algorithms.md §7.7).",
        }[cfg.recipe],
        "files": files,
        "spec": s.spec.to_dict(),
        "pretrained": recipe["pretrained"]
        or (f"initialised from {Path(cfg.init).name} (sha256 {s.init_sha[:12]}...)" if cfg.init else None),
        "data": {
            "root": data.root,
            "manifest_sha256": data.manifest_sha256,
            "n_images": int(len(data.labels)),
            "per_class": data.per_class(),
            "skipped": [x.to_dict() for x in data.skipped],
            "caveats": data.caveats,
        },
        "split": s.split.describe(data),
        "recipe": {
            "name": cfg.recipe,
            "description": __doc__.strip().splitlines()[0],
            "hyperparameters": recipe["hyperparameters"],
        },
        "training": {
            "epochs_run": len(p.history),
            "best_epoch": p.best_epoch,
            "stopped_early": p.stopped,
            "seconds": seconds,
            "seconds_per_epoch": float(np.mean(epoch_secs)) if epoch_secs else None,
            "device": str(s.device),
        },
        "metrics": metrics,
        "limitations": _limitations(data, cfg, s.synthetic, s.pretrained_path),
    }


def _publish(s: _Setup, p: _Progress, t_start: float) -> dict[str, Any]:
    """Test metrics of the best weights, then checkpoint, ONNX export, model card and history."""
    from auditor.data.fingerprint import file_sha256
    from auditor.metrics import compute_metrics
    from auditor.reference_models.cards import write_model_card
    from auditor.training.common import atomic_torch_save

    cfg, data, net = s.cfg, s.data, s.net
    if p.best_state is not None:
        net.load_state_dict(p.best_state)
    net.eval()
    test_logits = _predict(net, s.norm, data.images, s.split.test, s.device)
    groups = [data.patient_ids[i] for i in s.split.test]
    metrics = compute_metrics(
        data.labels[s.split.test],
        test_logits.argmax(1).numpy(),
        data.class_names,
        groups=groups,
        seed=0,
        n_boot=cfg.n_boot,
    )
    recipe = {
        "name": cfg.recipe,
        "arch": cfg.arch,
        "hyperparameters": _hyperparameters(s),
        "pretrained": "imagenet (local torchvision cache)" if s.pretrained_path else None,
        "init_checkpoint_sha256": s.init_sha,
    }
    out = s.run.path
    ckpt_path = out / "model.pt"
    atomic_torch_save(
        make_checkpoint(
            net,
            cfg.arch,
            len(data.class_names),
            1,
            s.spec.to_dict(),
            extra={
                "recipe": cfg.recipe,
                "class_names": list(data.class_names),
                "data_manifest_sha256": data.manifest_sha256,
                "accuracy": metrics.get("accuracy"),
                "synthetic": s.synthetic,
            },
        ),
        ckpt_path,
    )
    compact_metrics = {
        k: metrics.get(k) for k in ("n", "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "weighted_f1")
    }
    compact_metrics["per_class_recall"] = {k: v["recall"] for k, v in metrics["per_class"].items()}
    export_info = None
    onnx_path = out / "model.onnx"
    if cfg.export:
        from auditor.training.export import export_classifier

        samples = data.images[s.split.test[:8]]
        export_info = export_classifier(
            net,
            s.spec,
            onnx_path,
            samples,
            recipe=recipe,
            manifest_sha256=data.manifest_sha256,
            metrics=compact_metrics,
            extra_metadata={"xray_audit.synthetic": "true" if s.synthetic else "false"},
        )
    seconds = time.perf_counter() - t_start
    files = {"checkpoint": {"path": ckpt_path.name, "sha256": file_sha256(ckpt_path)}}
    if export_info:
        files["onnx"] = {"path": onnx_path.name, "sha256": file_sha256(onnx_path)}
    md, js = write_model_card(out / "model_card", _model_card(s, p, metrics, recipe, files, seconds))
    write_atomic(out / "history.json", json.dumps(p.history, indent=2) + "\n")
    return {
        "out": str(out),
        "onnx": str(onnx_path) if export_info else None,
        "checkpoint": str(ckpt_path),
        "card_md": str(md),
        "card_json": str(js),
        "metrics": metrics,
        "history": p.history,
        "epochs_run": len(p.history),
        "best_epoch": p.best_epoch,
        "seconds": seconds,
        "split": s.split,
        "export": export_info,
        "class_names": list(data.class_names),
    }


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
