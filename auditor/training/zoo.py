"""A surrogate zoo: several architectures, each trained on its own patients, used together as an ensemble.

Adversarial examples transfer better from an ensemble of diverse surrogates
than from any single one (Liu et al., "Delving into Transferable Adversarial
Examples and Black-box Attacks", ICLR 2017; Dong et al., CVPR 2018, ensemble
in logits). A vendor auditing a third-party model has no access to its
training data, so the zoo's members are also trained on *different* patients
from each other, as independent proxies would be.

How the folds are drawn (:func:`draw_folds`):

1. the data set is indexed; with ``exclude`` (a folder or CSV manifest, e.g.
   the audit's held-out test split) every image of a patient listed there,
   and every image whose SHA-256 is listed there, is removed first, so the
   audit images are never seen by any surrogate;
2. images without a patient id count as their own patient;
3. scikit-learn's ``StratifiedGroupKFold(n_splits=len(archs), shuffle=True,
   random_state=seed)`` deals the patients into one fold per architecture,
   stratified by class; fold ``i`` is the ``i``-th test part, so the folds are
   disjoint in patients and cover all remaining images;
4. member ``i`` (``archs[i]``) is trained on fold ``i`` with the reference
   recipe (:func:`training.recipes.train_classifier`; its own patient-wise
   60/20/20 split inside the fold, its model card, ONNX and checkpoint).

Layout of ``out``::

    zoo.json                       members, folds, exclusions (what --surrogate DIR reads)
    folds/fold_<i>_<arch>.csv      the manifest each member was trained on
    <i>_<arch>/model.pt, model.onnx, model_card.md/.json, history.json
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from auditor.atomic import write_atomic
from auditor.attack_eta import format_duration
from auditor.errors import DataError, UsageError
from auditor.reference_models.registry import list_architectures
from auditor.training.common import log
from auditor.training.plan import ZooPlan
from auditor.training.recipe_config import TrainConfig
from auditor.training.recipes import train_classifier

ZOO_FORMAT = "xray-audit-surrogate-zoo/1"
ZOO_FILE = "zoo.json"


@dataclass(frozen=True)
class Folds:
    """The samples of each fold and what was excluded before drawing them."""

    folds: tuple[tuple[Any, ...], ...]  #: Sample tuples, one per architecture
    excluded_images: int
    excluded_patients: int
    method: str


def parse_archs(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"resnet18,small_cnn,densenet121"`` -> validated tuple (at least two; repeats allowed)."""
    items = [a.strip().lower() for a in (text.split(",") if isinstance(text, str) else text) if a.strip()]
    unknown = [a for a in items if a not in list_architectures()]
    if unknown:
        raise UsageError(
            f"--archs: unknown architecture(s) {', '.join(unknown)}; known: {', '.join(list_architectures())}"
        )
    if len(items) < 2:
        raise UsageError("--archs: a zoo needs at least two members (e.g. resnet18,small_cnn,densenet121)")
    return tuple(items)


def _excluded(exclude: str | None) -> tuple[set[str], set[str]]:
    """Patient ids and SHA-256s of the held-out set."""
    if not exclude:
        return set(), set()
    from auditor.data import fingerprint, open_dataset

    # the held-out set is only read to leave its patients and images out, never trained on or scored,
    # so a manifest of it may point anywhere (e.g. at the data folder from a split-manifests CSV)
    samples, _ = fingerprint(open_dataset(exclude, allow_outside_root=True).samples)
    return {s.patient_id for s in samples if s.patient_id}, {s.sha256 for s in samples}


def draw_folds(data: str, n_folds: int, seed: int = 42, exclude: str | None = None) -> Folds:
    """Disjoint, class-stratified patient folds of ``data`` (see the module docstring)."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    from auditor.data import fingerprint, open_dataset

    samples, _ = fingerprint(open_dataset(data).samples)
    patients, shas = _excluded(exclude)
    keep = [s for s in samples if not ((s.patient_id and s.patient_id in patients) or s.sha256 in shas)]
    excluded = len(samples) - len(keep)
    if len(keep) < n_folds:
        raise DataError(f"{data}: {len(keep)} images left after exclusions, too few for {n_folds} folds")
    groups = [s.patient_id or f"__image_{i}" for i, s in enumerate(keep)]
    labels = np.asarray([s.label.lower() for s in keep])
    n_groups = len(set(groups))
    if n_groups < n_folds:
        raise DataError(f"{data}: {n_groups} patients, fewer than the {n_folds} folds the zoo needs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" with few patients
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        parts = [test for _, test in splitter.split(np.zeros(len(keep)), labels, groups)]
    folds = tuple(tuple(keep[i] for i in sorted(part)) for part in parts)
    return Folds(folds, excluded, len(patients), f"StratifiedGroupKFold(patient, n_splits={n_folds}, seed={seed})")


def _write_manifest(path: Path, samples) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [["path", "label", "patient_id"]] + [
        [str(Path(s.path).resolve()), s.label, s.patient_id or ""] for s in samples
    ]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    tmp.replace(path)


def _zoo_clock(i: int, plan: ZooPlan | None, t0: float, quiet: bool):
    """The ``on_epoch`` hook of member ``i``: after its first epoch, the time the whole zoo has left.

    The remaining epochs of this member are projected from its measured epoch; each later member from
    the plan's probe estimate of its epoch, scaled by this member's measured/estimated ratio (the
    probe's error on this host). Without a probe the later members are not estimated.
    """

    def on_epoch(rec: dict, total_epochs: int) -> None:
        if rec["epoch"] != 1:
            return
        left = rec["seconds"] * (total_epochs - 1)
        text = f"zoo time estimate after member {i + 1}'s first epoch: this member at most {format_duration(left)} more"
        if plan is not None and plan.estimate_seconds == plan.estimate_seconds and i < len(plan.epoch_seconds):
            ratio = rec["seconds"] / max(plan.epoch_seconds[i], 1e-9)
            later = sum(plan.epoch_seconds[i + 1 :]) * plan.epochs * ratio
            text += (
                f", the {len(plan.epoch_seconds) - i - 1} later member(s) about {format_duration(later)} "
                f"(probe x {ratio:.2f}); whole zoo at most {format_duration(time.perf_counter() - t0 + left + later)}"
            )
        log(text + " (early stopping usually ends sooner)", quiet)

    return on_epoch


def train_zoo(
    data: str,
    out: str,
    archs: Sequence[str],
    base: TrainConfig,
    exclude: str | None = None,
    plan: ZooPlan | None = None,
) -> dict[str, Any]:
    """Train one surrogate per architecture on its own patient fold; write ``zoo.json``; return it.

    ``base`` carries the recipe knobs shared by every member (image size,
    epochs, seed, device, ...); ``data``/``out``/``arch`` are set per member.
    ``plan`` (:func:`auditor.training.plan.plan_zoo`) feeds the overall time estimate.
    """
    from auditor.data.fingerprint import file_sha256

    t0 = time.perf_counter()
    archs = parse_archs(archs)
    root = Path(out)
    folds = draw_folds(data, len(archs), seed=base.seed, exclude=exclude)
    log(
        f"zoo: {len(archs)} folds ({folds.method}); {folds.excluded_images} images of held-out patients excluded",
        base.quiet,
    )
    members = []
    for i, (arch, fold) in enumerate(zip(archs, folds.folds)):
        manifest = root / "folds" / f"fold_{i}_{arch}.csv"
        _write_manifest(manifest, fold)
        log(
            f"zoo member {i + 1}/{len(archs)}: {arch} on {len(fold)} images "
            f"({len({s.patient_id or s.path for s in fold})} patients)",
            base.quiet,
        )
        # the fold manifest, written just above, lists images of the data folder: outside the zoo folder
        cfg = replace(
            base,
            data=str(manifest),
            out=str(root / f"{i}_{arch}"),
            arch=arch,
            recipe="reference",
            allow_outside_root=True,
            name=f"zoo-{i}-{arch}-{base.image_size}px",
            source_data=str(data),
        )
        res = train_classifier(cfg, on_epoch=_zoo_clock(i, plan, t0, base.quiet))
        if Path(res["checkpoint"]).resolve() != (root / f"{i}_{arch}" / "model.pt").resolve():
            raise AssertionError(
                f"unexpected checkpoint path {res['checkpoint']}"
            )  # pragma: no cover - layout of RunDir
        member_dir = f"{i}_{arch}"
        members.append(
            {
                "arch": arch,
                "fold": i,
                "checkpoint": f"{member_dir}/model.pt",
                "sha256": file_sha256(res["checkpoint"]),
                "card": f"{member_dir}/model_card.md",
                "manifest": f"folds/{manifest.name}",
                "n_images": len(fold),
                "n_patients": len({s.patient_id or s.path for s in fold}),
                "test_accuracy": res["metrics"].get("accuracy"),
                "test_accuracy_ci": res["metrics"].get("accuracy_ci"),
            }
        )
    doc = {
        "format": ZOO_FORMAT,
        "image_size": base.image_size,
        "seed": base.seed,
        "data": str(Path(data).resolve()),
        "folds": folds.method,
        "exclude": str(Path(exclude).resolve()) if exclude else None,
        "excluded_images": folds.excluded_images,
        "excluded_patients": folds.excluded_patients,
        "members": members,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_atomic(root / ZOO_FILE, json.dumps(doc, indent=2) + "\n")
    return doc
