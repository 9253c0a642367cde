"""Shared pieces of the training recipes: data, patient-wise split, run folders.

* :func:`load_training_data` -- an image folder/CSV through :mod:`auditor.data`,
  decoded to ``(N, 1, H, W)`` float32 in ``[0, 1]``, fingerprinted, checked;
* :func:`patient_split` -- 60/20/20 train/val/test, stratified by class and
  grouped by patient (seed 42 by default);
* :class:`RunDir` -- an output folder that knows which model it holds, refuses
  to mix models, and keeps an atomically written per-epoch training state.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from auditor.atomic import write_atomic
from auditor.attack_eta import format_duration
from auditor.errors import DataError, UsageError
from auditor.types import Skipped

#: files a run folder may hold; ``--overwrite`` removes exactly these
RUN_FILES = ("run.json", "state.pt", "model.onnx", "model.pt", "model_card.md", "model_card.json", "history.json")
#: seconds between progress lines of a long step when stderr is not a terminal (no bar drawn)
HEARTBEAT_SECONDS = 30.0
MIN_PER_CLASS = 5  # 60/20/20 needs at least one image of every class in every part

PATIENT_CAVEAT = (
    "samples without a patient id are treated as their own patient; where one patient has several "
    "unlabelled films (e.g. the SIIM pneumothorax images, whose NIH patient is unknown) the split can "
    "leak that patient across train/val/test"
)


def show_bars(quiet: bool, progress: bool | None) -> bool:
    """Progress bars only on a terminal (stderr) and when not quiet."""
    if quiet:
        return False
    return sys.stderr.isatty() if progress is None else bool(progress)


def log(message: str, quiet: bool = False) -> None:
    """One status line on stderr unless quiet."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


class Heartbeat:
    """Progress lines on stderr at a steady interval, for logs: where no progress bar is drawn (stderr is
    not a terminal), a long loop still says every ``interval`` seconds how far it is and how long is left.

    Call it with the number of items done so far; it prints at most one line per ``interval``.
    """

    def __init__(
        self,
        label: str,
        total: int,
        interval: float,
        enabled: bool = True,
        unit: str = "batches",
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = log,
    ) -> None:
        self.label, self.total, self.interval, self.unit = label, int(total), float(interval), unit
        self.enabled = bool(enabled) and self.interval > 0 and self.total > 0
        self.clock, self.say = clock, say
        self.start = self.last = clock()
        self.lines = 0

    def __call__(self, done: int) -> None:
        """Print a line if ``interval`` seconds passed since the last one (or the start)."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self.last < self.interval or done <= 0:
            return
        self.last = now
        self.lines += 1
        rate = (now - self.start) / done
        left = rate * max(self.total - done, 0)
        self.say(
            f"{self.label}: {done}/{self.total} {self.unit} ({100 * done / self.total:.0f}%), "
            f"{rate:.2f} s each, about {format_duration(left)} left"
        )


# --------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """Decoded images of a data set with everything the recipes and model cards need."""

    images: np.ndarray  #: (N, 1, H, W) float32 in [0, 1]
    labels: np.ndarray  #: (N,) int64 class indices into class_names
    class_names: tuple[str, ...]
    patient_ids: list[str | None]
    rel_paths: list[str]
    root: str
    manifest_sha256: str
    skipped: list[Skipped] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    def per_class(self, idx: Iterable[int] | None = None) -> dict[str, int]:
        """Images per class name (optionally of a subset)."""
        lab = self.labels if idx is None else self.labels[np.asarray(list(idx), dtype=np.int64)]
        c = Counter(int(v) for v in lab)
        return {name: int(c.get(i, 0)) for i, name in enumerate(self.class_names)}

    def describe(self) -> dict[str, Any]:
        """What a model card and run.json record about the data: root, manifest hash, counts, skips, caveats."""
        return {
            "root": self.root,
            "manifest_sha256": self.manifest_sha256,
            "n_images": int(len(self.labels)),
            "per_class": self.per_class(),
            "skipped": [x.to_dict() for x in self.skipped],
            "caveats": self.caveats,
        }

    def groups(self) -> list[str]:
        """Split groups: the patient id, or the image itself when the id is unknown."""
        return [p if p else f"image:{r}" for p, r in zip(self.patient_ids, self.rel_paths)]


def load_training_data(
    root: str | Path,
    image_size: int,
    class_names: Iterable[str] | None = None,
    quiet: bool = False,
    progress: bool | None = None,
    allow_outside_root: bool = False,
) -> TrainData:
    """Index, fingerprint and decode a data set for training.

    A CSV manifest may list images outside its own folder only with
    ``allow_outside_root`` (``--allow-outside-root``), as for ``scan``.

    Unreadable images are skipped and listed (``TrainData.skipped``). Raises a
    one-line :class:`DataError` for a single class, too few images per class for
    a 60/20/20 split, or a class missing from ``class_names``.
    """
    from auditor.data import fingerprint, load_images, open_dataset

    ds = open_dataset(root, allow_outside_root=allow_outside_root)
    samples, manifest_sha = fingerprint(ds.samples)
    names = tuple(class_names) if class_names else tuple(sorted({s.label for s in samples}))
    lower = {n.lower(): i for i, n in enumerate(names)}
    unknown = sorted({s.label for s in samples if s.label.lower() not in lower})
    if unknown:
        raise DataError(f"{root}: labels {unknown} are not among the classes {list(names)}")
    if len(names) < 2:
        raise DataError(f"{root}: only one class ({names[0] if names else 'none'}); training needs at least two")
    bar = None
    if show_bars(quiet, progress):
        from tqdm import tqdm

        bar = tqdm(total=len(samples), desc="decode", unit="img", leave=False, file=sys.stderr)
    beat = Heartbeat("decode", len(samples), HEARTBEAT_SECONDS, enabled=bar is None and not quiet, unit="images")
    decoded = [0]

    def advance(n: int) -> None:
        if bar is not None:
            bar.update(n)
        decoded[0] += n
        beat(decoded[0])

    try:
        images, kept, skipped = load_images(samples, (image_size, image_size), progress=advance)
    finally:
        if bar:
            bar.close()
    kept_samples = [samples[i] for i in kept]
    labels = np.asarray([lower[s.label.lower()] for s in kept_samples], dtype=np.int64)
    data = TrainData(
        images=images,
        labels=labels,
        class_names=names,
        patient_ids=[s.patient_id or None for s in kept_samples],
        rel_paths=[s.rel_path or s.path for s in kept_samples],
        root=str(Path(root).resolve()),
        manifest_sha256=manifest_sha,
        skipped=list(ds.skipped) + list(skipped),
    )
    counts = data.per_class()
    short = {k: v for k, v in counts.items() if v < MIN_PER_CLASS}
    if short:
        desc = ", ".join(f"{k}={v}" for k, v in short.items())
        raise DataError(
            f"{root}: too few readable images for a 60/20/20 split ({desc}; need {MIN_PER_CLASS} per class)"
        )
    no_pid = Counter(data.class_names[int(lab)] for lab, p in zip(labels, data.patient_ids) if not p)
    if no_pid:
        desc = ", ".join(f"{k}: {v}" for k, v in sorted(no_pid.items()))
        data.caveats.append(f"no patient id for {sum(no_pid.values())} images ({desc}); {PATIENT_CAVEAT}")
    if data.skipped:
        data.caveats.append(f"{len(data.skipped)} unreadable or unusable files were skipped (listed in the model card)")
    return data


@dataclass(frozen=True)
class Split:
    """Indices of the train/val/test parts."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    seed: int

    def describe(self, data: TrainData) -> dict[str, Any]:
        """JSON summary for the model card."""
        g = data.groups()
        return {
            "method": self.method,
            "seed": self.seed,
            "fractions": [0.6, 0.2, 0.2],
            "counts": {part: data.per_class(getattr(self, part)) for part in ("train", "val", "test")},
            "patients": {part: len({g[i] for i in getattr(self, part)}) for part in ("train", "val", "test")},
        }


def patient_split(labels: np.ndarray, groups: list[str], seed: int = 42) -> Split:
    """60/20/20 split, stratified by class, never putting one group (patient) on two sides.

    Uses scikit-learn's ``StratifiedGroupKFold``: one fold of five as the test
    part, then one fold of four of the rest as validation. Raises DataError
    when a part would miss a class.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    gid = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1]
    idx = np.arange(len(labels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class" when a class has few groups
        outer = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
        rest, test = next(outer.split(idx, labels, gid))
        inner = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=seed)
        tr, va = next(inner.split(rest, labels[rest], gid[rest]))
    train, val = rest[tr], rest[va]
    k = int(labels.max()) + 1
    for name, part in (("train", train), ("validation", val), ("test", test)):
        missing = sorted(set(range(k)) - set(labels[part].tolist()))
        if missing:
            raise DataError(
                f"the patient-wise split leaves class index(es) {missing} out of the {name} part; "
                "add images (or patients) of that class"
            )
    return Split(np.sort(train), np.sort(val), np.sort(test), "StratifiedGroupKFold(patient) 60/20/20", seed)


# --------------------------------------------------------------------------- run folders
def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through :func:`auditor.atomic.write_atomic` (complete file or none)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


class RunDir:
    """An output folder holding one model, identified by ``identity`` (recipe, arch, data, size, ...).

    * a folder holding a *different* model is refused unless ``overwrite``;
    * ``resume`` needs a saved state of the *same* model;
    * ``state.pt`` is written atomically after every epoch.
    """

    def __init__(
        self, path: str | Path, identity: dict[str, Any], *, overwrite: bool = False, resume: bool = False
    ) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity, sort_keys=True))
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"{self.path}: output path exists and is not a folder")
        run_json = self.path / "run.json"
        existing = None
        if run_json.is_file():
            try:
                existing = json.loads(run_json.read_text(encoding="utf-8")).get("identity")
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, AttributeError):
                existing = {"unreadable": True}
        elif self.path.is_dir() and any(self.path.glob("*.onnx")):
            existing = {"unknown": True}
        same = existing == self.identity
        if existing is not None and not same and not overwrite:
            diff = sorted(k for k in set(existing) | set(self.identity) if existing.get(k) != self.identity.get(k))
            raise UsageError(
                f"{self.path}: holds a different model (differs in {', '.join(diff[:4])}); "
                "use --overwrite or another --out"
            )
        if overwrite and existing is not None and not (resume and same):
            self._clear()
        if resume and not self.state_path.is_file():
            raise UsageError(f"{self.path}: --resume given but there is no training state (state.pt) to resume")
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(run_json, json.dumps({"identity": self.identity}, indent=2, sort_keys=True) + "\n")

    def _clear(self) -> None:
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for extra in self.path.glob("*.onnx"):
            extra.unlink()
        shutil.rmtree(self.path / "tmp", ignore_errors=True)

    @property
    def state_path(self) -> Path:
        """Where the per-epoch training state lives."""
        return self.path / "state.pt"

    def save_state(self, state: dict[str, Any]) -> None:
        """Atomically write the training state (plain tensors/numbers/strings only)."""
        atomic_torch_save(state, self.state_path)

    def load_state(self) -> dict[str, Any] | None:
        """The saved training state, or None."""
        import torch

        if not self.state_path.is_file():
            return None
        try:
            return torch.load(self.state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign file
            raise UsageError(
                f"{self.state_path}: cannot read the training state ({type(exc).__name__}); "
                "use --overwrite to start again"
            ) from None


def progress_bar(total: int, desc: str, enabled: bool) -> tuple[Callable[[int], None], Callable[[], None]]:
    """(advance, close) of a tqdm bar on stderr, or no-ops."""
    if not enabled or total <= 0:
        return (lambda n=1: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr, unit="batch")
    return (lambda n=1: bar.update(n)), bar.close
