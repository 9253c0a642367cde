"""Atomic file writes: a file is either complete or absent, never half written.

The one writer of the project (reports, training runs, model cards, exported
models). An interrupted run (Ctrl-C, exit 130) or a full disk leaves the old file
or none; the temporary file lives in the target's folder so the final
``os.replace`` is a rename on one filesystem.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from auditor.errors import os_error


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: str | bytes | Iterable[str | bytes]) -> Path:
    """Write ``data`` to ``path`` so that the file is either complete or absent.

    ``data`` may be an iterable of ``str``/``bytes`` pieces, written one at a time (a large
    document is then never held whole); an exception while producing them removes the file.

    The bytes go to a temporary file in the same folder, are flushed to disk,
    then renamed over ``path`` (``os.replace`` is atomic on one filesystem).
    On any failure the temporary file is removed and an existing ``path`` is
    left untouched. A folder that cannot be written raises :class:`UsageError` (exit 2), a full
    disk or an I/O error :class:`RuntimeFailure` (exit 4).
    """
    target = Path(path)
    pieces = [data] if isinstance(data, (str, bytes, bytearray, memoryview)) else data
    folder = target.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise os_error(exc, f"{folder}: cannot write {target.name} there") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            for piece in pieces:
                fh.write(piece.encode("utf-8") if isinstance(piece, str) else bytes(piece))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise os_error(exc, f"{target}: cannot write") from None
        raise
    return target


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = ".part") -> Iterator[Path]:
    """A temporary path beside ``final`` for a writer that needs a file name (e.g. an exporter).

    On normal exit the file is renamed over ``final``; on any exception it is removed
    and ``final`` is left untouched. The body may check the file before it is published.
    """
    final = Path(final)
    tmp = final.with_name(f".{final.stem}.partial{suffix}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
