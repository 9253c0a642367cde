"""Measure the reference recipe on the real chest X-ray set and compare it with a trivial baseline.

Usage (about 20 minutes on 2 CPU cores with the defaults)::

    python bench/measure_real.py --data ../shared/data/cxr --out /tmp/real_train_out

What it reports (``summary.json`` in ``--out`` and the log):

* the reference recipe (patient-wise 60/20/20 split, seed 42, from scratch) at
  ``--image-size`` with ``--arch``: test accuracy, macro-F1 and per-class
  recall with 95 % bootstrap intervals (by patient where known), seconds per epoch;
* a trivial baseline on the same split: multinomial logistic regression on
  image intensity statistics (mean, std, 5/25/50/75/95th percentiles, mean
  absolute 4-neighbour Laplacian) computed on the 256 px files;
* whether the CNN beats the baseline (accuracy intervals compared);
* a JPEG shortcut probe: the CNN's pneumothorax probability on the test
  normals before and after two rounds of JPEG quality-75 re-compression
  (the pneumothorax class went through such a chain; see the data README).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def intensity_features(images: np.ndarray) -> np.ndarray:
    """Per-image statistics: mean, std, 5/25/50/75/95th percentiles, mean |4-neighbour Laplacian|."""
    import cv2

    feats = []
    for img in images[:, 0]:
        lap = cv2.Laplacian(img.astype(np.float32), cv2.CV_32F, ksize=1)
        feats.append([img.mean(), img.std(), *np.percentile(img, [5, 25, 50, 75, 95]), np.abs(lap).mean()])
    return np.asarray(feats, dtype=np.float64)


def double_jpeg(images: np.ndarray, quality: int = 75) -> np.ndarray:
    """Re-encode each grey image as JPEG twice at ``quality`` (Pillow)."""
    from PIL import Image

    out = []
    for img in images[:, 0]:
        u8 = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        for _ in range(2):
            buf = io.BytesIO()
            Image.fromarray(u8, mode="L").save(buf, format="JPEG", quality=quality)
            u8 = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))
        out.append(u8.astype(np.float32) / 255.0)
    return np.stack(out)[:, None]


def _summ(m: dict) -> dict:
    return {
        "accuracy": m["accuracy"],
        "accuracy_ci": m["accuracy_ci"],
        "macro_f1": m["macro_f1"],
        "macro_f1_ci": m["macro_f1_ci"],
        "recall": {k: v["recall"] for k, v in m["per_class"].items()},
        "recall_ci": {k: v["sensitivity_ci"] for k, v in m["per_class"].items()},
        "n": m["n"],
    }


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr"))
    ap.add_argument("--out", default="/tmp/real_train_out")
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--min-epochs", type=int, default=5)
    ap.add_argument("--overwrite", action="store_true")
    return ap.parse_args(argv)


def _baseline_metrics(data_root: str, split, seed: int) -> dict[str, Any]:
    """Logistic regression on intensity statistics of the 256 px files, on the CNN's split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from auditor.metrics import compute_metrics
    from auditor.training.common import load_training_data, patient_split

    data256 = load_training_data(data_root, 256, quiet=True, progress=False)
    split256 = patient_split(data256.labels, data256.groups(), seed=seed)
    assert np.array_equal(split256.test, split.test), "baseline and CNN splits differ"
    feats = intensity_features(data256.images)
    fit_idx = np.concatenate([split256.train, split256.val])
    base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced"))
    base.fit(feats[fit_idx], data256.labels[fit_idx])
    y_test = data256.labels[split256.test]
    groups = [data256.patient_ids[i] for i in split256.test]
    base_pred = base.predict(feats[split256.test])
    return compute_metrics(y_test, base_pred, data256.class_names, groups=groups, seed=0)


def _jpeg_probe(data, split, checkpoint: str) -> dict[str, Any] | None:
    """The CNN's pneumothorax score on the test normals before and after two JPEG-75 rounds (None without both classes)."""
    import torch

    from auditor.models.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint)  # [0, 1] grey -> logits, the checkpoint's input contract inside
    names = list(data.class_names)
    if "normal" not in names or "pneumothorax" not in names:
        return None
    k_n, k_p = names.index("normal"), names.index("pneumothorax")
    idx = np.array([i for i in split.test if data.labels[i] == k_n])
    x = data.images[idx]
    xj = double_jpeg(x)
    with torch.no_grad():
        p0 = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
        p1 = torch.softmax(model(torch.from_numpy(xj)), 1).numpy()
    return {
        "n_test_normals": int(len(idx)),
        "mean_p_pneumothorax_before": float(p0[:, k_p].mean()),
        "mean_p_pneumothorax_after_double_jpeg75": float(p1[:, k_p].mean()),
        "share_called_pneumothorax_before": float((p0.argmax(1) == k_p).mean()),
        "share_called_pneumothorax_after": float((p1.argmax(1) == k_p).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; returns 0."""
    args = _arguments(argv)
    from auditor.training.common import load_training_data
    from auditor.training.recipe_config import TrainConfig
    from auditor.training.recipes import train_reference

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = TrainConfig(
        data=args.data,
        out=str(out / "reference"),
        arch=args.arch,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        min_epochs=args.min_epochs,
        overwrite=args.overwrite,
        resume=(out / "reference" / "state.pt").is_file() and not args.overwrite,
        progress=False,
        device="cpu",
    )
    res = train_reference(cfg)
    cnn_seconds = time.perf_counter() - t0
    split = res["split"]
    base_m = _baseline_metrics(args.data, split, cfg.seed)
    data = load_training_data(args.data, args.image_size, quiet=True, progress=False)
    probe = _jpeg_probe(data, split, res["checkpoint"])

    cnn = _summ(res["metrics"])
    bl = _summ(base_m)
    beats = cnn["accuracy_ci"][0] > bl["accuracy_ci"][1] if cnn["accuracy_ci"] and bl["accuracy_ci"] else None
    summary = {
        "data": args.data,
        "arch": args.arch,
        "image_size": args.image_size,
        "pretrained": False,
        "epochs_run": res["epochs_run"],
        "best_epoch": res["best_epoch"],
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in res["history"]])),
        "cnn_total_seconds": cnn_seconds,
        "cnn": cnn,
        "baseline_logreg_intensity_stats": bl,
        "cnn_beats_baseline_ci_separated": beats,
        "cnn_minus_baseline_accuracy": cnn["accuracy"] - bl["accuracy"],
        "jpeg_probe": probe,
        "split": split.describe(data),
        "model": res["onnx"],
        "card": res["card_md"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
