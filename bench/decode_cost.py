"""Single-thread decode cost per image: the scan's reader (``load_image_noted``) against raw decoders.

Reads the first 300 JPEGs under FOLDER (e.g. an archive made by ``bench/scale.py``), best of 3 rounds:

    OMP_NUM_THREADS=1 python bench/decode_cost.py /tmp/xray-scale/archive_1000
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from auditor.data.decode import load_image_noted  # noqa: E402


def _rate(fn, n: int, label: str) -> None:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - t0)
    print(f"{label:45s} {n / best:8.0f} img/s  ({best / n * 1e3:.3f} ms/img)")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: bench/decode_cost.py FOLDER")
        return 2
    paths = sorted(Path(argv[0]).rglob("*.jpeg"))[:300]
    if not paths:
        print(f"skipped: no .jpeg under {argv[0]}")
        return 0
    data = [p.read_bytes() for p in paths]
    cv2.setNumThreads(1)
    n = len(paths)
    _rate(lambda i: load_image_noted(paths[i], (224, 224)), n, "load_image_noted (the scan's reader)")
    _rate(lambda i: np.asarray(Image.open(paths[i]).convert("L")), n, "Pillow open+decode+asarray")
    _rate(
        lambda i: cv2.imdecode(np.frombuffer(data[i], np.uint8), cv2.IMREAD_GRAYSCALE),
        n,
        "cv2.imdecode JPEG (bytes in memory)",
    )
    pngs = [
        cv2.imencode(".png", cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_GRAYSCALE))[1].tobytes() for d in data
    ]
    _rate(
        lambda i: cv2.imdecode(np.frombuffer(pngs[i], np.uint8), cv2.IMREAD_UNCHANGED),
        n,
        "cv2.imdecode PNG (same images as 8-bit PNG)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
