"""Write CSV manifests of the train/val/test parts of the project's patient-wise split.

Usage::

    python bench/split_manifests.py ../shared/data/kermany --out /work/runs/kermany_split [--seed 42]

Why: the realistic black-box surrogate must never have seen the vendor's
(target's) training patients, and the audit runs on the target's test split.
``xray-audit train`` splits its ``--data`` patient-wise 60/20/20
(:func:`auditor.training.common.patient_split`, seed 42), so the only patients that are
in neither the target's training part nor its test part are those of its
*validation* part. This script reproduces that split exactly (same loader,
same ordering, same seed) and writes ``train.csv``, ``val.csv`` and
``test.csv`` (columns ``path,label,patient_id``; absolute paths), plus
``split.json`` with counts and patient sets checked to be disjoint. With
``--balanced-test N`` it also writes ``test_balanced_N.csv``: N // K images of
each of the K classes drawn from the test part (seeded, at most one image per
patient where the class has enough patients), for audits that need a
class-balanced sample (``scan --max-images`` draws in proportion to the
classes).

Train the surrogate with ``--data OUT/val.csv``: its own 60/20/20 split then
runs inside the target's validation patients, so it trains on about 12 % of
the set (the price of disjoint data), and audit with ``--data OUT/test.csv``.
Not part of the tests; skips with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def write_manifests(data_root: str, out: str | Path, seed: int = 42) -> dict:
    """Reproduce the training split of ``data_root`` and write one CSV per part; returns the summary."""
    from auditor.training.common import load_training_data, patient_split

    # image size does not affect the split (same files, same order, same skips); 16 px keeps it cheap
    data = load_training_data(data_root, 16, quiet=True, progress=False)
    split = patient_split(data.labels, data.groups(), seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(data.root)
    groups = data.groups()
    patients = {}
    for part in ("train", "val", "test"):
        idx = getattr(split, part)
        patients[part] = {groups[i] for i in idx}
        with open(out / f"{part}.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "label", "patient_id"])
            for i in idx:
                w.writerow(
                    [str(root / data.rel_paths[i]), data.class_names[int(data.labels[i])], data.patient_ids[i] or ""]
                )
    overlap = {
        f"{a}&{b}": len(patients[a] & patients[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
    }
    if any(overlap.values()):
        raise SystemExit(f"split is not patient-disjoint: {overlap}")
    summary = {
        "data": data.root,
        "manifest_sha256": data.manifest_sha256,
        "seed": seed,
        "method": split.method,
        "counts": split.describe(data)["counts"],
        "patients": {k: len(v) for k, v in patients.items()},
        "patient_overlap": overlap,
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def write_balanced_test(out: str | Path, n: int, seed: int = 0) -> Path:
    """``test_balanced_N.csv``: ``n // K`` test images per class, preferring distinct patients; returns its path."""
    import numpy as np

    out = Path(out)
    with open(out / "test.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classes = sorted({r["label"] for r in rows})
    per = n // len(classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        idx = [i for i, r in enumerate(rows) if r["label"] == c]
        if len(idx) < per:
            raise SystemExit(f"class {c} has only {len(idx)} test images, {per} asked")
        order = rng.permutation(idx)
        seen, first, rest = set(), [], []
        for i in order:  # one image per patient first, then the rest
            pid = rows[i]["patient_id"] or f"image:{rows[i]['path']}"
            (rest if pid in seen else first).append(i)
            seen.add(pid)
        chosen.extend(sorted((first + rest)[:per]))
    path = out / f"test_balanced_{n}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["path", "label", "patient_id"])
        w.writeheader()
        for i in chosen:
            w.writerow(rows[i])
    return path


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--balanced-test", type=int, metavar="N", help="also write test_balanced_N.csv (N // K per class)")
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"skipped: {args.data} is absent", file=sys.stderr)
        return 0
    print(json.dumps(write_manifests(args.data, args.out, args.seed), indent=2))
    if args.balanced_test:
        print(write_balanced_test(args.out, args.balanced_test))
    return 0


if __name__ == "__main__":
    sys.exit(main())
