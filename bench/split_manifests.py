"""Write CSV manifests of the train/val/test parts of the project's patient-wise split.

Usage::

    python bench/split_manifests.py ../shared/data/kermany --out /work/runs/kermany_split [--seed 42]

Why: the realistic black-box surrogate must never have seen the vendor's
(target's) training patients, and the audit runs on the target's test split.
``xray-audit train`` splits its ``--data`` patient-wise 60/20/20
(:func:`training.common.patient_split`, seed 42), so the only patients that are
in neither the target's training part nor its test part are those of its
*validation* part. This script reproduces that split exactly (same loader,
same ordering, same seed) and writes ``train.csv``, ``val.csv`` and
``test.csv`` (columns ``path,label,patient_id``; absolute paths), plus
``split.json`` with counts and patient sets checked to be disjoint.

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
    from training.common import load_training_data, patient_split

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
                w.writerow([str(root / data.rel_paths[i]), data.class_names[int(data.labels[i])], data.patient_ids[i] or ""])
    overlap = {f"{a}&{b}": len(patients[a] & patients[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test"))}
    if any(overlap.values()):
        raise SystemExit(f"split is not patient-disjoint: {overlap}")
    summary = {"data": data.root, "manifest_sha256": data.manifest_sha256, "seed": seed, "method": split.method,
               "counts": split.describe(data)["counts"], "patients": {k: len(v) for k, v in patients.items()},
               "patient_overlap": overlap}
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"skipped: {args.data} is absent", file=sys.stderr)
        return 0
    print(json.dumps(write_manifests(args.data, args.out, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
