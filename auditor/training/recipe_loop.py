"""The classifier recipes' training loop: everything a run fixes before its first epoch (``_prepare``),
the resumable two-phase loop with early stopping (``_train_epochs``) and its epoch estimate
(:func:`epoch_estimate`). See :mod:`auditor.training.recipes` for the recipe itself."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.attack_eta import format_duration
from auditor.errors import UsageError
from auditor.models.device import pick_device
from auditor.models.torch import InputEncoder
from auditor.reference_models.registry import (
    build_model,
    find_local_imagenet_weights,
    load_imagenet_backbone,
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
from auditor.training.recipe_config import TrainConfig, _is_synthetic, _resolve, classifier_spec
from auditor.types import ModelSpec


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
    head = net.get_submodule("fc")
    for p in net.parameters():
        p.requires_grad_(phase == 2)
    for p in head.parameters():
        p.requires_grad_(True)
    return list(head.parameters()) if phase == 1 else list(net.parameters())


def _train_mode(net: nn.Module, phase: int) -> None:
    if phase == 1:  # frozen layers run in inference mode (BN statistics untouched), as Keras does
        net.eval()
        net.get_submodule("fc").train()
    else:
        net.train()


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
    from auditor.training.perturb import _make_adv_fn

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


def _phase_optimizer(
    s: _Setup, p: _Progress, phase: int, previous: int | None
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """Adam and ReduceLROnPlateau for ``phase`` (restored from a resumed state of the same phase)."""
    params = _set_phase(s.net, phase)
    opt = torch.optim.Adam(params, lr=s.cfg.head_lr if phase == 1 else s.cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=s.cfg.plateau_factor, patience=s.cfg.plateau_patience
    )
    if p.opt_state is not None and p.sched_state is not None and (p.saved_phase is None or p.saved_phase == phase):
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
        if opt is None or sched is None or phase != cur_phase:  # the first epoch run, or a new phase
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
