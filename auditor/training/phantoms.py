"""Procedural chest radiograph phantoms (SYNTHETIC; not medical images).

Each phantom is a frontal "chest film" drawn from a handful of primitives: a
dark background, the soft-tissue body outline with shoulders, two air-filled
(dark) lungs with branching vascular markings, ribs and clavicles, the spine
and mediastinum, the heart shadow, domed diaphragms, film noise and blur.
Brightness follows radiographic convention: dense tissue is bright, air dark.

Three classes:

* ``normal``       -- the anatomy above;
* ``pneumonia``    -- patchy consolidation: several soft brighter blotches with
  an irregular texture in one lung (usually a lower or middle zone);
* ``pneumothorax`` -- a peripheral (lateral/apical) region of one lung without
  lung markings and darker than the lung, behind a thin bright visceral
  pleural line.

Every image is deterministic from ``(seed, class, index)``
(:class:`numpy.random.SeedSequence`), independent of generation order. The
phantoms exist to exercise the pipeline (train -> export -> audit) without
patient data; a model trained on them says nothing about real radiographs.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("normal", "pneumonia", "pneumothorax")
_README = """# SYNTHETIC chest radiograph phantoms

These images were **generated procedurally** by `training/phantoms.py`
(xray-audit). They are NOT radiographs of any person and carry no medical
meaning. They exist only to demonstrate and test the xray-audit pipeline
(train a reference model, export ONNX, audit it).

* classes: normal, pneumonia (patchy consolidation), pneumothorax (peripheral
  region without lung markings behind a thin pleural line)
* images per class: {n}
* size: {size}x{size} px, 8-bit grey PNG
* seed: {seed} (the same seed gives the same pixels)
* MANIFEST.csv: path,label,patient_id (one synthetic "patient" per image)

Never use a model trained on these images on real patients.
"""


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Zero-mean, unit-std band-limited noise (white noise blurred with sigma = ``scale`` px)."""
    n: np.ndarray = rng.standard_normal((size, size)).astype(np.float32)  # (cv2 types its result loosely)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=max(scale, 0.3))
    return (n - n.mean()) / (n.std() + 1e-6)


def _lung_masks(
    size: int, rng: np.random.Generator, cx: float, cy: float, s: float
) -> tuple[np.ndarray, np.ndarray, list]:
    """Two lung fields (float masks in [0, 1]) and their geometry (centre, axes) in pixels."""
    masks, geom = [], []
    for side in (-1, 1):  # -1: image left (patient's right lung), +1: image right
        m = np.zeros((size, size), np.uint8)
        lx = cx + side * s * (0.21 + rng.uniform(-0.015, 0.015))
        ly = cy + s * (-0.02 + rng.uniform(-0.02, 0.02))
        ax = s * (0.15 + rng.uniform(-0.01, 0.015))
        ay = s * (0.30 + rng.uniform(-0.015, 0.02))
        if side == 1:  # the heart makes the left lung a little narrower
            ax *= 0.92
        cv2.ellipse(
            m,
            (int(round(lx * 16)), int(round(ly * 16))),
            (int(ax * 16), int(ay * 16)),
            0,
            0,
            360,
            255,
            -1,
            lineType=cv2.LINE_AA,
            shift=4,
        )
        masks.append(m.astype(np.float32) / 255.0)
        geom.append((lx, ly, ax, ay, side))
    return masks[0], masks[1], geom


def _draw_vessels(size: int, rng: np.random.Generator, geom: list) -> np.ndarray:
    """Branching vascular markings radiating from each hilum (thin, bright, fading outwards)."""
    canvas = np.zeros((size, size), np.float32)
    for lx, ly, ax, ay, side in geom:
        hx, hy = lx - side * ax * 0.55, ly + ay * 0.05
        for _ in range(int(rng.integers(7, 11))):
            ang = rng.uniform(-np.pi * 0.85, np.pi * 0.85) * 0.5 + (np.pi if side < 0 else 0.0)
            ang += rng.uniform(-0.3, 0.3)
            x, y, length, width = hx, hy, ax * rng.uniform(0.5, 0.9), 1.0
            for _step in range(5):
                nx, ny = x + np.cos(ang) * length / 5, y + np.sin(ang) * length / 5 * (ay / ax) * 0.6
                cv2.line(
                    canvas,
                    (int(x * 16), int(y * 16)),
                    (int(nx * 16), int(ny * 16)),
                    float(width * 0.5),
                    max(1, int(round(width * size / 256))),
                    cv2.LINE_AA,
                    shift=4,
                )
                x, y = nx, ny
                ang += rng.uniform(-0.35, 0.35)
                width *= 0.8
    return cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(0.5, size / 256))


def _draw_ribs(size: int, rng: np.random.Generator, cx: float, cy: float, s: float) -> np.ndarray:
    """Posterior rib arcs on both sides and the clavicles."""
    canvas = np.zeros((size, size), np.float32)
    thick = max(1, int(round(size / 64)))
    n_ribs = int(rng.integers(8, 11))
    top = cy - s * 0.33
    for side in (-1, 1):
        for k in range(n_ribs):
            # a posterior rib leaves the spine, arcs laterally and runs down the chest wall
            ax, ay = s * (0.24 + 0.004 * k), s * (0.10 + 0.006 * k)
            yy = top + k * s * 0.058 + rng.uniform(-0.004, 0.004) * s
            centre = (int((cx + side * s * 0.03) * 16), int((yy + ay) * 16))
            a0, a1 = (-90, -5) if side > 0 else (-175, -90)
            cv2.ellipse(canvas, centre, (int(ax * 16), int(ay * 16)), 0, a0, a1, 0.55, thick, cv2.LINE_AA, shift=4)
    for side in (-1, 1):  # clavicles
        p0 = (int((cx + side * s * 0.04) * 16), int((cy - s * 0.31) * 16))
        p1 = (int((cx + side * s * 0.30) * 16), int((cy - s * 0.37 + rng.uniform(-0.01, 0.01) * s) * 16))
        cv2.line(canvas, p0, p1, 0.7, thick + 1, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(canvas, (0, 0), sigmaX=max(0.6, size / 200))


def _body(size: int, cx: float, cy: float, s: float) -> np.ndarray:
    """Soft-tissue outline: trunk ellipse plus shoulders and neck."""
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(
        m,
        (int(cx * 16), int((cy + s * 0.05) * 16)),
        (int(s * 0.44 * 16), int(s * 0.52 * 16)),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        shift=4,
    )
    cv2.ellipse(
        m,
        (int(cx * 16), int((cy - s * 0.30) * 16)),
        (int(s * 0.47 * 16), int(s * 0.17 * 16)),
        0,
        180,
        360,
        255,
        -1,
        cv2.LINE_AA,
        shift=4,
    )
    cv2.rectangle(
        m, (int((cx - s * 0.08) * 16), 0), (int((cx + s * 0.08) * 16), int((cy - s * 0.3) * 16)), 255, -1, shift=4
    )
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), sigmaX=max(1.0, size / 80))


def _ellipse_mask(size: int, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(
        m,
        (int(cx * 16), int(cy * 16)),
        (max(1, int(ax * 16)), max(1, int(ay * 16))),
        angle,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        shift=4,
    )
    return m.astype(np.float32) / 255.0


def _mediastinum(size: int, rng: np.random.Generator, cx: float, cy: float, s: float) -> np.ndarray:
    """Soft mask of the heart (image right = patient's left) and the mediastinum."""
    heart = _ellipse_mask(
        size,
        cx + s * rng.uniform(0.05, 0.09),
        cy + s * rng.uniform(0.10, 0.14),
        s * rng.uniform(0.14, 0.18),
        s * rng.uniform(0.12, 0.15),
        rng.uniform(-25, -10),
    )
    medi = _ellipse_mask(size, cx, cy - s * 0.05, s * 0.075, s * 0.34)
    dense = np.clip(heart + medi, 0, 1)
    return cv2.GaussianBlur(dense, (0, 0), sigmaX=max(1.0, size / 70))


def _spine(size: int, cx: float, cy: float, s: float) -> np.ndarray:
    """Fourteen vertebral bodies down the midline, softly blurred, as a ``[0, 1]`` layer."""
    spine = np.zeros((size, size), np.float32)
    vh = s * 0.05
    for k in range(14):
        y = cy - s * 0.42 + k * vh
        cv2.rectangle(
            spine,
            (int((cx - s * 0.035) * 16), int(y * 16)),
            (int((cx + s * 0.035) * 16), int((y + vh * 0.8) * 16)),
            1.0,
            -1,
            cv2.LINE_AA,
            shift=4,
        )
    return cv2.GaussianBlur(spine, (0, 0), sigmaX=max(0.6, size / 150))


def _pneumonia(size: int, rng: np.random.Generator, geom: list, lungs: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The added density of a mottled consolidation in the lower zone of one lung."""
    lx, ly, ax, ay, side = geom[int(rng.integers(0, 2))]
    patch: np.ndarray = np.zeros((size, size), np.float32)  # (cv2 types its result loosely)
    zone_y = ly + ay * rng.uniform(-0.1, 0.55)
    for _ in range(int(rng.integers(4, 8))):
        px = lx + ax * rng.uniform(-0.55, 0.55)
        py = zone_y + ay * rng.uniform(-0.25, 0.25)
        patch += _ellipse_mask(
            size, px, py, ax * rng.uniform(0.2, 0.4), ay * rng.uniform(0.1, 0.22), rng.uniform(0, 180)
        )
    patch = cv2.GaussianBlur(np.clip(patch, 0, 1), (0, 0), sigmaX=max(1.0, size / 45))
    mottle = np.clip(0.75 + 0.35 * _smooth_noise(rng, size, size / 40), 0.2, 1.4)
    return patch * mottle * lungs * (1 - dense) * rng.uniform(0.28, 0.38)


def _pneumothorax(
    img: np.ndarray,
    markings: np.ndarray,
    size: int,
    rng: np.random.Generator,
    geom: list,
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """Collapse one lung: dark free air without markings (``markings`` is cleared in place) and the
    bright visceral pleural line; returns the new image."""
    lx, ly, ax, ay, side = geom[int(rng.integers(0, 2))]
    # the collapsed lung edge: an ellipse smaller than the lung, shifted to the hilum
    shrink = rng.uniform(0.55, 0.75)
    ex = lx - side * ax * (1 - shrink) * 0.9
    ey = ly + ay * (1 - shrink) * rng.uniform(0.2, 0.6)
    inner = _ellipse_mask(size, ex, ey, ax * shrink, ay * (shrink + 0.15))
    lung_i = left if side < 0 else right
    gap = np.clip(lung_i - inner, 0, 1)
    gap = cv2.GaussianBlur(gap, (0, 0), sigmaX=max(0.5, size / 200))
    markings *= 1 - gap  # no lung markings in the pleural space
    img -= gap * rng.uniform(0.07, 0.11)  # free air is darker than aerated lung
    edge = np.zeros((size, size), np.uint8)
    cv2.ellipse(
        edge,
        (int(ex * 16), int(ey * 16)),
        (int(ax * shrink * 16), int(ay * (shrink + 0.15) * 16)),
        0,
        0,
        360,
        255,
        max(1, int(round(size / 160))),
        cv2.LINE_AA,
        shift=4,
    )
    edge_f = cv2.GaussianBlur(edge.astype(np.float32) / 255.0, (0, 0), sigmaX=max(0.4, size / 300))
    return img + edge_f * np.clip(gap * 4, 0, 1) * rng.uniform(0.16, 0.22)


def _expose(img: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Exposure, contrast, scatter blur and quantum noise; clipped to ``[0, 1]``."""
    img = (img - 0.3) * rng.uniform(0.9, 1.15) + 0.3 + rng.uniform(-0.04, 0.04)
    img = cv2.GaussianBlur(img, (0, 0), sigmaX=rng.uniform(0.4, 0.8) * max(1.0, size / 256))
    img += rng.normal(0.0, rng.uniform(0.008, 0.018), img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def make_phantom(label: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """One phantom of class ``label`` as float32 ``(size, size)`` in ``[0, 1]``.

    ``rng`` supplies all randomness (pose, anatomy, pathology, noise).
    """
    if label not in CLASSES:
        raise ValueError(f"unknown phantom class {label!r}; known: {', '.join(CLASSES)}")
    s = size * rng.uniform(0.86, 0.98)  # body scale
    cx = size * (0.5 + rng.uniform(-0.03, 0.03))
    cy = size * (0.53 + rng.uniform(-0.03, 0.03))

    body = _body(size, cx, cy, s)
    img = 0.06 + body * rng.uniform(0.50, 0.60)
    left, right, geom = _lung_masks(size, rng, cx, cy, s)
    lungs = np.clip(left + right, 0, 1)
    lungs = cv2.GaussianBlur(lungs, (0, 0), sigmaX=max(0.8, size / 100))
    air_depth = rng.uniform(0.30, 0.38)
    img -= lungs * air_depth

    # lung texture (markings) and vessels; kept in a separate layer so a pneumothorax can erase it
    markings = (_smooth_noise(rng, size, size / 60) * 0.03 + _draw_vessels(size, rng, geom) * 0.30) * lungs

    dense = _mediastinum(size, rng, cx, cy, s)
    img = img * (1 - dense) + dense * (0.45 + rng.uniform(0.08, 0.14))
    markings *= 1 - dense  # the heart and mediastinum hide the lung behind them
    img += _spine(size, cx, cy, s) * 0.10

    ribs = _draw_ribs(size, rng, cx, cy, s) * body

    if label == "pneumonia":
        img += _pneumonia(size, rng, geom, lungs, dense)
    elif label == "pneumothorax":
        img = _pneumothorax(img, markings, size, rng, geom, left, right)

    img += markings + ribs * 0.14
    return _expose(img, rng, size)


def phantom_rng(seed: int, label: str, index: int) -> np.random.Generator:
    """The generator of image ``index`` of class ``label`` under ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), CLASSES.index(label), int(index)]))


def make_phantom_batch(n_per_class: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """In-memory phantoms: ``(3n, 1, size, size)`` float32 images and int labels (index into :data:`CLASSES`)."""
    imgs, labels = [], []
    for c, label in enumerate(CLASSES):
        for i in range(n_per_class):
            imgs.append(make_phantom(label, phantom_rng(seed, label, i), size))
            labels.append(c)
    return np.stack(imgs)[:, None], np.asarray(labels, dtype=np.int64)


def write_phantom_dataset(out_dir: str | Path, n_per_class: int, size: int = 128, seed: int = 0) -> Path:
    """Write ``out_dir/<class>/<class>_NNNN.png``, ``MANIFEST.csv`` (path,label,patient_id) and a README.

    Every image is its own synthetic patient (``synthetic-<class>-NNNN``).
    Returns the root folder.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    root = Path(out_dir)
    rows = []
    for label in CLASSES:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = make_phantom(label, phantom_rng(seed, label, i), size)
            rel = f"{label}/{label}_{i:04d}.png"
            u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".png", u8, [cv2.IMWRITE_PNG_COMPRESSION, 6])
            if not ok:  # pragma: no cover - opencv always encodes a uint8 grey image
                raise RuntimeError(f"cannot encode {rel}")
            (root / rel).write_bytes(buf.tobytes())
            rows.append((rel, label, f"synthetic-{label}-{i:04d}", hashlib.sha256(buf.tobytes()).hexdigest()))
    with open(root / "MANIFEST.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "patient_id", "sha256"])
        w.writerows(rows)
    (root / "README.md").write_text(_README.format(n=n_per_class, size=size, seed=seed), encoding="utf-8")
    return root
