"""The ``train surrogates`` CPU plan against the wall time it takes: estimate, actual, ratio.

Copies a class-balanced subset of N images of a data set (a folder with a MANIFEST.csv, e.g. the
Kermany training set) with its README, runs ``xray-audit train surrogates`` on it with a time
budget and a patience that keeps early stopping out (so every planned epoch runs), and prints the
plan's estimate, the measured wall time and their ratio:

    OMP_NUM_THREADS=1 python bench/train_plan.py ../shared/data/kermany --n 400 --budget-minutes 4
"""

from __future__ import annotations

import argparse
import csv
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _subset(src: Path, dst: Path, n: int) -> None:
    rows = list(csv.DictReader(open(src / "MANIFEST.csv", encoding="utf-8")))
    labels = sorted({r["label"] for r in rows})
    random.seed(0)
    picked = []
    for lab in labels:
        mine = [r for r in rows if r["label"] == lab]
        random.shuffle(mine)
        picked += mine[: n // len(labels)]
    for r in picked:
        (dst / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / r["path"], dst / r["path"])
    with open(dst / "MANIFEST.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "patient_id"])
        w.writerows([r["path"], r["label"], r.get("patient_id", "")] for r in picked)
    if (src / "README.md").is_file():
        shutil.copy(src / "README.md", dst / "README.md")


def _seconds(text: str) -> float:
    """``"3 min 48 s"`` / ``"1 h 02 min"`` / ``"12 s"`` -> seconds."""
    total = 0.0
    for value, unit in re.findall(r"(\d+) (h|min|s)\b", text):
        total += int(value) * {"h": 3600, "min": 60, "s": 1}[unit]
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--budget-minutes", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="xray-train-plan-") as tmp:
        sub = Path(tmp) / "data"
        _subset(Path(args.data), sub, args.n)
        cmd = [sys.executable, "-m", "auditor", "train", "surrogates", "--data", str(sub), "--out", f"{tmp}/zoo"]
        cmd += ["--budget-minutes", str(args.budget_minutes), "--patience", "100", "--n-boot", "100", "--device", "cpu"]
        t0 = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        wall = time.perf_counter() - t0
    print(run.stderr)
    print(run.stdout)
    estimate = next(_seconds(line) for line in run.stderr.splitlines() if "estimate: at most" in line)
    print(f"host: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"plan estimate {estimate:.0f} s, wall time {wall:.0f} s, actual/estimate {wall / estimate:.2f}")


if __name__ == "__main__":
    main()
