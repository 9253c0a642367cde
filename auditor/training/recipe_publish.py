"""Publishing a finished classifier run: test metrics of the best weights, checkpoint, ONNX export,
model card (with the data's limitations) and history. See :mod:`auditor.training.recipes`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from auditor.atomic import write_atomic
from auditor.reference_models.registry import (
    make_checkpoint,
)
from auditor.training.common import (
    TrainData,
)
from auditor.training.recipe_config import (
    ADVERSARIAL_KNOBS,
    RECIPES_DESCRIPTION,
    SEEDS_REPORTED,
    TrainConfig,
    data_sources,
)
from auditor.training.recipe_loop import _predict, _Progress, _Setup


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
        or (
            f"initialised from {Path(cfg.init).name} (sha256 {s.init_sha[:12]}...)" if cfg.init and s.init_sha else None
        ),
        "data": data.describe(),
        "split": s.split.describe(data),
        "recipe": {
            "name": cfg.recipe,
            "description": RECIPES_DESCRIPTION,
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
