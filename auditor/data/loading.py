"""Chest X-ray data sets: discover samples, load grey images in [0, 1], fingerprint.

Supported layouts (``fmt="auto"`` picks one):

* ``folder``   -- ``root/<class>/<image>``; a ``MANIFEST.csv`` at the root with
  ``path``/``file`` and ``patient_id`` columns, if present, supplies patient ids;
* ``csv``      -- a CSV manifest with ``path`` (or ``file``) and ``label`` columns and
  an optional ``patient_id``; paths are relative to the CSV's folder;
* ``nih``      -- NIH ChestX-ray14 ``Data_Entry_2017.csv`` (``Image Index``,
  ``Finding Labels``, ``Patient ID``) with a finding->class mapping; images are
  looked up beside the table or in ``images/``;
* DICOM files (``.dcm`` or ``DICM`` magic) may appear in any layout; they are
  decoded and made grey by :mod:`auditor.data.dicom`.

Unreadable files are never dropped silently: they come back as
:class:`~auditor.types.Skipped` with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor.errors import DataError, UsageError
from auditor.hashing import sha256_file
from auditor.types import Sample, Skipped

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
#: images above this many pixels are refused (a decompression-bomb guard)
MAX_PIXELS = 64_000_000
DEFAULT_FINDING_MAP = {"No Finding": "normal", "Pneumonia": "pneumonia", "Pneumothorax": "pneumothorax"}


class ImageReadError(Exception):
    """An image file cannot be used; the message is the reason."""


@dataclass(frozen=True)
class Dataset:
    """The samples of a data set, how they were found, and what was skipped while indexing."""

    root: str
    format: str
    samples: tuple[Sample, ...]
    skipped: tuple[Skipped, ...] = ()
    caveats: tuple[str, ...] = ()

    @property
    def labels(self) -> list[str]:
        """Labels of the samples, in order."""
        return [s.label for s in self.samples]

    def per_class(self) -> dict[str, int]:
        """Number of samples per label (sorted by label)."""
        return dict(sorted(Counter(self.labels).items()))


OUTSIDE_ROOT = "outside the data root"


def _inside(real: str, base: str) -> bool:
    """True when the real path ``real`` is ``base`` or lies below it."""
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


@dataclass
class _Walk:
    root: str  #: real path of the data root
    classes: dict[str, str] = field(default_factory=dict)  #: real path of each class folder -> class name
    seen: set[str] = field(default_factory=set)
    skipped: list[Skipped] = field(default_factory=list)


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _folder_refusal(real: str, own_class: str, state: _Walk) -> str | None:
    """Why a (linked) sub-folder whose real location is ``real`` must not be walked, or None."""
    if not _inside(real, state.root):
        return OUTSIDE_ROOT
    if _inside(own_class, real):
        return "symlink loop: leads back to a parent folder"
    other = next((name for base, name in state.classes.items() if base != own_class and _inside(real, base)), None)
    if other is not None:
        return f"symlink into the class folder {other!r} (its images would be relabelled)"
    if real in state.seen:
        return "symlink loop: folder already visited"
    return None


def _walk_images(folder: Path, state: _Walk, own_class: str | None = None) -> list[Path]:
    """Image files below ``folder``, following symlinks that stay inside the data root and its class.

    ``own_class`` is the real path of the class folder being walked (``None``
    for the class folder itself). Links leaving the data root, leading back up,
    or into another class folder are skipped with the reason.
    """
    out: list[Path] = []
    real = os.path.realpath(folder)
    if own_class is None:
        own_class = real
    else:
        reason = _folder_refusal(real, own_class, state)
        if reason:
            state.skipped.append(Skipped(str(folder), reason, "image"))
            return out
    state.seen.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        state.skipped.append(Skipped(str(folder), f"cannot list folder ({exc.strerror})", "image"))
        return out
    for e in entries:
        p = Path(e.path)
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir(follow_symlinks=True):
                out.extend(_walk_images(p, state, own_class))
            elif e.is_file(follow_symlinks=True):
                if not (p.suffix.lower() in IMAGE_EXTS or _is_dicom(p)):
                    continue
                if not _inside(os.path.realpath(p), state.root):
                    state.skipped.append(Skipped(str(p), OUTSIDE_ROOT, "image"))
                    continue
                out.append(p)
            elif e.is_symlink():
                state.skipped.append(Skipped(str(p), "broken symlink", "image"))
        except OSError as exc:  # ELOOP on self-referencing links
            state.skipped.append(Skipped(str(p), f"cannot stat ({exc.strerror or exc})", "image"))
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None


def _patient_ids_from_manifest(root: Path) -> dict[str, str]:
    man = root / "MANIFEST.csv"
    if not man.is_file():
        return {}
    rows = _read_csv(man)
    out = {}
    for r in rows:
        rel = r.get("path") or r.get("file")
        pid = (r.get("patient_id") or "").strip()
        if rel and pid:
            out[Path(rel).as_posix()] = pid
    return out


def _folder_dataset(root: Path) -> Dataset:
    state = _Walk(os.path.realpath(root))
    classes = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    pids = _patient_ids_from_manifest(root)
    samples = []
    walkable = []
    for cdir in classes:
        real = os.path.realpath(cdir)
        if not _inside(real, state.root) or real == state.root:
            state.skipped.append(Skipped(str(cdir), OUTSIDE_ROOT if real != state.root else
                                         "symlink loop: class folder is the data root", "image"))
        elif real in state.classes:
            state.skipped.append(Skipped(str(cdir), f"same folder as class {state.classes[real]!r}", "image"))
        else:
            state.classes[real] = cdir.name
            walkable.append(cdir)
    state.seen.add(state.root)
    for cdir in walkable:
        for p in _walk_images(cdir, state):
            rel = p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name
            samples.append(Sample(path=str(p), label=cdir.name, rel_path=rel, patient_id=pids.get(rel)))
    return Dataset(str(root), "folder", tuple(samples), tuple(state.skipped))


def _resolve_rel(base: Path, rel: str, skipped: list[Skipped], allow_outside_root: bool = False) -> Path | None:
    p = Path(rel)
    full = p if p.is_absolute() else base / p
    if not full.exists():
        skipped.append(Skipped(rel, "file listed in the manifest does not exist", "image"))
        return None
    if not allow_outside_root and not _inside(os.path.realpath(full), os.path.realpath(base)):
        skipped.append(Skipped(rel, f"{OUTSIDE_ROOT} ({base}; --allow-outside-root permits it)", "image"))
        return None
    return full


def _csv_dataset(csv_path: Path, images_dir: Path | None, allow_outside_root: bool = False) -> Dataset:
    rows = _read_csv(csv_path)
    if not rows:
        raise DataError(f"{csv_path}: manifest has no rows")
    cols = set(rows[0])
    if {"Image Index", "Finding Labels"} <= cols:
        return _nih_dataset(csv_path, rows, images_dir, DEFAULT_FINDING_MAP, allow_outside_root)
    pcol = "path" if "path" in cols else "file" if "file" in cols else None
    if pcol is None or "label" not in cols:
        names = sorted(str(c) for c in cols if c is not None)  # None: cells beyond the header
        raise DataError(f"{csv_path}: manifest needs 'path' (or 'file') and 'label' columns, has {names}")
    base = images_dir or csv_path.parent
    skipped: list[Skipped] = []
    samples = []
    for r in rows:
        rel, label = (r.get(pcol) or "").strip(), (r.get("label") or "").strip()
        if not rel or not label:
            skipped.append(Skipped(rel or "<empty>", "manifest row without path or label", "image"))
            continue
        full = _resolve_rel(base, rel, skipped, allow_outside_root)
        if full is not None:
            samples.append(Sample(str(full), label, rel, (r.get("patient_id") or "").strip() or None))
    return Dataset(str(csv_path), "csv", tuple(samples), tuple(skipped))


def _nih_dataset(table: Path, rows: list[dict[str, str]], images_dir: Path | None,
                 finding_map: dict[str, str], allow_outside_root: bool = False) -> Dataset:
    base = images_dir or (table.parent / "images" if (table.parent / "images").is_dir() else table.parent)
    skipped: list[Skipped] = []
    samples = []
    fmap = {k.lower(): v for k, v in finding_map.items()}
    for r in rows:
        name = (r.get("Image Index") or "").strip()
        findings = [f.strip() for f in (r.get("Finding Labels") or "").split("|") if f.strip()]
        mapped = {fmap[f.lower()] for f in findings if f.lower() in fmap}
        if not mapped:
            continue  # findings outside the mapping are not part of this audit
        if len(mapped) > 1:
            skipped.append(Skipped(name, f"findings {'|'.join(findings)} map to several classes", "image"))
            continue
        full = base / name
        if not full.exists():
            skipped.append(Skipped(name, "listed in the NIH table but not found", "image"))
            continue
        if not allow_outside_root and not _inside(os.path.realpath(full), os.path.realpath(base)):
            skipped.append(Skipped(name, f"{OUTSIDE_ROOT} ({base}; --allow-outside-root permits it)", "image"))
            continue
        samples.append(Sample(str(full), mapped.pop(), name, (r.get("Patient ID") or "").strip() or None))
    return Dataset(str(table), "nih", tuple(samples), tuple(skipped))


def open_dataset(root: str | Path, fmt: str = "auto", images_dir: str | Path | None = None,
                 finding_map: dict[str, str] | None = None, allow_outside_root: bool = False) -> Dataset:
    """Index a data set; images are not decoded yet.

    ``root`` is a folder (``folder`` layout) or a CSV (manifest or NIH table).
    Confinement: a file or folder whose real location (symlinks resolved) is
    outside the data root -- the folder, or for a CSV its ``images_dir`` or
    its own folder -- is skipped with the reason ``outside the data root``.
    ``allow_outside_root`` lifts that for CSV/NIH manifests only. In a folder,
    links back up the tree or into another class folder are skipped too.
    """
    p = Path(root)
    if not p.exists():
        raise DataError(f"{p}: data path not found")
    img_dir = Path(images_dir) if images_dir else None
    if fmt == "auto":
        fmt = "folder" if p.is_dir() else "csv"
    if fmt == "folder":
        if not p.is_dir():
            raise DataError(f"{p}: not a folder")
        ds = _folder_dataset(p)
    elif fmt in ("csv", "nih"):
        if not p.is_file():
            raise DataError(f"{p}: not a CSV file")
        if fmt == "nih":
            ds = _nih_dataset(p, _read_csv(p), img_dir, finding_map or DEFAULT_FINDING_MAP, allow_outside_root)
        else:
            ds = _csv_dataset(p, img_dir, allow_outside_root)
    else:
        raise DataError(f"unknown data format {fmt!r}; use auto, folder, csv or nih")
    if not ds.samples:
        raise DataError(f"{p}: no images found")
    return ds


# --------------------------------------------------------------------------- images
def _require_finite(arr: np.ndarray) -> None:
    """Raise :class:`ImageReadError` when pixels are NaN or infinite (checked *before* any normalisation,
    which would otherwise turn them into a plausible-looking image)."""
    bad = arr.size - int(np.isfinite(arr).sum())
    if bad:
        raise ImageReadError(f"image holds {bad} NaN or infinite pixel value(s)")


def _read_dicom(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Grey frame and conversion notes of a DICOM file (see :mod:`auditor.data.dicom`)."""
    from auditor.data.dicom import read_dicom

    dcm = read_dicom(path)
    _require_finite(dcm.image)
    return dcm.image, dcm.notes


def _read_raster(path: Path) -> np.ndarray:
    from PIL import Image, ImageFile, UnidentifiedImageError

    # WeasyPrint switches Pillow's global LOAD_TRUNCATED_IMAGES on when it is imported;
    # a truncated radiograph must be reported, not silently padded with grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageReadError(f"image is {w}x{h}, above the limit of {MAX_PIXELS} pixels")
            if w < 8 or h < 8:
                raise ImageReadError(f"image is {w}x{h}, too small")
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                maxv = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
                return np.clip(arr / maxv, 0, 1).astype(np.float32)
            if mode == "F":
                arr = np.asarray(im, dtype=np.float32)
                _require_finite(arr)
                lo, hi = float(arr.min()), float(arr.max())
                return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            if mode != "L":
                im = im.convert("L")
            return np.asarray(im, dtype=np.float32) / 255.0
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not a recognised image format") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"image above the limit of {MAX_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image ({' '.join(str(exc).split())})") from None


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (area filter when shrinking)."""
    import cv2

    th, tw = size
    h, w = img.shape
    target = tw / th
    if abs(w / h - target) > 1e-3:
        if w / h > target:
            nw = max(1, round(h * target))
            x0 = (w - nw) // 2
            img = img[:, x0 : x0 + nw]
        else:
            nh = max(1, round(w / target))
            y0 = (h - nh) // 2
            img = img[y0 : y0 + nh, :]
    if img.shape != (th, tw):
        interp = cv2.INTER_AREA if img.shape[0] > th else cv2.INTER_LINEAR
        img = cv2.resize(img, (tw, th), interpolation=interp)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as float32 grey ``(H, W)`` in ``[0, 1]``; raises :class:`ImageReadError`."""
    return load_image_noted(path, size)[0]


def load_image_noted(path: str | Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Like :func:`load_image`, plus the conversions applied (colour to grey, frame choice, ...)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ImageReadError("file not found")
    except OSError as exc:
        raise ImageReadError(f"cannot stat ({exc.strerror or exc})") from None
    img, notes = _read_dicom(p) if _is_dicom(p) else (_read_raster(p), ())
    if not np.isfinite(img).all():
        raise ImageReadError("image holds NaN or infinite values")
    return (_fit(img, size) if size else img), notes


def load_images(samples, size: tuple[int, int], progress=None,
                notes: dict[str, list[str]] | None = None) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Decode samples into an ``(N, 1, H, W)`` float32 batch.

    Returns the batch of the readable images, their indices into ``samples`` and
    the :class:`Skipped` entries of the others. ``progress(1)`` is called per image.
    If ``notes`` is a dict, the conversions applied to each image that needed one
    (colour to grey, frame of a multi-frame DICOM, ...) are stored in it by name.
    """
    arrs, kept, skipped = [], [], []
    for i, s in enumerate(samples):
        path = s.path if isinstance(s, Sample) else str(s)
        name = getattr(s, "rel_path", "") or path
        try:
            img, img_notes = load_image_noted(path, size)
            arrs.append(img)
            kept.append(i)
            if img_notes and notes is not None:
                notes[name] = list(img_notes)
        except ImageReadError as exc:
            skipped.append(Skipped(name, str(exc), "image"))
        if progress:
            progress(1)
    h, w = size
    batch = np.stack(arrs)[:, None] if arrs else np.zeros((0, 1, h, w), np.float32)
    return batch.astype(np.float32), kept, skipped


# --------------------------------------------------------------------------- fingerprint, labels, sampling
file_sha256 = sha256_file


def fingerprint(samples) -> tuple[list[Sample], str]:
    """Samples with their SHA-256 filled in, and the manifest hash.

    The manifest is one line ``rel_path<TAB>label<TAB>sha256`` per image, sorted;
    its SHA-256 identifies the data set independently of where it lies on disk.
    """
    out = []
    for s in samples:
        digest = s.sha256 or file_sha256(s.path)
        out.append(Sample(s.path, s.label, s.rel_path, s.patient_id, digest))
    lines = sorted(f"{s.rel_path}\t{s.label}\t{s.sha256}\n" for s in out)
    return out, hashlib.sha256("".join(lines).encode()).hexdigest()


def drop_duplicates(samples) -> tuple[list[int], list[Skipped]]:
    """Indices of the samples to keep (first of each SHA-256) and a :class:`Skipped` per exact duplicate.

    ``samples`` must carry their SHA-256 (see :func:`fingerprint`). The same
    content listed twice (a copy, a link, a repeated manifest row) is scored
    once. The same content under two labels is a :class:`DataError` naming
    both paths: the ground truth is contradictory and no verdict can stand.
    """
    first: dict[str, Sample] = {}
    keep: list[int] = []
    dups: list[Skipped] = []
    for i, s in enumerate(samples):
        if not s.sha256:
            raise ValueError("drop_duplicates needs fingerprinted samples")
        seen = first.get(s.sha256)
        if seen is None:
            first[s.sha256] = s
            keep.append(i)
        elif seen.label != s.label:
            raise DataError(f"the same image (SHA-256 {s.sha256[:12]}...) is labelled {seen.label!r} as "
                            f"{seen.rel_path or seen.path} and {s.label!r} as {s.rel_path or s.path}")
        else:
            dups.append(Skipped(s.rel_path or s.path, f"exact duplicate of {seen.rel_path or seen.path} "
                                f"(same SHA-256): counted once", "image"))
    return keep, dups


#: ``--label-map LABEL=-`` drops every image of that data label from the scan
DROP = "-"


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"Normal=no finding,PTX=pneumothorax,other=-"`` -> {"normal": "no finding", "ptx": "pneumothorax", "other": "-"}.

    A target of :data:`DROP` (``-``) drops that data label (see :func:`drop_labels`).
    """
    out: dict[str, str] = {}
    if not text:
        return out
    for part in text.split(","):
        if not part.strip():
            continue
        a, sep, b = part.partition("=")  # the FIRST '=': a model class may contain '='
        if not sep or not a.strip() or not b.strip():
            raise UsageError(f"--label-map entry {part!r} is not DATA_LABEL=MODEL_CLASS")
        out[a.strip().lower()] = b.strip()
    return out


def map_labels(labels: list[str], class_names: tuple[str, ...], label_map: dict[str, str] | None = None) -> np.ndarray:
    """Dataset labels -> model class indices, by name, case-insensitively.

    Raises :class:`DataError` naming the labels that match no model class.
    """
    index = {c.lower(): i for i, c in enumerate(class_names)}
    lmap = {k.lower(): v for k, v in (label_map or {}).items()}
    out = np.empty(len(labels), dtype=np.int64)
    missing: set[str] = set()
    for i, lab in enumerate(labels):
        name = lmap.get(lab.lower(), lab).lower()
        if name not in index:
            missing.add(lab)
            out[i] = -1
        else:
            out[i] = index[name]
    if missing:
        if len(missing) == len(set(labels)):
            raise DataError(
                f"no data label matches a model class: data has {sorted(set(labels))}, model has {list(class_names)} "
                "(use --label-map DATA=MODEL or --labels)"
            )
        raise DataError(f"data labels {sorted(missing)} match no model class {list(class_names)} (use --label-map)")
    return out


def drop_labels(labels: list[str], label_map: dict[str, str] | None) -> tuple[list[int], dict[str, int]]:
    """Indices of the labels kept, and {data label: images dropped} for labels mapped to :data:`DROP`."""
    drop = {k.lower() for k, v in (label_map or {}).items() if v.strip() == DROP}
    kept, dropped = [], {}
    for i, lab in enumerate(labels):
        if lab.lower() in drop:
            dropped[lab] = dropped.get(lab, 0) + 1
        else:
            kept.append(i)
    return kept, dropped


def stratified_subset(labels: list[str], max_images: int, seed: int) -> list[int]:
    """Indices of a seeded, class-stratified subset of at most ``max_images`` (sorted)."""
    n = len(labels)
    if max_images >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    classes = sorted(by_class)
    quota = {c: max(1, int(np.floor(max_images * len(by_class[c]) / n))) for c in classes}
    # hand out what is left by the largest remainders, deterministically
    while sum(quota.values()) < max_images:
        rem = sorted(classes, key=lambda c: (-(max_images * len(by_class[c]) / n - quota[c]), c))
        for c in rem:
            if sum(quota.values()) >= max_images:
                break
            if quota[c] < len(by_class[c]):
                quota[c] += 1
    while sum(quota.values()) > max_images:
        c = max(classes, key=lambda c: (quota[c], c))
        quota[c] -= 1
    chosen: list[int] = []
    for c in classes:
        idx = np.array(by_class[c])
        k = min(quota[c], len(idx))
        chosen.extend(rng.choice(idx, size=k, replace=False).tolist())
    return sorted(chosen)
