"""Staged output: a run writes its reports into a hidden folder beside ``--out`` and moves them in at the end.

A scan that fails while writing (full disk, Ctrl-C, a renderer error) therefore
leaves the previous outputs of ``--out`` untouched, and a finished run never
leaves a mix of files from two runs: report files of an earlier run that this
run did not write are removed when the new ones move in (``stale="remove"``).
The moves are renames within one file system (the staging folder lies beside
``--out``, or inside it when ``--out`` is itself a mount point), so they need no
free space. A staging folder left by a killed run is removed by the next run
once its process is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from auditor.errors import os_error

_PREFIX = ".xray-audit-partial-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StagedOutput:
    """Reports written to :attr:`path` (a staging folder) and moved into ``out_dir`` by :meth:`commit`.

    Use as a context manager: the staging folder is created on entry (so an
    unwritable ``--out`` fails before any work) and always removed on exit.
    """

    def __init__(self, out_dir: str | os.PathLike, managed: Iterable[str] = ()) -> None:
        self.out = Path(out_dir)
        #: file names this tool writes into --out (candidates for stale removal)
        self.managed = tuple(managed)
        self.path: Path | None = None

    def _root(self) -> Path:
        """Where the staging folder goes: beside --out, or inside it when --out is a mount point."""
        out = self.out.absolute()
        try:
            if out.is_dir() and os.stat(out).st_dev != os.stat(out.parent).st_dev:
                return out
        except OSError:
            pass
        return out.parent

    def _tag(self) -> str:
        return f"{_PREFIX}{self.out.absolute().name}-"

    def _remove_leftovers(self, root: Path) -> None:
        try:
            entries = list(root.iterdir())
        except OSError:
            return
        for entry in entries:
            if not entry.name.startswith(self._tag()):
                continue
            pid = entry.name[len(self._tag()) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)

    def __enter__(self) -> "StagedOutput":
        root = self._root()
        if self.out.exists() and not self.out.is_dir():
            raise os_error(NotADirectoryError(20, "exists and is not a folder"), f"{self.out}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._remove_leftovers(root)
            self.path = Path(tempfile.mkdtemp(prefix=f"{self._tag()}{os.getpid()}-", dir=root))
        except OSError as exc:
            raise os_error(exc, f"{self.out}: cannot create the output folder") from None
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the staging folder (and anything still in it)."""
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self, stale: str = "remove") -> dict[str, Path]:
        """Move every staged file into ``out_dir``; returns {file name: final path}.

        ``stale="remove"`` also removes managed files of an earlier run that this
        run did not write; ``"keep"`` leaves them. On failure nothing of the new
        run stays in ``out_dir`` and the earlier files are put back.
        """
        assert self.path is not None, "commit() outside the context"
        staged = sorted(p.name for p in self.path.iterdir() if p.is_file())
        if not staged:  # e.g. --format console: this run writes no file, so it replaces none
            return {}
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            backup = Path(tempfile.mkdtemp(prefix=f"{self._tag()}{os.getpid()}-old-", dir=self.path.parent))
        except OSError as exc:
            raise os_error(exc, f"{self.out}: cannot create the output folder") from None
        displaced = set(staged) | (set(self.managed) if stale == "remove" else set())
        moved_old: list[str] = []
        moved_new: list[str] = []
        try:
            for name in sorted(displaced):
                if (self.out / name).is_file():
                    os.replace(self.out / name, backup / name)
                    moved_old.append(name)
            for name in staged:
                os.replace(self.path / name, self.out / name)
                moved_new.append(name)
        except OSError as exc:
            restored = True
            for name in moved_new:
                try:
                    os.replace(self.out / name, self.path / name)
                except OSError:
                    restored = False
            for name in moved_old:
                try:
                    os.replace(backup / name, self.out / name)
                except OSError:
                    restored = False
            if restored:
                shutil.rmtree(backup, ignore_errors=True)
                raise os_error(exc, f"{self.out}: cannot move the new outputs into place") from None
            raise os_error(
                exc, f"{self.out}: cannot move the new outputs into place; the earlier ones are in {backup}"
            ) from None
        shutil.rmtree(backup, ignore_errors=True)
        return {name: self.out / name for name in staged}
