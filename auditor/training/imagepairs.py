"""Shared set-up of the image->image defenses (HGD denoiser, CycleGAN): config, surrogate, adversarial banks.

Both defenses learn from adversarial images made on a frozen *surrogate*
(a classifier checkpoint written by :mod:`training.recipes`). The bank holds,
per clean image, perturbed versions of the requested kinds:

* ``noop``   -- the clean image itself;
* ``noise``  -- uniform noise, eps drawn from ``eps``;
* ``fgsm``   -- FGSM (one signed-gradient step, no random start) at eps;
* ``mifgsm`` -- MI-FGSM, 5 steps, decay 1.0, at eps;

generated once (HGD's ``prepare_data`` builds its attack bank the same way,
docs/algorithms.md §7.4) and kept in memory as float32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.attacks.registry import TRAINING_BANK_ATTACK
from auditor.errors import ModelContractError, UsageError
from auditor.models.checkpoints import load_checkpoint
from auditor.models.device import pick_device
from auditor.models.torch import TorchClassifier
from auditor.training.common import Split, TrainData, load_training_data, patient_split

#: the perturbations of a training bank: none, uniform noise, FGSM, and the registry's bank attack (MI-FGSM)
KINDS = ("noop", "noise", "fgsm", TRAINING_BANK_ATTACK)


@dataclass(frozen=True)
class DefenseConfig:
    """Knobs of the denoiser and CycleGAN recipes."""

    data: str
    out: str
    surrogate: str
    epochs: int = 10
    batch_size: int = 16
    lr: float | None = None  #: None = recipe default (denoiser 1e-3, CycleGAN 2e-4)
    seed: int = 42
    device: str = "auto"
    image_size: int | None = None  #: None = the surrogate's input size
    kinds: tuple[str, ...] = KINDS
    eps: tuple[float, ...] = (4 / 255, 8 / 255, 16 / 255)
    attack_steps: int = 5
    max_images: int | None = None  #: cap on training images (bank generation is the slow part on CPU)
    max_steps: int | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    progress: bool | None = None
    n_boot: int = 1000
    # CycleGAN only
    decay_epochs: int | None = None  #: None = same as epochs (CycleGAN: 100 constant + 100 decay)
    lambda_cycle: float = 10.0
    pool_size: int = 50
    width: int = 16
    n_res: int = 3
    synthetic: bool | None = None


def load_pair_surrogate(path: str) -> TorchClassifier:
    """The frozen 1-channel classifier checkpoint the banks attack (``[0, 1]`` image -> logits).

    Read by :func:`auditor.models.checkpoints.load_checkpoint`, so its input is encoded by the
    same model-input contract as in an audit; a bad checkpoint is a :class:`UsageError`.
    """
    try:
        sur = load_checkpoint(path)
    except ModelContractError as exc:
        raise UsageError(str(exc)) from None
    if sur.in_channels != 1:
        raise UsageError(f"--surrogate {path}: 1-channel checkpoints only, this one has {sur.in_channels}")
    return sur


def surrogate_features(sur: TorchClassifier, x: torch.Tensor) -> torch.Tensor:
    """The last convolutional feature map of the surrogate (HGD's FGD tap)."""
    from auditor.reference_models.registry import last_conv_features

    return last_conv_features(sur.network, sur.network_input(x))


def prepare(cfg: DefenseConfig) -> tuple[DefenseConfig, TorchClassifier, TrainData, Split, torch.device]:
    """Validate, load the surrogate and the data, split by patient."""
    if not Path(cfg.surrogate).is_file():
        raise UsageError(f"--surrogate {cfg.surrogate}: checkpoint not found")
    bad = [k for k in cfg.kinds if k not in KINDS]
    if bad or not cfg.kinds:
        raise UsageError(f"--kinds {','.join(cfg.kinds)}: choose from {', '.join(KINDS)}")
    if cfg.batch_size < 2:
        raise UsageError(f"--batch-size {cfg.batch_size}: use at least 2")
    device = pick_device(cfg.device)
    sur = load_pair_surrogate(cfg.surrogate).to(device)
    size = cfg.image_size or sur.spec.height
    if size != sur.spec.height:
        raise UsageError(f"--image-size {size} differs from the surrogate's input size {sur.spec.height}")
    from dataclasses import replace

    cfg = replace(cfg, image_size=size)
    data = load_training_data(
        cfg.data, size, tuple(sur.spec.class_names) or None, quiet=cfg.quiet, progress=cfg.progress
    )
    split = patient_split(data.labels, data.groups(), seed=cfg.seed)
    return cfg, sur, data, split, device


def cap(idx: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """A seeded subset of at most ``n`` indices (all when ``n`` is None)."""
    if n is None or len(idx) <= n:
        return idx
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=n, replace=False))


def adversarial_bank(
    sur: TorchClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    kinds,
    eps,
    gen: torch.Generator,
    device,
    steps: int = 5,
    batch: int = 16,
    advance=None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Perturbed copies of ``images``: returns ``(bank (M,1,H,W), source index (M,), kind per row)``.

    Every image gets one version of each kind, with eps drawn uniformly from ``eps``.
    """
    from auditor.training.perturb import fgsm, mifgsm, uniform_noise_perturb

    out: list[np.ndarray] = []
    src: list[int] = []
    kind_of: list[str] = []
    eps_t = torch.tensor(eps, dtype=torch.float32)
    for s in range(0, len(images), batch):
        xb = torch.from_numpy(images[s : s + batch]).to(device)
        yb = torch.from_numpy(labels[s : s + batch]).to(device)
        n = xb.shape[0]
        for k in kinds:
            e = eps_t[torch.randint(0, len(eps_t), (n,), generator=gen)]
            if k == "noop":
                xa = xb
            elif k == "noise":
                xa = uniform_noise_perturb(xb, e, gen)
            elif k == "fgsm":
                xa = fgsm(sur, xb, yb, e)
            else:
                xa = mifgsm(sur, xb, yb, e, steps=steps)
            out.append(xa.detach().cpu().numpy())
            src.extend(range(s, s + n))
            kind_of.extend([k] * n)
        if advance:
            advance(1)
    bank = np.concatenate(out).astype(np.float32) if out else np.zeros((0,) + images.shape[1:], np.float32)
    return bank, np.asarray(src, dtype=np.int64), kind_of


def surrogate_accuracy(
    sur: TorchClassifier, x: np.ndarray, y: np.ndarray, device, batch: int = 64
) -> tuple[float, np.ndarray]:
    """Accuracy and predictions of the surrogate on a [0, 1] batch."""
    preds = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            preds.append(sur(torch.from_numpy(x[s : s + batch]).to(device)).argmax(1).cpu().numpy())
    p = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    return (float(np.mean(p == y)) if len(y) else float("nan")), p


def apply_model(model: nn.Module, x: np.ndarray, device, batch: int = 32) -> np.ndarray:
    """Run an image->image torch model over a numpy batch."""
    model.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[s : s + batch]).to(device)).cpu().numpy())
    return np.concatenate(outs).astype(np.float32) if outs else x.copy()


def defense_eval(
    sur: TorchClassifier,
    model: nn.Module,
    data: TrainData,
    test_idx: np.ndarray,
    device,
    gen: torch.Generator,
    eps: float = 8 / 255,
    steps: int = 5,
) -> dict[str, Any]:
    """Surrogate accuracy on the test split: clean, MI-FGSM(eps) adversarial, and both after the model.

    This is a white-box-on-the-surrogate, defense-unaware check (the audit
    measures the real thing on the target model).
    """
    from auditor.training.perturb import mifgsm

    t0 = time.perf_counter()
    x = data.images[test_idx]
    y = data.labels[test_idx]
    adv = []
    for s in range(0, len(x), 16):
        xb = torch.from_numpy(x[s : s + 16]).to(device)
        yb = torch.from_numpy(y[s : s + 16]).to(device)
        adv.append(mifgsm(sur, xb, yb, eps, steps=steps).cpu().numpy())
    xa = np.concatenate(adv) if adv else x
    acc_clean, _ = surrogate_accuracy(sur, x, y, device)
    acc_adv, _ = surrogate_accuracy(sur, xa, y, device)
    acc_clean_def, _ = surrogate_accuracy(sur, apply_model(model, x, device), y, device)
    acc_adv_def, _ = surrogate_accuracy(sur, apply_model(model, xa, device), y, device)
    return {
        "n_test": int(len(y)),
        "attack": f"MI-FGSM eps {eps * 255:.0f}/255, {steps} steps, on the surrogate",
        "surrogate_accuracy_clean": acc_clean,
        "surrogate_accuracy_adversarial": acc_adv,
        "surrogate_accuracy_clean_after_defense": acc_clean_def,
        "surrogate_accuracy_adversarial_after_defense": acc_adv_def,
        "seconds": time.perf_counter() - t0,
    }


def finish_image_model(
    *,
    net: nn.Module,
    stem: str,
    ckpt_doc: dict,
    cfg: "DefenseConfig",
    data: TrainData,
    split: Split,
    recipe: dict,
    extra: dict,
    history: list,
    t_start: float,
    card: dict,
    out: Path,
) -> dict[str, Any]:
    """Save the checkpoint, export + verify the ONNX image->image model and write its model card.

    Shared by the denoiser and CycleGAN recipes. ``card`` holds the recipe-specific card fields
    (name, kind, summary, recipe, training, limitations); the data, split, files and spec
    fields are filled in here.
    """
    import json

    from auditor.atomic import write_atomic
    from auditor.hashing import sha256_file
    from auditor.reference_models.cards import write_model_card
    from auditor.training.common import atomic_torch_save
    from auditor.training.export import export_image_model
    from auditor.training.recipe_config import _is_synthetic

    ckpt = out / f"{stem}.pt"
    atomic_torch_save(ckpt_doc, ckpt)
    onnx_path = out / f"{stem}.onnx"
    synthetic = _is_synthetic(cfg.data) if cfg.synthetic is None else cfg.synthetic
    info = export_image_model(
        net,
        onnx_path,
        data.images[split.test[:4]],
        recipe=recipe,
        manifest_sha256=data.manifest_sha256,
        metrics=extra,
        extra_metadata={"xray_audit.synthetic": "true" if synthetic else "false"},
    )
    full = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "synthetic": synthetic,
        **card,
        "files": {
            "onnx": {"path": onnx_path.name, "sha256": sha256_file(onnx_path)},
            "checkpoint": {"path": ckpt.name, "sha256": sha256_file(ckpt)},
        },
        "spec": {
            "layout": "NCHW",
            "channels": 1,
            "height": cfg.image_size,
            "width": cfg.image_size,
            "scaling": "unit",
            "output_kind": "image",
            "class_names": [],
        },
        "data": data.describe(),
        "split": split.describe(data),
        "extra_metrics": extra,
    }
    full["limitations"] = [
        *(["Trained on SYNTHETIC phantoms; no medical meaning."] if synthetic else []),
        *card.get("limitations", []),
    ]
    md, js = write_model_card(out / f"{stem}_card", full)
    write_atomic(out / "history.json", json.dumps(history, indent=2) + "\n")
    return {
        "out": str(out),
        "onnx": info["path"],
        "checkpoint": str(ckpt),
        "card_md": str(md),
        "card_json": str(js),
        "history": history,
        "extra_metrics": extra,
        "seconds": time.perf_counter() - t_start,
        "export": info,
    }
