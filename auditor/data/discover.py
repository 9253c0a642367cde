"""Chest X-ray data sets: discover the samples of a folder, a CSV manifest or an NIH table.

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

Images are not decoded here (:mod:`auditor.data.decode` does that). Files that
cannot be indexed are never dropped silently: they come back as
:class:`~auditor.types.Skipped` with the reason.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from auditor.data.decode import IMAGE_EXTS, is_dicom
from auditor.data.index import SampleIndex
from auditor.data.skips import SkipLog
from auditor.errors import DataError
from auditor.types import Sample, Skipped, printable

DEFAULT_FINDING_MAP = {"No Finding": "normal", "Pneumonia": "pneumonia", "Pneumothorax": "pneumothorax"}


@dataclass(frozen=True)
class Dataset:
    """The samples of a data set, how they were found, and what was skipped while indexing."""

    root: str
    format: str
    samples: SampleIndex  #: a sequence of :class:`Sample`, held as columns
    #: the first skipped entries and the count of all (:class:`~auditor.data.skips.SkipLog`)
    skipped: SkipLog = field(default_factory=SkipLog)
    caveats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.samples, SampleIndex):
            object.__setattr__(self, "samples", SampleIndex(self.samples))
        if not isinstance(self.skipped, SkipLog):
            object.__setattr__(self, "skipped", SkipLog(self.skipped))

    @property
    def labels(self) -> list[str]:
        """Labels of the samples, in order."""
        return self.samples.labels

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
    skipped: SkipLog = field(default_factory=SkipLog)


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


def _walk_images(folder: Path, state: _Walk, own_class: str | None = None) -> Iterator[Path]:
    """Image files below ``folder`` (yielded one at a time, in name order), following symlinks that stay
    inside the data root and its class.

    ``own_class`` is the real path of the class folder being walked (``None``
    for the class folder itself). Links leaving the data root, leading back up,
    or into another class folder are skipped with the reason.
    """
    real = os.path.realpath(folder)
    if own_class is None:
        own_class = real
    else:
        reason = _folder_refusal(real, own_class, state)
        if reason:
            state.skipped.append(Skipped(str(folder), reason, "image"))
            return
    state.seen.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        state.skipped.append(Skipped(str(folder), f"cannot list folder ({exc.strerror})", "image"))
        return
    for e in entries:
        p = Path(e.path)
        if e.name.startswith("."):
            continue
        try:
            if e.is_dir(follow_symlinks=True):
                yield from _walk_images(p, state, own_class)
            elif e.is_file(follow_symlinks=True):
                if not (p.suffix.lower() in IMAGE_EXTS or is_dicom(p)):
                    continue
                if not _inside(os.path.realpath(p), state.root):
                    state.skipped.append(Skipped(str(p), OUTSIDE_ROOT, "image"))
                    continue
                yield p
            elif e.is_symlink():
                state.skipped.append(Skipped(str(p), "broken symlink", "image"))
        except OSError as exc:  # ELOOP on self-referencing links
            state.skipped.append(Skipped(str(p), f"cannot stat ({exc.strerror or exc})", "image"))


def _read_csv(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a CSV file as dicts, read one at a time (a 112,120-row NIH table is never held whole
    as dicts); a file that cannot be read or parsed, at any row, is a :class:`DataError`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            yield from csv.DictReader(fh)
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
    samples = SampleIndex()
    walkable = []
    for cdir in classes:
        real = os.path.realpath(cdir)
        if not _inside(real, state.root) or real == state.root:
            state.skipped.append(
                Skipped(
                    str(cdir),
                    OUTSIDE_ROOT if real != state.root else "symlink loop: class folder is the data root",
                    "image",
                )
            )
        elif real in state.classes:
            state.skipped.append(Skipped(str(cdir), f"same folder as class {state.classes[real]!r}", "image"))
        else:
            state.classes[real] = printable(cdir.name)  # a label is a name reports carry
            walkable.append(cdir)
    state.seen.add(state.root)
    for cdir in walkable:
        for p in _walk_images(cdir, state):
            # the name reports and the manifest use; the path itself still opens a file whose name is not UTF-8
            rel = printable(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name)
            samples.append(Sample(path=str(p), label=printable(cdir.name), rel_path=rel, patient_id=pids.get(rel)))
    return Dataset(str(root), "folder", samples, state.skipped)


def _resolve_rel(base: Path, rel: str, skipped: SkipLog, allow_outside_root: bool = False) -> Path | None:
    # os.path, not Path, until the file is known to exist: pathlib interns every path part, which made
    # a million rows naming missing files grow the interpreter's intern table without bound
    full_text = rel if os.path.isabs(rel) else os.path.join(base, rel)
    if not os.path.exists(full_text):
        skipped.append(Skipped(rel, "file listed in the manifest does not exist", "image"))
        return None
    full = Path(full_text)
    if not allow_outside_root and not _inside(os.path.realpath(full), os.path.realpath(base)):
        skipped.append(Skipped(rel, f"{OUTSIDE_ROOT} ({base}; --allow-outside-root permits it)", "image"))
        return None
    return full


def _csv_dataset(csv_path: Path, images_dir: Path | None, allow_outside_root: bool = False) -> Dataset:
    rows = _read_csv(csv_path)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{csv_path}: manifest has no rows")
    cols = set(first)
    rows = itertools.chain([first], rows)
    if {"Image Index", "Finding Labels"} <= cols:
        return _nih_dataset(csv_path, rows, images_dir, DEFAULT_FINDING_MAP, allow_outside_root)
    pcol = "path" if "path" in cols else "file" if "file" in cols else None
    if pcol is None or "label" not in cols:
        names = sorted(str(c) for c in cols if c is not None)  # None: cells beyond the header
        raise DataError(f"{csv_path}: manifest needs 'path' (or 'file') and 'label' columns, has {names}")
    base = images_dir or csv_path.parent
    skipped = SkipLog()
    samples = SampleIndex()
    for r in rows:
        rel, label = (r.get(pcol) or "").strip(), (r.get("label") or "").strip()
        if not rel or not label:
            skipped.append(Skipped(rel or "<empty>", "manifest row without path or label", "image"))
            continue
        full = _resolve_rel(base, rel, skipped, allow_outside_root)
        if full is not None:  # names, labels and ids as reports and terminals can show them (no ANSI, ...)
            pid = printable((r.get("patient_id") or "").strip()) or None
            samples.append(Sample(str(full), printable(label), printable(rel), pid))
    return Dataset(str(csv_path), "csv", samples, skipped)


def _nih_dataset(
    table: Path,
    rows: Iterable[dict[str, str]],
    images_dir: Path | None,
    finding_map: dict[str, str],
    allow_outside_root: bool = False,
) -> Dataset:
    base = images_dir or (table.parent / "images" if (table.parent / "images").is_dir() else table.parent)
    skipped = SkipLog()
    samples = SampleIndex()
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
        full_text = os.path.join(base, name)  # os.path until it exists (see _resolve_rel)
        if not os.path.exists(full_text):
            skipped.append(Skipped(name, "listed in the NIH table but not found", "image"))
            continue
        full = Path(full_text)
        if not allow_outside_root and not _inside(os.path.realpath(full), os.path.realpath(base)):
            skipped.append(Skipped(name, f"{OUTSIDE_ROOT} ({base}; --allow-outside-root permits it)", "image"))
            continue
        pid = printable((r.get("Patient ID") or "").strip()) or None
        samples.append(Sample(str(full), mapped.pop(), printable(name), pid))
    return Dataset(str(table), "nih", samples, skipped)


def open_dataset(
    root: str | Path,
    fmt: str = "auto",
    images_dir: str | Path | None = None,
    finding_map: dict[str, str] | None = None,
    allow_outside_root: bool = False,
) -> Dataset:
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
