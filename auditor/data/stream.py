"""Images as a stream: lazy image sets read batch by batch, and a prefetching batch loader.

A scan never holds a whole image set in memory. :class:`LazyImages` stands where an
``(N, 1, H, W)`` float32 array used to: it has ``len``, ``shape`` and ``dtype``, and
indexing (``x[a:b]``, ``x[index_array]``, ``x[i, 0]``) decodes just the images asked for.
:meth:`LazyImages.batches` walks the set in fixed batches with a bounded number of batches
decoded ahead on loader threads (OpenCV and Pillow release the GIL while decoding, so decoding
overlaps inference). ``np.asarray(x)`` still materialises the whole set; only code that
needs every image at once (the USMM mask pool, style-blend sets) does that.

Two sources: :class:`SampleImages` (data-set files, decoded and fitted to the model's size by
:func:`auditor.data.decode.load_image`) and :class:`PngImages` (8-bit PNGs of a cached
adversarial set, each checked against the SHA-256 recorded when it was written).
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from auditor.data.decode import exact_levels, from_levels, load_image_noted, on_8bit_grid
from auditor.data.limits import ImageReadError
from auditor.data.skips import SkipLog
from auditor.errors import DataError
from auditor.outcomes import TextColumn
from auditor.types import Skipped, printable

#: batches decoded ahead of the consumer (the loader's memory bound is ``(PREFETCH + 1)`` batches)
PREFETCH = 2
#: loader threads decoding those batches in parallel (decoding releases the GIL)
LOADER_THREADS = 2


_T = TypeVar("_T")


def prefetch(jobs: Iterable[Callable[[], _T]], depth: int = PREFETCH, threads: int = LOADER_THREADS) -> Iterator[_T]:
    """Run ``jobs`` (callables) on ``threads`` worker threads, at most ``depth`` ahead; yield their results in order.

    An exception raised by a job is raised here, in order. Unstarted jobs are cancelled when the
    consumer stops early.
    """
    if depth < 1:
        for job in jobs:
            yield job()
        return
    it = iter(jobs)
    pending: deque = deque()
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, depth)), thread_name_prefix="xray-audit-loader")
    finished = False
    try:
        for job in it:
            pending.append(pool.submit(job))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    finally:
        # Stopped early, the generator may be closed by the garbage collector in whatever thread it runs in (once
        # seen inside another thread's start-up): joining the workers there can deadlock, so they are left to end
        # on their own (their results are dropped). Run to the end, every job is done and the join is immediate.
        pool.shutdown(wait=finished, cancel_futures=True)


class LazyImages:
    """An ``(N, 1, H, W)`` float32 image set in ``[0, 1]`` that decodes images only when indexed."""

    dtype = np.dtype(np.float32)
    ndim = 4
    #: the checked SHA-256 of the whole set (:func:`stream_digest`), once known in this scan
    _stream_sha256: str | None = None

    def __init__(self, n: int, size: tuple[int, int]) -> None:
        self._n = int(n)
        self.size = (int(size[0]), int(size[1]))

    # -- to implement
    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 ``(H, W)``."""
        raise NotImplementedError

    # -- array protocol
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(N, 1, H, W)``, like the array it stands in for."""
        return (self._n, 1, *self.size)

    def __len__(self) -> int:
        return self._n

    def read_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Images ``indices`` as one ``(k, 1, H, W)`` float32 array."""
        out = np.empty((len(indices), 1, *self.size), np.float32)
        for j, i in enumerate(indices):
            out[j, 0] = self.read(int(i))
        return out

    def _rows(self, key) -> list[int] | int:
        if isinstance(key, (int, np.integer)):
            i = int(key) + (self._n if key < 0 else 0)
            if not 0 <= i < self._n:
                raise IndexError(f"image {key} out of range for {self._n} images")
            return i
        if isinstance(key, slice):
            return list(range(*key.indices(self._n)))
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (self._n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {self._n} images")
            return [int(i) for i in np.flatnonzero(idx)]
        return [int(i) + (self._n if i < 0 else 0) for i in idx.reshape(-1)]

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        rows = self._rows(key)
        if isinstance(rows, int):
            arr = self.read(rows)[None]
            return arr[rest] if rest else arr
        arr = self.read_batch(rows)
        return arr[(slice(None),) + rest] if rest else arr

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self.read_batch(range(self._n))
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __iter__(self):
        for i in range(self._n):
            yield self[i]

    def subset(self, indices: Sequence[int]) -> "LazyImages":
        """A lazy view of ``indices`` (in that order)."""
        return _Subset(self, [int(i) for i in indices])

    def batches(
        self, batch_size: int, depth: int = PREFETCH, transform: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, batch)`` for consecutive batches of ``batch_size`` images, decoded ``depth`` ahead.

        ``transform`` (a defense) runs on the loader thread too, after decoding.
        """
        return iter_batches(self, batch_size, depth, transform)


def iter_batches(
    images, batch_size: int, depth: int = PREFETCH, transform: Callable[[np.ndarray], np.ndarray] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Consecutive ``(start, batch)`` of an array or a :class:`LazyImages`, prefetched ``depth`` ahead."""
    n = len(images)
    bs = max(1, int(batch_size))

    def job(start: int) -> Callable[[], tuple[int, np.ndarray]]:
        def run() -> tuple[int, np.ndarray]:
            x = images[start : start + bs]
            return start, (transform(x) if transform is not None else np.asarray(x, dtype=np.float32))

        return run

    return prefetch((job(s) for s in range(0, n, bs)), depth if isinstance(images, LazyImages) or transform else 0)


class _Subset(LazyImages):
    def __init__(self, base: LazyImages, rows: list[int]) -> None:
        super().__init__(len(rows), base.size)
        self.base, self.rows = base, rows

    def read(self, i: int) -> np.ndarray:
        return self.base.read(self.rows[i])

    def read_batch(self, indices: Sequence[int]) -> np.ndarray:
        return self.base.read_batch([self.rows[int(i)] for i in indices])


class MappedImages(LazyImages):
    """``fn`` applied batch-wise to another lazy set (``fn`` must treat every image on its own)."""

    def __init__(self, base: LazyImages, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        super().__init__(len(base), base.size)
        self.base, self.fn = base, fn

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` with the function applied."""
        return self.read_batch([i])[0, 0]

    def read_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Images ``indices`` with the function applied (one call for the batch)."""
        return np.asarray(self.fn(self.base.read_batch(indices)), dtype=np.float32)


class SampleImages(LazyImages):
    """The images of data-set files, decoded and fitted to ``size`` on access (or read back from the scan's spill
    of their first decode, :attr:`spill`)."""

    #: the scan's spill of the decoded rows (:class:`auditor.data.spill.CleanRows`: ``get(i)`` gives image ``i``
    #: checked, or None and the file is decoded), or None
    spill = None

    def __init__(
        self, paths: Sequence[str], size: tuple[int, int], content_sha256: str | None = None, spill=None
    ) -> None:
        super().__init__(len(paths), size)
        # a TextColumn (a scan's sample index) is shared as it is, not copied into a list of str
        self.paths = paths if isinstance(paths, TextColumn) else [str(p) for p in paths]
        #: SHA-256 of the files' own SHA-256s in this order (:func:`content_sha256`), when the caller knows them:
        #: what the decoded pixels are a function of, with the size and the decoders (see
        #: :mod:`auditor.attacks.clean_digest`)
        self.content_sha256 = content_sha256
        if spill is not None:
            if len(spill) != len(self.paths):
                raise ValueError(f"a spill of {len(spill)} images for {len(self.paths)} files")
            self.spill = spill

    def read(self, i: int) -> np.ndarray:
        """Image ``i``: from the spill when it has the row (checked), else decoded from its file; a file that
        became unreadable is a DataError."""
        if self.spill is not None:
            img = self.spill.get(i)
            if img is not None:
                return img
        try:
            return load_image_noted(self.paths[i], self.size)[0]
        except ImageReadError as exc:  # it was readable when the scan indexed it
            raise DataError(f"{self.paths[i]}: became unreadable during the scan ({exc})") from None

    def subset(self, indices: Sequence[int]) -> "SampleImages":
        """The images ``indices`` as a new lazy set (nothing is decoded; the spill's rows go with them)."""
        spill = self.spill.take(indices) if self.spill is not None else None
        if isinstance(self.paths, TextColumn):
            return SampleImages(self.paths.take(indices), self.size, spill=spill)
        return SampleImages([self.paths[int(i)] for i in indices], self.size, spill=spill)


def content_sha256(file_digests: np.ndarray) -> str:
    """SHA-256 of the files' raw SHA-256 digests ``(N, 32)`` uint8, in image order."""
    return hashlib.sha256(np.ascontiguousarray(file_digests, dtype=np.uint8).tobytes()).hexdigest()


class PngImages(LazyImages):
    """8-bit grey PNGs under ``root`` (an adversarial set in the cache), as ``level / 255`` on access.

    ``sha256`` (one per file, as recorded in the set's done-markers) is checked on every read,
    so a file changed after the set was verified is refused, not scored.
    """

    def __init__(
        self, root: str | Path, files: Sequence[str], size: tuple[int, int], sha256: Sequence[str | None] | None = None
    ) -> None:
        super().__init__(len(files), size)
        # file names as a TextColumn and digests as 32 raw bytes: ~90 bytes per image and set, not ~250
        self.root, self.files = Path(root), TextColumn(files)
        self._sha: bytes | None = None
        self._has_sha: bytes = b""
        if sha256 is not None:
            digests = list(sha256)
            if len(digests) != len(self.files):
                raise ValueError(f"{len(digests)} SHA-256s for {len(self.files)} files")
            self._sha = b"".join(bytes.fromhex(d) if d is not None else bytes(32) for d in digests)
            self._has_sha = bytes(d is not None for d in digests)

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` from its PNG, refused when the file no longer matches its recorded SHA-256."""
        import cv2

        path = self.root / self.files[i]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cached adversarial image unreadable ({exc.strerror or exc})") from None
        if (
            self._sha is not None
            and self._has_sha[i]
            and hashlib.sha256(data).digest() != self._sha[32 * i : 32 * i + 32]
        ):
            raise DataError(f"{path}: cached adversarial image changed during the scan (SHA-256 mismatch)")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None or img.dtype != np.uint8 or img.shape != self.size:
            raise DataError(f"{path}: not an 8-bit grey image of size {self.size}")
        return from_levels(img)


def stream_digest(images, batch_size: int = 64) -> str:
    """SHA-256 of the contiguous float32 ``(N, 1, H, W)`` array, computed batch by batch.

    Equal to hashing ``np.ascontiguousarray(images)`` with its dtype and shape prefix
    (``auditor.attacks.sets._digest``), without holding the array.
    """
    memo = getattr(images, "_stream_sha256", None)  # a lazy set is digested once per scan
    if memo is not None:
        return memo
    shape = tuple(int(v) for v in images.shape)
    h = hashlib.sha256(f"{np.dtype(np.float32).str}{shape}".encode())
    for _, batch in iter_batches(images, batch_size):
        h.update(np.ascontiguousarray(batch, dtype=np.float32).tobytes())
    if isinstance(images, LazyImages):
        images._stream_sha256 = h.hexdigest()
    return h.hexdigest()


def scan_readable(
    samples,
    size: tuple[int, int],
    batch_size: int = 64,
    progress=None,
    notes: dict[str, list[str]] | None = None,
    spill=None,
) -> tuple[list[int], SkipLog, bool]:
    """Decode every sample once, in prefetched batches, keeping nothing but the verdict (and, given a ``spill``
    (:class:`auditor.data.spill.CleanSpill`), each readable image as row ``i`` of it, for the scan's later reads).

    Returns the indices of the readable samples, a :class:`Skipped` per unreadable one (the same
    entries :func:`auditor.data.decode.load_images` gives, in a bounded
    :class:`~auditor.data.skips.SkipLog`) and whether every readable image lies
    on the 8-bit grid. ``notes`` gets the conversions applied, by name. ``progress(1)`` per image.
    """
    kept: list[int] = []
    skipped = SkipLog()
    on_grid = True

    def job(start: int) -> Callable[[], list[tuple[int, str, str | None, tuple[str, ...], bool]]]:
        def run() -> list[tuple[int, str, str | None, tuple[str, ...], bool]]:
            out: list[tuple[int, str, str | None, tuple[str, ...], bool]] = []
            for i in range(start, min(len(samples), start + batch_size)):
                s = samples[i]
                path = getattr(s, "path", None) or str(s)
                name = getattr(s, "rel_path", "") or path
                try:
                    img, img_notes = load_image_noted(path, size)
                    levels = exact_levels(img)
                    if spill is not None:
                        spill.put(i, img, levels)
                    out.append((i, name, None, img_notes, on_8bit_grid(img, levels)))
                except ImageReadError as exc:
                    out.append((i, name, str(exc), (), True))
            return out

        return run

    for rows in prefetch(job(s) for s in range(0, len(samples), batch_size)):
        for i, name, error, img_notes, grid in rows:
            if error is None:
                kept.append(i)
                on_grid = on_grid and grid
                if img_notes and notes is not None:
                    notes[name] = [printable(n) for n in img_notes]  # notes may quote file metadata
            else:
                skipped.append(Skipped(name, error, "image"))
            if progress:
                progress(1)
    return kept, skipped, on_grid
