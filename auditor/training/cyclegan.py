"""CycleGAN-based restoration of attacked X-rays (Zhu et al., "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017), CPU-scale (docs/algorithms.md §7.5).

* Domain A: attacked images (FGSM / MI-FGSM / noise made on the surrogate from
  one half of the training images); domain B: clean images (the other half),
  so the two sets are unpaired.
* ``G_AB`` (attacked -> clean, the defense used before the classifier) and
  ``G_BA`` (clean -> attacked): ResNet-style generators (7x7 conv, two stride-2
  downsamplings, ``n_res`` residual blocks, two upsamplings, 7x7 conv) with
  instance norm and reflection padding, at tiny widths for CPU. The output is
  residual, ``clip(x + f(x), 0, 1)``, with ``f`` starting at zero (a deviation
  from CycleGAN's tanh output so short runs stay close to the identity).
* ``D_A``, ``D_B``: PatchGAN discriminators (4x4 convs, LeakyReLU 0.2).
* LSGAN losses; cycle L1 with lambda = 10; identity L1 weighted 0.5 * lambda;
  image pools of 50; Adam lr 2e-4, betas (0.5, 0.999); constant lr for
  ``epochs`` then linear decay to zero over ``decay_epochs``.
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

from auditor.attacks.registry import TRAINING_BANK_ATTACK
from auditor.training.common import RunDir, log, progress_bar, show_bars
from auditor.training.cyclegan_nets import Generator, ImagePool, PatchDiscriminator
from auditor.training.denoiser import IMAGE_MODEL_FORMAT
from auditor.training.imagepairs import DefenseConfig, adversarial_bank, cap, defense_eval, finish_image_model, prepare


def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(pred, torch.full_like(pred, 1.0 if real else 0.0))


@dataclass
class _GAN:
    """The four networks of a CycleGAN run with their optimisers, schedules and image pools."""

    g_ab: nn.Module
    g_ba: nn.Module
    d_a: nn.Module
    d_b: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    sch_g: Any
    sch_d: Any
    pool_a: "ImagePool"
    pool_b: "ImagePool"

    def networks(self) -> tuple[nn.Module, ...]:
        """The generators and discriminators, in state-file order."""
        return self.g_ab, self.g_ba, self.d_a, self.d_b


def _domains(
    cfg: DefenseConfig, sur, data, split, device, gen: torch.Generator, bars: bool
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Domain A (attacked images of one half of the training patients) and B (clean images of the other)."""
    tr = cap(split.train, cfg.max_images, cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tr = rng.permutation(tr)
    half = len(tr) // 2
    idx_a, idx_b = np.sort(tr[:half]), np.sort(tr[half:])
    kinds_a = tuple(k for k in cfg.kinds if k != "noop") or (TRAINING_BANK_ATTACK,)
    advance, close = progress_bar((len(idx_a) + 15) // 16, "attack bank", bars)
    try:
        bank_a, _, _ = adversarial_bank(
            sur,
            data.images[idx_a],
            data.labels[idx_a],
            kinds_a,
            cfg.eps,
            gen,
            device,
            cfg.attack_steps,
            advance=advance,
        )
    finally:
        close()
    clean_b = data.images[idx_b]
    log(f"CycleGAN domains: {len(bank_a)} attacked (A) vs {len(clean_b)} clean (B) images", cfg.quiet)
    return bank_a, clean_b, kinds_a


def _build_gan(cfg: DefenseConfig, device, lr: float, decay: int) -> _GAN:
    """Generators, discriminators, Adam (betas 0.5, 0.999), linear decay after ``cfg.epochs``, image pools."""
    g_ab, g_ba = Generator(cfg.width, cfg.n_res).to(device), Generator(cfg.width, cfg.n_res).to(device)
    d_a, d_b = PatchDiscriminator(cfg.width).to(device), PatchDiscriminator(cfg.width).to(device)
    opt_g = torch.optim.Adam(list(g_ab.parameters()) + list(g_ba.parameters()), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=lr, betas=(0.5, 0.999))

    def rule(e: int) -> float:
        return 1.0 - max(0, e + 1 - cfg.epochs) / float(decay + 1)

    sch_g = torch.optim.lr_scheduler.LambdaLR(opt_g, rule)
    sch_d = torch.optim.lr_scheduler.LambdaLR(opt_d, rule)
    return _GAN(
        g_ab,
        g_ba,
        d_a,
        d_b,
        opt_g,
        opt_d,
        sch_g,
        sch_d,
        ImagePool(cfg.pool_size, cfg.seed),
        ImagePool(cfg.pool_size, cfg.seed + 1),
    )


def _resume_gan(gan: _GAN, run: RunDir, cfg: DefenseConfig) -> tuple[int, list[dict[str, Any]]]:
    """Restore an interrupted run (``--resume``); returns ``(first epoch, history)``."""
    state = run.load_state() if cfg.resume else None
    if state is None:
        return 0, []
    for m, key in zip(gan.networks(), ("g_ab", "g_ba", "d_a", "d_b")):
        m.load_state_dict(state[key])
    for obj, key in ((gan.opt_g, "opt_g"), (gan.opt_d, "opt_d"), (gan.sch_g, "sch_g"), (gan.sch_d, "sch_d")):
        obj.load_state_dict(state[key])
    start = int(state["epoch"])
    log(f"resuming {run.path} after epoch {start}", cfg.quiet)
    return start, list(state["history"])


def _gan_step(gan: _GAN, real_a: torch.Tensor, real_b: torch.Tensor, lam: float) -> dict[str, float]:
    """One generator update (LSGAN + cycle + identity) then one discriminator update; returns the losses."""
    discriminators = list(gan.d_a.parameters()) + list(gan.d_b.parameters())
    for p in discriminators:
        p.requires_grad_(False)
    fake_b, fake_a = gan.g_ab(real_a), gan.g_ba(real_b)
    rec_a, rec_b = gan.g_ba(fake_b), gan.g_ab(fake_a)
    loss_gan = _lsgan(gan.d_b(fake_b), True) + _lsgan(gan.d_a(fake_a), True)
    loss_cyc = (rec_a - real_a).abs().mean() + (rec_b - real_b).abs().mean()
    loss_idt = (gan.g_ab(real_b) - real_b).abs().mean() + (gan.g_ba(real_a) - real_a).abs().mean()
    loss_g = loss_gan + lam * loss_cyc + 0.5 * lam * loss_idt
    gan.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    gan.opt_g.step()
    for p in discriminators:
        p.requires_grad_(True)
    fb, fa = gan.pool_b.query(fake_b), gan.pool_a.query(fake_a)
    loss_d = 0.5 * (_lsgan(gan.d_b(real_b), True) + _lsgan(gan.d_b(fb.detach()), False)) + 0.5 * (
        _lsgan(gan.d_a(real_a), True) + _lsgan(gan.d_a(fa.detach()), False)
    )
    gan.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    gan.opt_d.step()
    return {
        "g": float(loss_g.detach()),
        "d": float(loss_d.detach()),
        "cycle": float(loss_cyc.detach()),
        "idt": float(loss_idt.detach()),
    }


def _gan_epoch(
    gan: _GAN, cfg: DefenseConfig, bank_a: np.ndarray, clean_b: np.ndarray, device, epoch: int, total: int, bars: bool
) -> dict[str, Any]:
    """One epoch over shuffled A and B (the shorter domain wraps around); returns the history record."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    pa = torch.randperm(len(bank_a), generator=g).numpy()
    pb = torch.randperm(len(clean_b), generator=g).numpy()
    steps = max(len(pa), len(pb)) // cfg.batch_size
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    steps = max(steps, 1)
    sums = {"g": 0.0, "d": 0.0, "cycle": 0.0, "idt": 0.0}
    for m in gan.networks():
        m.train()
    advance, close = progress_bar(steps, f"cyclegan epoch {epoch + 1}/{total}", bars)
    try:
        for step in range(steps):
            ia = pa[[(step * cfg.batch_size + j) % len(pa) for j in range(cfg.batch_size)]]
            ib = pb[[(step * cfg.batch_size + j) % len(pb) for j in range(cfg.batch_size)]]
            losses = _gan_step(
                gan, torch.from_numpy(bank_a[ia]).to(device), torch.from_numpy(clean_b[ib]).to(device), cfg.lambda_cycle
            )
            for k, v in losses.items():
                sums[k] += v
            advance(1)
    finally:
        close()
    gan.sch_g.step()
    gan.sch_d.step()
    return {
        "epoch": epoch + 1,
        **{f"loss_{k}": v / steps for k, v in sums.items()},
        "lr": float(gan.opt_g.param_groups[0]["lr"]),
        "seconds": time.perf_counter() - t0,
    }


def _save_gan_state(run: RunDir, gan: _GAN, epoch: int, history: list[dict[str, Any]]) -> None:
    """The per-epoch resumable state (networks, optimisers, schedules, history)."""
    run.save_state(
        {
            "epoch": epoch + 1,
            "g_ab": gan.g_ab.state_dict(),
            "g_ba": gan.g_ba.state_dict(),
            "d_a": gan.d_a.state_dict(),
            "d_b": gan.d_b.state_dict(),
            "opt_g": gan.opt_g.state_dict(),
            "opt_d": gan.opt_d.state_dict(),
            "sch_g": gan.sch_g.state_dict(),
            "sch_d": gan.sch_d.state_dict(),
            "history": history,
        }
    )


def train_cyclegan(cfg: DefenseConfig) -> dict[str, Any]:
    """Train the two generators and discriminators; export ``G_AB`` (attacked -> clean) as ``cyclegan.onnx``.

    Returns ``{"out", "onnx", "checkpoint", "card_md", "card_json", "history", "extra_metrics", "seconds"}``.
    """
    t_start = time.perf_counter()
    cfg, sur, data, split, device = prepare(cfg)
    lr = cfg.lr or 2e-4
    decay = cfg.epochs if cfg.decay_epochs is None else cfg.decay_epochs
    total = cfg.epochs + decay
    bars = show_bars(cfg.quiet, cfg.progress)
    from auditor.hashing import sha256_file

    sur_sha = sha256_file(cfg.surrogate)
    identity = {
        "recipe": "cyclegan",
        "arch": f"resnet-gen-w{cfg.width}-r{cfg.n_res}",
        "image_size": cfg.image_size,
        "seed": cfg.seed,
        "data_manifest_sha256": data.manifest_sha256,
        "surrogate_sha256": sur_sha,
        "kinds": list(cfg.kinds),
    }
    run = RunDir(cfg.out, identity, overwrite=cfg.overwrite, resume=cfg.resume)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    bank_a, clean_b, kinds_a = _domains(cfg, sur, data, split, device, gen, bars)
    gan = _build_gan(cfg, device, lr, decay)
    start, history = _resume_gan(gan, run, cfg)
    for epoch in range(start, total):
        rec = _gan_epoch(gan, cfg, bank_a, clean_b, device, epoch, total, bars)
        history.append(rec)
        log(
            f"cyclegan epoch {epoch + 1}/{total}: G {rec['loss_g']:.3f} D {rec['loss_d']:.3f} cycle "
            f"{rec['loss_cycle']:.4f} | {rec['seconds']:.1f}s",
            cfg.quiet,
        )
        _save_gan_state(run, gan, epoch, history)

    g_ab, g_ba, lam = gan.g_ab, gan.g_ba, cfg.lambda_cycle
    g_ab.eval()
    extra = defense_eval(sur, g_ab, data, split.test, device, torch.Generator().manual_seed(cfg.seed + 1))
    hyper = {
        k: v
        for k, v in asdict(cfg).items()
        if k
        in (
            "epochs",
            "batch_size",
            "seed",
            "image_size",
            "kinds",
            "attack_steps",
            "max_images",
            "max_steps",
            "lambda_cycle",
            "pool_size",
            "width",
            "n_res",
        )
    }
    hyper.update(
        lr=lr,
        betas=[0.5, 0.999],
        decay_epochs=decay,
        identity_weight=0.5 * lam,
        gan_loss="LSGAN",
        eps=[float(e) for e in cfg.eps],
        surrogate=Path(cfg.surrogate).name,
        surrogate_sha256=sur_sha,
        domain_a="attacked (" + ", ".join(kinds_a) + ")",
        domain_b="clean",
        n_a=int(len(bank_a)),
        n_b=int(len(clean_b)),
    )
    recipe = {"name": "cyclegan", "arch": identity["arch"], "hyperparameters": hyper}
    return finish_image_model(
        net=g_ab,
        stem="cyclegan",
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
            "arch": "cyclegan-resnet-generator",
            "config": g_ab.config,
            "state_dict": {k: v.detach().cpu() for k, v in g_ab.state_dict().items()},
            "image_size": cfg.image_size,
            "g_ba_state_dict": {k: v.detach().cpu() for k, v in g_ba.state_dict().items()},
        },
        card=_card(cfg, hyper, history, t_start, device),
    )


def _card(
    cfg: DefenseConfig, hyper: dict[str, Any], history: list[dict[str, Any]], t_start: float, device
) -> dict[str, Any]:
    """The model-card fields of the CycleGAN restorer (the rest is filled by ``finish_image_model``)."""
    return {
        "name": f"cyclegan-restorer-{cfg.image_size}px",
        "kind": "CycleGAN generator attacked->clean (image->image preprocessor)",
        "summary": "CycleGAN restoration (Zhu et al., ICCV 2017); use as `--defenses cyclegan:PATH` in `xray-audit scan`.",
        "recipe": {"name": "cyclegan", "description": __doc__.strip().splitlines()[0], "hyperparameters": hyper},
        "training": {
            "epochs_run": len(history),
            "seconds": time.perf_counter() - t_start,
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else None,
            "device": str(device),
        },
        "limitations": [
            "Tiny CPU-scale networks and few epochs: far from the paper's 200 epochs; expect artefacts and "
            "incomplete removal (the project's source documents report both).",
            "Evaluated only against defense-unaware attacks on the surrogate; adaptive attacks are not covered.",
        ],
    }
