"""HGD: High-level representation Guided Denoiser (Liao et al., "Defense against Adversarial Attacks
Using High-Level Representation Guided Denoiser", CVPR 2018), CPU-scale (docs/algorithms.md §7.4).

* Network: a U-Net ("DUNET") that predicts a correction added to the input,
  ``output = clip(x + f(x), 0, 1)``. Block = 3x3 conv (no bias) + BN + ReLU.
  Encoder widths [32, 64, 128, 128], blocks [1, 2, 2, 2] (first block of stages
  2-4 has stride 2); decoder widths [32, 64, 128], blocks [1, 2, 2], each stage
  bilinearly upsampling to the skip's size and concatenating it; a final 1x1
  conv (no bias) to 1 channel. The final conv starts at zero, so an untrained
  denoiser is the identity (a deviation from HGD that keeps short CPU runs safe).
* Loss (FGD): L1 between the frozen surrogate's last convolutional feature map
  (:func:`reference_models.registry.last_conv_features`) of the denoised
  adversarial image and of the clean image; only the denoiser is optimised.
* Training pairs: every training image x {noop, uniform noise, FGSM, MI-FGSM}
  at eps in {4, 8, 16}/255 on the surrogate, generated once.
* Adam, lr 1e-3, lr x0.1 after 60 % and x0.01 after 90 % of the epochs; the
  epoch with the lowest validation loss is kept.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.training.common import RunDir, log, progress_bar, show_bars
from auditor.training.imagepairs import (
    DefenseConfig,
    adversarial_bank,
    cap,
    defense_eval,
    finish_image_model,
    prepare,
    surrogate_features,
)

IMAGE_MODEL_FORMAT = "xray-audit-image-model/1"


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class HGDDenoiser(nn.Module):
    """The HGD U-Net with a residual output (see the module docstring)."""

    def __init__(
        self,
        in_channels: int = 1,
        enc_widths=(32, 64, 128, 128),
        enc_blocks=(1, 2, 2, 2),
        dec_widths=(32, 64, 128),
        dec_blocks=(1, 2, 2),
    ) -> None:
        super().__init__()
        if len(dec_widths) != len(enc_widths) - 1 or len(dec_blocks) != len(dec_widths):
            raise ValueError("the decoder needs one stage fewer than the encoder")
        self.config = {
            "in_channels": in_channels,
            "enc_widths": list(enc_widths),
            "enc_blocks": list(enc_blocks),
            "dec_widths": list(dec_widths),
            "dec_blocks": list(dec_blocks),
        }
        self.enc = nn.ModuleList()
        c = in_channels
        for i, (w, n) in enumerate(zip(enc_widths, enc_blocks)):
            layers = [_block(c, w, stride=1 if i == 0 else 2)] + [_block(w, w) for _ in range(n - 1)]
            self.enc.append(nn.Sequential(*layers))
            c = w
        self.dec = nn.ModuleList([nn.Module() for _ in dec_widths])
        deeper = enc_widths[-1]
        stages: list[nn.Module] = []  # built deepest first (each takes the width of the one below), kept shallow first
        for j in reversed(range(len(dec_widths))):
            w, n = dec_widths[j], dec_blocks[j]
            layers = [_block(deeper + enc_widths[j], w)] + [_block(w, w) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            deeper = w
        self.dec = nn.ModuleList(stages[::-1])
        self.final = nn.Conv2d(dec_widths[0], in_channels, 1, bias=False)
        nn.init.zeros_(self.final.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        feats = []
        h = x
        for stage in self.enc:
            h = stage(h)
            feats.append(h)
        h = feats[-1]
        for j in reversed(range(len(self.dec))):
            h = F.interpolate(h, size=feats[j].shape[-2:], mode="bilinear", align_corners=False)
            h = self.dec[j](torch.cat([h, feats[j]], dim=1))
        return torch.clamp(x + self.final(h), 0.0, 1.0)


def _fgd_loss(sur, den: nn.Module, x_adv: torch.Tensor, x_clean: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        target = surrogate_features(sur, x_clean)
    return (surrogate_features(sur, den(x_adv)) - target).abs().mean()


@dataclass
class _Pairs:
    """Training and validation pairs: attacked bank rows, their source index, the clean images."""

    bank_tr: np.ndarray
    src_tr: np.ndarray
    clean_tr: np.ndarray
    bank_va: np.ndarray
    src_va: np.ndarray
    clean_va: np.ndarray
    seconds: float


def _pairs(cfg: DefenseConfig, sur, data, split, device, gen: torch.Generator, bars: bool) -> _Pairs:
    """Attack banks of (a cap of) the training and validation images, made once."""
    tr_idx = cap(split.train, cfg.max_images, cfg.seed)
    va_idx = cap(split.val, None if cfg.max_images is None else max(4, cfg.max_images // 3), cfg.seed)
    t_bank = time.perf_counter()
    nb = (len(tr_idx) + 15) // 16 + (len(va_idx) + 15) // 16
    advance, close = progress_bar(nb, "attack bank", bars)
    try:
        bank_tr, src_tr, _ = adversarial_bank(
            sur,
            data.images[tr_idx],
            data.labels[tr_idx],
            cfg.kinds,
            cfg.eps,
            gen,
            device,
            cfg.attack_steps,
            advance=advance,
        )
        bank_va, src_va, _ = adversarial_bank(
            sur,
            data.images[va_idx],
            data.labels[va_idx],
            cfg.kinds,
            cfg.eps,
            gen,
            device,
            cfg.attack_steps,
            advance=advance,
        )
    finally:
        close()
    seconds = time.perf_counter() - t_bank
    log(f"attack bank: {len(bank_tr)} training and {len(bank_va)} validation pairs in {seconds:.1f}s", cfg.quiet)
    return _Pairs(bank_tr, src_tr, data.images[tr_idx], bank_va, src_va, data.images[va_idx], seconds)


def _train_steps(cfg: DefenseConfig, sur, den: nn.Module, opt, pairs: _Pairs, device, epoch: int, bars: bool) -> float:
    """One epoch of optimiser steps over shuffled training pairs; returns the mean training loss."""
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    perm = torch.randperm(len(pairs.bank_tr), generator=g).numpy()
    steps = (len(perm) + cfg.batch_size - 1) // cfg.batch_size
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    den.train()
    total, seen = 0.0, 0
    advance, close = progress_bar(steps, f"denoiser epoch {epoch + 1}/{cfg.epochs}", bars)
    try:
        for step in range(steps):
            b = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(b) < 2:
                continue
            xa = torch.from_numpy(pairs.bank_tr[b]).to(device)
            xc = torch.from_numpy(pairs.clean_tr[pairs.src_tr[b]]).to(device)
            loss = _fgd_loss(sur, den, xa, xc)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
            seen += len(b)
            advance(1)
    finally:
        close()
    return total / max(seen, 1)


def _val_loss(sur, den: nn.Module, pairs: _Pairs, device) -> float:
    """Mean FGD loss over the validation pairs (eval mode, no gradient)."""
    den.eval()
    vl, vn = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(pairs.bank_va), 32):
            xa = torch.from_numpy(pairs.bank_va[s : s + 32]).to(device)
            xc = torch.from_numpy(pairs.clean_va[pairs.src_va[s : s + 32]]).to(device)
            vl += float(_fgd_loss(sur, den, xa, xc)) * len(xa)
            vn += len(xa)
    return vl / max(vn, 1)


def _card(
    cfg: DefenseConfig,
    hyper: dict[str, Any],
    history: list[dict[str, Any]],
    best_epoch: int | None,
    t_start: float,
    n_pairs: int,
    device,
) -> dict[str, Any]:
    """The model-card fields of the denoiser (the rest is filled by ``finish_image_model``)."""
    return {
        "name": f"hgd-denoiser-{cfg.image_size}px",
        "kind": "denoiser (image->image preprocessor)",
        "summary": "HGD denoiser (Liao et al., CVPR 2018), feature-guided by the surrogate; use as "
        "`--defenses denoiser:PATH` in `xray-audit scan`.",
        "recipe": {"name": "denoiser", "description": __doc__.strip().splitlines()[0], "hyperparameters": hyper},
        "training": {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "seconds": time.perf_counter() - t_start,
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else None,
            "training_pairs": n_pairs,
            "device": str(device),
        },
        "limitations": [
            "Guided by one surrogate; the removal of perturbations made on other models is not guaranteed.",
            "Evaluated here only against defense-unaware attacks on the surrogate; an adaptive (BPDA) attacker "
            "can often defeat input-transform defenses (Athalye et al., ICML 2018).",
            "HGD outputs may be over-smoothed on X-rays (the project's source documents report nearly grey "
            "outputs); check clean accuracy after the denoiser.",
        ],
    }


def _resume(run: RunDir, cfg: DefenseConfig, den: nn.Module, opt, sched) -> tuple[int, float, Any, Any, list]:
    """``(first epoch, best val loss, best weights, best epoch, history)``, restored with ``--resume``."""
    state = run.load_state() if cfg.resume else None
    if state is None:
        return 0, float("inf"), None, None, []
    den.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    log(f"resuming {run.path} after epoch {int(state['epoch'])}", cfg.quiet)
    return (
        int(state["epoch"]),
        float(state["best_val"]),
        state.get("best_model"),
        state.get("best_epoch"),
        list(state["history"]),
    )


def _epochs(
    cfg: DefenseConfig, run: RunDir, sur, den: nn.Module, opt, sched, pairs: _Pairs, device, bars
) -> tuple[list[dict[str, Any]], int | None]:
    """The training epochs (resumed with ``--resume``), each checkpointed in ``run``; leaves ``den`` in eval mode
    with the weights of the best validation loss. Returns ``(history, best epoch)``."""
    start, best_val, best_state, best_epoch, history = _resume(run, cfg, den, opt, sched)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        train_loss = _train_steps(cfg, sur, den, opt, pairs, device, epoch, bars)
        sched.step()
        val = _val_loss(sur, den, pairs, device)
        if val < best_val:
            best_val, best_epoch = val, epoch + 1
            best_state = {k: v.detach().cpu().clone() for k, v in den.state_dict().items()}
        rec = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val,
            "lr": float(opt.param_groups[0]["lr"]),
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        log(
            f"denoiser epoch {epoch + 1}/{cfg.epochs}: train L1(features) {rec['train_loss']:.4f} | val {val:.4f} | "
            f"{rec['seconds']:.1f}s",
            cfg.quiet,
        )
        run.save_state(
            {
                "epoch": epoch + 1,
                "model": {k: v.detach().cpu() for k, v in den.state_dict().items()},
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "best_val": best_val,
                "best_model": best_state,
                "best_epoch": best_epoch,
                "history": history,
            }
        )
    if best_state is not None:
        den.load_state_dict(best_state)
    den.eval()
    return history, best_epoch


def train_denoiser(cfg: DefenseConfig) -> dict[str, Any]:
    """Train, evaluate, checkpoint and export an HGD denoiser (``denoiser.onnx`` + ``denoiser.pt`` + card).

    Returns ``{"out", "onnx", "checkpoint", "card_md", "card_json", "history", "extra_metrics", "seconds"}``.
    """
    t_start = time.perf_counter()
    cfg, sur, data, split, device = prepare(cfg)
    lr = cfg.lr or 1e-3
    bars = show_bars(cfg.quiet, cfg.progress)
    from auditor.data.fingerprint import file_sha256

    sur_sha = file_sha256(cfg.surrogate)
    identity = {
        "recipe": "denoiser",
        "arch": "hgd-unet",
        "image_size": cfg.image_size,
        "seed": cfg.seed,
        "data_manifest_sha256": data.manifest_sha256,
        "surrogate_sha256": sur_sha,
        "kinds": list(cfg.kinds),
    }
    run = RunDir(cfg.out, identity, overwrite=cfg.overwrite, resume=cfg.resume)

    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    pairs = _pairs(cfg, sur, data, split, device, gen, bars)

    den = HGDDenoiser().to(device)
    opt = torch.optim.Adam(den.parameters(), lr=lr)
    milestones = sorted({max(1, int(round(cfg.epochs * 0.6))), max(1, int(round(cfg.epochs * 0.9)))})
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
    history, best_epoch = _epochs(cfg, run, sur, den, opt, sched, pairs, device, bars)

    extra = defense_eval(sur, den, data, split.test, device, torch.Generator().manual_seed(cfg.seed + 1))
    hyper = {
        k: v
        for k, v in asdict(cfg).items()
        if k in ("epochs", "batch_size", "seed", "image_size", "kinds", "attack_steps", "max_images", "max_steps")
    }
    hyper.update(
        lr=lr,
        eps=[float(e) for e in cfg.eps],
        lr_milestones=milestones,
        loss="L1 on surrogate last conv map (FGD)",
        architecture=den.config,
        surrogate=Path(cfg.surrogate).name,
        surrogate_sha256=sur_sha,
        surrogate_arch=sur.meta["arch"],
        bank_seconds=pairs.seconds,
    )
    recipe = {"name": "denoiser", "arch": "hgd-unet", "hyperparameters": hyper}
    return finish_image_model(
        net=den,
        stem="denoiser",
        cfg=cfg,
        data=data,
        split=split,
        recipe=recipe,
        extra=extra,
        history=history,
        t_start=t_start,
        out=run.path,
        ckpt_doc={
            "format": IMAGE_MODEL_FORMAT,
            "arch": "hgd-unet",
            "config": den.config,
            "state_dict": {k: v.detach().cpu() for k, v in den.state_dict().items()},
            "image_size": cfg.image_size,
        },
        card=_card(cfg, hyper, history, best_epoch, t_start, int(len(pairs.bank_tr)), device),
    )
