"""Test-split metrics of trained classifiers next to the trivial baseline, with patient-wise 95 % CIs.

Usage::

    python bench/test_metrics.py --split /work/runs/kermany_split \\
        --model target=/work/runs/k_resnet50_128/model.pt --model surrogate=/work/runs/k_resnet18_sur_128/model.pt \\
        [--positive pneumonia] [--json out.json]

``--split`` is a folder written by ``bench/split_manifests.py`` (``train.csv``,
``val.csv``, ``test.csv``). Every model is scored on ``test.csv``; so is the
baseline, a logistic regression (class-balanced, standardised features) on
per-image intensity statistics (``intensity_features`` of ``bench/measure_real.py``:
mean, std, 5/25/50/75/95th percentiles, mean |Laplacian|), fitted on
``train.csv`` + ``val.csv`` at the files' native size (``--baseline-size``).

Printed per model: balanced accuracy (mean per-class recall), macro-F1,
sensitivity and specificity of ``--positive``, each with a 95 % percentile
bootstrap interval that resamples *patients*
(:func:`auditor.metrics.bootstrap_cms`), and the CNN-minus-baseline difference
in balanced accuracy with its paired bootstrap interval (same patient draws
for both). ``--probe-border FRAC`` adds each model's scores on images whose
inside is blanked, only a frame of FRAC of the side left (a shortcut probe).
Skips with exit 0 when the split folder is absent. Not part of the
tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _rates(cms: np.ndarray, pos: int) -> dict[str, np.ndarray]:
    """Balanced accuracy, macro-F1, sensitivity and specificity of class ``pos`` from (B, K, K) matrices."""
    cms = cms.astype(np.float64)
    tp = np.diagonal(cms, axis1=1, axis2=2)
    true = cms.sum(axis=2)
    pred = cms.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rec = np.where(true > 0, tp / true, np.nan)
        prec = np.where(pred > 0, tp / pred, 0.0)
        f1 = np.where(prec + np.nan_to_num(rec) > 0, 2 * prec * rec / (prec + rec), 0.0)
    total = cms.sum(axis=(1, 2))
    neg = total - true[:, pos]
    tn = total - true[:, pos] - pred[:, pos] + tp[:, pos]
    with np.errstate(divide="ignore", invalid="ignore"):
        spec = np.where(neg > 0, tn / neg, np.nan)
    return {
        "balanced_accuracy": np.nanmean(rec, axis=1),
        "macro_f1": np.nanmean(np.where(true > 0, f1, np.nan), axis=1),
        "sensitivity": rec[:, pos],
        "specificity": spec,
    }


def _ci(v: np.ndarray) -> list[float]:
    v = v[np.isfinite(v)]
    return [float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]


def score(y_true, y_pred, k: int, groups, pos: int, n_boot: int, seed: int = 0) -> dict:
    """Point estimates and patient-bootstrap CIs; also the bootstrap replicates for paired differences."""
    from auditor.metrics import bootstrap_cms

    cm = np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(1, k, k)
    point = _rates(cm, pos)
    boot = _rates(bootstrap_cms(y_true, y_pred, k, groups, n_boot, seed), pos)
    out = {m: {"value": float(point[m][0]), "ci95": _ci(boot[m])} for m in point}
    out["n"] = int(len(y_true))
    out["n_patients"] = len({g for g in groups if g}) + sum(1 for g in groups if not g)
    return out, boot


def load_split(split: Path, part: str, size: int, class_names=None):
    """TrainData of one CSV part at ``size`` px."""
    from auditor.training.common import load_training_data

    return load_training_data(
        str(split / f"{part}.csv"), size, class_names, quiet=True, progress=False, allow_outside_root=True
    )


def border_only(images: np.ndarray, frac: float) -> np.ndarray:
    """Shortcut probe: keep a frame of ``frac`` of the side; fill the inside (the chest) with the image's mean."""
    out = images.copy()
    h, w = images.shape[-2:]
    bh, bw = max(1, int(round(h * frac))), max(1, int(round(w * frac)))
    inner = out[..., bh : h - bh, bw : w - bw]
    inner[...] = images.mean(axis=(-2, -1), keepdims=True)
    return out


def predict_checkpoint(path: str, split: Path, class_names, probe_border: float = 0.0) -> dict[str, np.ndarray]:
    """Class indices (in ``class_names`` order) predicted by an xray-audit checkpoint on test.csv.

    Returns ``{"": predictions}`` plus, with ``probe_border``, ``{"border-only": ...}`` on
    :func:`border_only` images (a model that stays accurate without the chest uses a shortcut).
    """
    import torch

    from auditor.models.checkpoints import load_checkpoint, read_checkpoint
    from auditor.models.surrogate import class_permutation

    doc = read_checkpoint(path)
    perm = class_permutation(tuple(doc["spec"].class_names), tuple(class_names), path)
    model = load_checkpoint(path, class_index=perm, doc=doc)
    data = load_split(split, "test", int(model.size[0]), class_names)
    variants = {"": data.images}
    if probe_border:
        variants[f"border-only {probe_border:.0%}"] = border_only(data.images, probe_border)
    out = {}
    for key, images in variants.items():
        preds = []
        with torch.no_grad():
            for s in range(0, len(images), 64):
                preds.append(model(torch.from_numpy(images[s : s + 64])).argmax(1).numpy())
        out[key] = np.concatenate(preds)
    return out


def main(argv: list[str] | None = None) -> int:
    """Score the models and the baseline; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", required=True, help="folder with train.csv, val.csv, test.csv")
    ap.add_argument("--model", action="append", default=[], help="NAME=checkpoint.pt (repeatable)")
    ap.add_argument("--positive", default="pneumonia")
    ap.add_argument("--baseline-size", type=int, default=224)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument(
        "--probe-border",
        type=float,
        default=0.0,
        metavar="FRAC",
        help="also score each model with only a border frame of FRAC visible (shortcut probe), e.g. 0.15",
    )
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    split = Path(args.split)
    if not (split / "test.csv").is_file():
        print(f"skipped: {split}/test.csv not found (run bench/split_manifests.py first)", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from measure_real import intensity_features

    test = load_split(split, "test", args.baseline_size)
    names = test.class_names
    k, pos = len(names), list(names).index(args.positive)
    fit = [load_split(split, p, args.baseline_size, names) for p in ("train", "val")]
    x_fit = np.concatenate([intensity_features(d.images) for d in fit])
    y_fit = np.concatenate([d.labels for d in fit])
    base = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced")).fit(x_fit, y_fit)
    preds = {"baseline (logreg on intensity statistics)": base.predict(intensity_features(test.images))}
    if args.probe_border:  # the same baseline fitted and scored on border-only images
        xb = np.concatenate([intensity_features(border_only(d.images, args.probe_border)) for d in fit])
        bb = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced")).fit(xb, y_fit)
        preds[f"baseline (border-only {args.probe_border:.0%}, refitted)"] = bb.predict(
            intensity_features(border_only(test.images, args.probe_border))
        )
    for item in args.model:
        name, _, path = item.partition("=")
        for key, p in predict_checkpoint(path, split, names, args.probe_border).items():
            preds[f"{name} ({key})" if key else name] = p
    groups = test.patient_ids
    out, boots = {}, {}
    for name, p in preds.items():
        out[name], boots[name] = score(test.labels, p, k, groups, pos, args.n_boot)
    base_key = next(iter(preds))
    for name in preds:
        if name == base_key:
            continue
        d = boots[name]["balanced_accuracy"] - boots[base_key]["balanced_accuracy"]
        out[name]["balanced_accuracy_minus_baseline"] = {
            "value": out[name]["balanced_accuracy"]["value"] - out[base_key]["balanced_accuracy"]["value"],
            "ci95_paired": _ci(d),
        }
    print(
        f"test split: {len(test.labels)} images, {out[base_key]['n_patients']} patients, per class "
        f"{test.per_class()}; positive class '{args.positive}'; 95% CIs resample patients ({args.n_boot} draws)"
    )
    for name, m in out.items():
        cells = "  ".join(
            f"{key} {m[key]['value']:.3f} [{m[key]['ci95'][0]:.3f}, {m[key]['ci95'][1]:.3f}]"
            for key in ("balanced_accuracy", "macro_f1", "sensitivity", "specificity")
        )
        print(f"{name}: {cells}")
        if "balanced_accuracy_minus_baseline" in m:
            dm = m["balanced_accuracy_minus_baseline"]
            print(
                f"   minus baseline: {dm['value'] * 100:+.1f} points [{dm['ci95_paired'][0] * 100:+.1f}, "
                f"{dm['ci95_paired'][1] * 100:+.1f}] (paired)"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"split": str(split), "positive": args.positive, "models": out, "test_per_class": test.per_class()},
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
