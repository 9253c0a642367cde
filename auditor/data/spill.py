"""A scan-scoped spill of decoded images, so that each clean image and each cached adversarial set is decoded (and
verified) once per scan.

**Cached sets.** Reading a cached set back from its PNGs (:class:`~auditor.data.stream.PngImages`) costs a SHA-256
of the file and a PNG decode per image, and a scan reads each set four times (the set walk that verifies it, the
surrogate's predictions, the attacked and the defended evaluations). The walk of
:func:`auditor.attacks.sets.build_adversarial_set` checks every PNG against its done-marker, decodes it and checks
the ε bound; it then writes the verified ``uint8`` levels to a raw file in the scan's temporary folder
(:class:`ScanScratch`) with the SHA-256 of each image's levels, and the later passes read
:class:`SpilledImages` instead of the PNGs.

**Clean images.** A data-set image (:class:`~auditor.data.stream.SampleImages`: a JPEG or PNG decoded, made grey
and fitted to the model's size) is read by about six passes of a cached-attack scan (each set's walk, the
surrogate's predictions, the clean and defended-clean evaluations, the detector, the examples). The first of them,
the data stage's readability check (:func:`auditor.data.stream.scan_readable`), writes each decoded image to a
:class:`CleanSpill`; the scan's ``SampleImages`` (and every subset of it) read the rows back through
:class:`CleanRows`. A row is stored as its ``uint8`` levels when ``levels / 255`` in float32 gives the decoded
row back bit for bit (:func:`~auditor.data.decode.exact_levels`: H×W bytes), else as the float32 row itself (4×H×W bytes: an image
resized to the model's size, or from a source of more than 8 bits). Either way the pixels handed on are exactly
the decode's. Unreadable files are skipped by that pass as before and never spilled; the scan's images map to
their rows past the skipped files and exact duplicates.

The spill is never trusted on its own: every row read is hashed and compared with the digest recorded when the
row was written (kept in memory: 32 bytes per image, plus 5 for a clean row's offset and kind, and 8 for its row
number when files were skipped or folded as duplicates; the raw rows stay on disk, read with ``os.pread``, so
memory is flat in the number of images). A row that is missing, short or different is read from its source instead
(a set's PNG, through the verified path: its SHA-256 against the done-marker's; a clean image's file, decoded
again) and counted in ``fallbacks``.

The folder is created on first use (``tempfile``, honouring ``TMPDIR``), readable by this user only, and deleted
with everything in it when the scan ends (:meth:`ScanScratch.close`; also when the object is collected). A scan
killed by a signal cannot do that: its folder is named after its process id and removed by the next scan that
finds that process gone (:func:`sweep`). A spill is made only when the folder's file system has room for it as
8-bit levels (plus :data:`FREE_MARGIN_BYTES`); otherwise the set stays on the PNG path and the clean images are
decoded by every pass. Clean rows stored as float32 take from the room left above that margin; a row that does not
fit is not spilled (decoded by every pass). Sent to a Ray task (pickled), a spilled set or a subset of the clean
images carries its file's path and the digests of its own rows: a worker on the same host reads the spill, checked
the same way; elsewhere every row falls back to its source.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Sequence

import numpy as np

from auditor.data.decode import exact_levels, from_levels
from auditor.data.stream import PngImages

#: free space kept on the spill's file system beyond the spill itself
FREE_MARGIN_BYTES = 1 << 30


#: the scan folders' name: ``<PREFIX><pid>-<random>``
PREFIX = "xray-audit-scan-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def sweep(folder: Path) -> list[Path]:
    """Remove the scan folders in ``folder`` left by scans of this user whose process no longer runs (a scan killed
    by a signal cannot remove its own); returns them. A folder of a live process (or an unreadable name) stays."""
    gone: list[Path] = []
    if os.name != "posix":  # os.kill(pid, 0) would end the process on Windows
        return gone
    try:
        entries = list(folder.glob(f"{PREFIX}*-*"))
    except OSError:
        return gone
    for entry in entries:
        pid = entry.name[len(PREFIX) :].split("-", 1)[0]
        try:
            mine = entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)
            gone.append(entry)
    return gone


class ScanScratch:
    """The scan's temporary folder (created on first :meth:`path`), and the spills in it; :meth:`close` removes it."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._spills: list[_Spill] = []
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    def path(self) -> Path:
        """The folder (``xray-audit-scan-<pid>-*`` under the system's temporary folder, mode 0700); the folders of
        scans whose process is gone (killed by a signal) are removed first (:func:`sweep`)."""
        with self._lock:
            if self._path is None:
                sweep(Path(tempfile.gettempdir()))
                self._path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
                self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._path), True)
            return self._path

    def spill(self, n: int, size: tuple[int, int]) -> "SpillWriter | None":
        """A writer for ``n`` images of ``size``, or None when the folder has no room."""
        need = int(n) * int(size[0]) * int(size[1])
        folder = self.path()
        try:
            if shutil.disk_usage(folder).free < need + FREE_MARGIN_BYTES:
                return None
            fd, name = tempfile.mkstemp(prefix="set-", suffix=".u8", dir=folder)
        except OSError:
            return None
        spill = _Spill(Path(name), n, size, fd)
        self._spills.append(spill)
        return SpillWriter(spill)

    def clean_spill(self, n: int, size: tuple[int, int]) -> "CleanSpill | None":
        """A spill for the decoded rows of ``n`` clean images of ``size``, or None when the folder has no room for
        ``n`` rows of 8-bit levels (the rows off the 8-bit grid take 4 bytes a pixel while there is room left)."""
        row = int(size[0]) * int(size[1])
        folder = self.path()
        try:
            free = shutil.disk_usage(folder).free - FREE_MARGIN_BYTES
            if free < int(n) * row:
                return None
            fd, name = tempfile.mkstemp(prefix="clean-", suffix=".raw", dir=folder)
        except OSError:
            return None
        spill = CleanSpill(Path(name), n, size, fd, free)
        self._spills.append(spill)
        return spill

    def close(self) -> None:
        """Close every spill (their later reads fall back to the PNGs or the image files) and delete the folder."""
        for spill in self._spills:
            spill.close()
        self._spills.clear()
        if self._finalizer is not None:
            self._finalizer()  # removes the folder once
        self._path = None


class _Spill:
    """The raw file of one set's levels (row ``i`` at ``i * H * W``) and the SHA-256 of each row written."""

    def __init__(self, path: Path, n: int, size: tuple[int, int], fd: int | None) -> None:
        self.path, self.n, self.size = Path(path), int(n), (int(size[0]), int(size[1]))
        self.row = self.size[0] * self.size[1]
        self.sha = bytearray(32 * self.n)
        self.has = bytearray(self.n)  #: 1 once the row's verified levels were written and their digest recorded
        self.fd = fd
        self.opened = fd is not None
        self.lock = threading.Lock()

    def write(self, start: int, levels: np.ndarray) -> bool:
        """Rows ``start:start+k`` from ``levels`` ``(k, 1, H, W)`` uint8; False when they could not be written."""
        data = np.ascontiguousarray(levels, dtype=np.uint8).reshape(len(levels), -1)
        if self.fd is None or data.shape[1] != self.row or not 0 <= start <= self.n - len(data):
            return False
        try:
            if os.pwrite(self.fd, data.tobytes(), start * self.row) != data.size:
                return False
        except OSError:
            return False
        for j in range(len(data)):
            i = start + j
            self.sha[32 * i : 32 * i + 32] = hashlib.sha256(data[j]).digest()
            self.has[i] = 1
        return True

    def file(self) -> int | None:
        """The open file, opened read-only on first use in a process that received a copy; None if unusable."""
        with self.lock:
            if not self.opened:
                self.opened = True
                try:
                    self.fd = os.open(self.path, os.O_RDONLY)
                except OSError:
                    self.fd = None
            return self.fd

    def rows(self, first: int, k: int) -> memoryview:
        """The raw bytes of rows ``first:first+k`` as far as they can be read (possibly short or empty)."""
        fd = self.file()
        if fd is None or not all(self.has[first : first + k]):
            return memoryview(b"")
        try:
            return memoryview(os.pread(fd, k * self.row, first * self.row))
        except OSError:
            return memoryview(b"")

    def matches(self, i: int, raw: memoryview) -> bool:
        """Whether ``raw`` is exactly the verified row ``i`` (its length and SHA-256)."""
        return len(raw) == self.row and hashlib.sha256(raw).digest() == bytes(self.sha[32 * i : 32 * i + 32])

    def close(self) -> None:
        """Close the file (later reads find no file)."""
        with self.lock:
            fd, self.fd, self.opened = self.fd, None, True
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("fd", "lock")}
        state["opened"] = False  # the copy opens the path itself (a worker on the same host), or falls back
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.fd = None
        self.lock = threading.Lock()


class SpilledImages(PngImages):
    """A cached set's PNGs (:class:`~auditor.data.stream.PngImages`) read from the scan's spill of their verified
    levels: each row checked against the digest recorded when it was spilled, else read from its PNG (itself
    checked against its SHA-256) and counted in :attr:`fallbacks`."""

    def __init__(self, png: PngImages, spill: _Spill) -> None:
        self.__dict__.update(png.__dict__)
        if (len(png), png.size) != (spill.n, spill.size):
            raise ValueError(f"a spill of {spill.n} images of {spill.size} for {len(png)} images of {png.size}")
        self.spill = spill
        #: rows read from their PNG because the spill could not give them
        self.fallbacks = 0

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 ``(H, W)``."""
        return self.read_batch([i])[0, 0]

    def read_batch(self, indices: Sequence[int]) -> np.ndarray:
        """Images ``indices`` as ``(k, 1, H, W)`` float32 ``level / 255``, consecutive rows read together."""
        rows = [int(i) for i in indices]
        out = np.empty((len(rows), 1, *self.size), np.float32)
        j = 0
        while j < len(rows):
            k = j + 1
            while k < len(rows) and rows[k] == rows[k - 1] + 1:
                k += 1
            raw = self.spill.rows(rows[j], k - j)
            step = self.spill.row
            for r in range(j, k):
                part = raw[(r - j) * step : (r - j + 1) * step]
                if self.spill.matches(rows[r], part):
                    out[r, 0] = from_levels(np.frombuffer(part, np.uint8).reshape(self.size))
                else:
                    with self.spill.lock:
                        self.fallbacks += 1
                    out[r, 0] = PngImages.read(self, rows[r])
            j = k
        return out

    def close(self) -> None:
        """Close the spill: every later read comes from the PNGs."""
        self.spill.close()


class SpillWriter:
    """Writes a set's verified levels into the scan's spill, batch by batch, then gives the spilled set."""

    def __init__(self, spill: _Spill) -> None:
        self.spill = spill

    def write(self, start: int, levels: np.ndarray) -> None:
        """Rows ``start:start+k`` from verified ``levels`` ``(k, 1, H, W)`` uint8 (rows that fail stay on the PNGs)."""
        self.spill.write(start, levels)

    def finish(self, png: PngImages) -> SpilledImages:
        """The set ``png`` (its PNGs, each checked against its SHA-256) read from this spill where it can."""
        return SpilledImages(png, self.spill)

    def abandon(self) -> None:
        """The walk did not finish with this set: close the file (its rows are never read)."""
        self.spill.close()


#: how a clean row is held in a :class:`CleanSpill`: not at all, as 8-bit levels, as float32 values
_MISSING, _LEVELS, _FLOATS = 0, 1, 2


class CleanSpill(_Spill):
    """The decoded clean images of a scan, written by its first decode (:func:`auditor.data.stream.scan_readable`)
    in any order, one row per image: the ``uint8`` levels when they give the float32 row back bit for bit
    (:func:`~auditor.data.decode.exact_levels`), else the float32 row itself. Row ``i`` starts at ``offset[i] * H * W`` bytes; its kind
    (:data:`_LEVELS`, :data:`_FLOATS`, or :data:`_MISSING` when never written) is ``has[i]``, and ``sha`` holds the
    SHA-256 of the stored bytes. ``budget`` is the room left for the file to grow (its file system's free space at
    creation, minus :data:`FREE_MARGIN_BYTES`): a row that does not fit is not spilled."""

    def __init__(self, path: Path, n: int, size: tuple[int, int], fd: int | None, budget: int) -> None:
        super().__init__(path, n, size, fd)
        self.offset = np.zeros(self.n, np.uint32)  #: in units of ``H * W`` bytes (a float row takes 4)
        self.end = 0  #: the next free unit
        self.budget = int(budget)
        #: reads that decoded the file because the spill could not give the row
        self.fallbacks = 0

    def put(self, i: int, img: np.ndarray, levels: np.ndarray | None = None) -> bool:
        """Spill row ``i``, the float32 ``(H, W)`` decode of its file (once; later calls for ``i`` are ignored);
        ``levels``: its :func:`~auditor.data.decode.exact_levels` when the caller has them (else found here)."""
        if levels is None:
            levels = exact_levels(img)
        array = levels if levels is not None else np.ascontiguousarray(img, dtype=np.float32)
        units = 1 if levels is not None else 4
        if array.shape != self.size or not 0 <= i < self.n:
            return False
        data = array.data  # the contiguous row's bytes
        digest = hashlib.sha256(data).digest()
        nbytes = units * self.row
        with self.lock:
            if self.fd is None or self.has[i] or nbytes > self.budget or self.end + units >= 1 << 32:
                return False
            try:
                ok = os.pwrite(self.fd, data, self.end * self.row) == nbytes
            except OSError:
                ok = False
            if not ok:  # e.g. the disk filled up under another writer: no more rows
                self.budget = 0
                return False
            self.offset[i], self.end, self.budget = self.end, self.end + units, self.budget - nbytes
            self.sha[32 * i : 32 * i + 32] = digest
            self.has[i] = _LEVELS if levels is not None else _FLOATS
        return True

    def get(self, i: int) -> np.ndarray | None:
        """Row ``i`` as float32 ``(H, W)``, exactly as written, or None (never written, unreadable, or its bytes
        no longer match their SHA-256); a None is counted in :attr:`fallbacks`."""
        kind = self.has[i]
        fd = self.file() if kind != _MISSING else None
        raw = b""
        if fd is not None:
            nbytes = self.row * (1 if kind == _LEVELS else 4)
            try:
                raw = os.pread(fd, nbytes, int(self.offset[i]) * self.row)
            except OSError:
                raw = b""
            if len(raw) == nbytes and hashlib.sha256(raw).digest() == bytes(self.sha[32 * i : 32 * i + 32]):
                if kind == _LEVELS:
                    return from_levels(np.frombuffer(raw, np.uint8).reshape(self.size))
                return np.frombuffer(raw, np.float32).reshape(self.size).copy()
        with self.lock:
            self.fallbacks += 1
        return None

    def part(self, rows: np.ndarray) -> "CleanSpill":
        """A read-only copy holding just ``rows`` (in that order): what a copy sent to another process carries."""
        rows = np.asarray(rows, dtype=np.int64)
        out = CleanSpill.__new__(CleanSpill)
        out.path, out.n, out.size, out.row = self.path, len(rows), self.size, self.row
        sha = np.frombuffer(bytes(self.sha), np.uint8).reshape(self.n, 32)
        out.sha = bytearray(sha[rows].tobytes())
        out.has = bytearray(np.frombuffer(bytes(self.has), np.uint8)[rows].tobytes())
        out.offset, out.end, out.budget, out.fallbacks = self.offset[rows], 0, 0, 0
        out.fd, out.opened, out.lock = None, False, threading.Lock()
        return out

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "budget": 0, "fallbacks": 0}  # a copy only reads


class CleanRows:
    """What a :class:`~auditor.data.stream.SampleImages` reads its spilled rows from: image ``i`` is row
    ``rows[i]`` of ``spill`` (``rows`` None: row ``i``). Pickled (sent to a Ray task), it carries the path and
    the digests of its own rows only."""

    def __init__(self, spill: CleanSpill, rows: np.ndarray | None = None) -> None:
        self.spill = spill
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows is not None and self.rows.size and not 0 <= self.rows.min() <= self.rows.max() < spill.n:
            raise ValueError(f"rows beyond the spill's {spill.n} images")

    def __len__(self) -> int:
        return self.spill.n if self.rows is None else len(self.rows)

    def get(self, i: int) -> np.ndarray | None:
        """Image ``i`` from the spill, checked, or None (the caller decodes its file)."""
        return self.spill.get(i if self.rows is None else int(self.rows[i]))

    def take(self, indices) -> "CleanRows":
        """The rows of images ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        return CleanRows(self.spill, idx if self.rows is None else self.rows[idx])

    def __getstate__(self) -> dict:
        spill = self.spill if self.rows is None else self.spill.part(self.rows)
        return {"spill": spill, "rows": None}
