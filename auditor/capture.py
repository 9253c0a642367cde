"""Keep library chatter off stderr: warnings, log records and C-level messages become run notes.

pydicom, Pillow, numpy, scikit-image and torch report odd inputs through
:mod:`warnings` or :mod:`logging`; libpng (inside OpenCV) prints straight to
file descriptor 2. During a run these would interleave with the tool's own
one-line errors. :func:`capture_library_output` collects all three into a list
of short notes (recorded in results.json as ``extras.notes``) while the tool's
own messages, written through ``sys.stderr``, still reach the terminal.
With ``show=True`` (``--debug``) nothing is captured.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Iterator

#: at most this many distinct notes are kept (a corrupt folder can warn once per file)
MAX_NOTES = 200


class _Notes(list):
    """A de-duplicated, bounded list of note strings."""

    def add(self, text: str) -> None:
        text = " ".join(str(text).split())[:300]
        if text and text not in self and len(self) < MAX_NOTES:
            self.append(text)


class _ListHandler(logging.Handler):
    def __init__(self, notes: _Notes) -> None:
        super().__init__(level=logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        try:
            self.notes.add(f"{record.name}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a broken log record must not break the run
            pass


@contextmanager
def _fd2_to(notes: _Notes) -> Iterator[None]:
    """Point file descriptor 2 at a temporary file; keep Python's ``sys.stderr`` on the terminal."""
    if sys.__stderr__ is None:  # no standard error at all (pythonw, a detached process): nothing to capture
        yield
        return
    try:
        sys.__stderr__.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield
        return
    swapped = None
    try:
        real = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        real = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        if real:  # our own messages keep going to the terminal through a duplicate of the old fd 2
            swapped = sys.stderr
            sys.stderr = io.TextIOWrapper(
                os.fdopen(os.dup(saved), "wb", buffering=0),
                write_through=True,
                encoding=getattr(swapped, "encoding", None) or "utf-8",
                errors="replace",
            )
        try:
            yield
        finally:
            if swapped is not None:
                sys.stderr.flush()
                sys.stderr.close()
                sys.stderr = swapped
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read(1 << 20).decode("utf-8", "replace").splitlines():
                notes.add(line)


@contextmanager
def capture_library_output(show: bool = False) -> Iterator[list[str]]:
    """Collect library warnings, log records (WARNING and up) and fd-2 output into the yielded list.

    With ``show=True`` the list stays empty and everything is printed as usual.
    """
    notes = _Notes()
    if show:
        yield notes
        return
    root = logging.getLogger()
    handler = _ListHandler(notes)
    root.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")

            def _show(message, category, filename, lineno, file=None, line=None):
                notes.add(f"{category.__name__}: {message} ({os.path.basename(str(filename))}:{lineno})")

            warnings.showwarning = _show
            with _fd2_to(notes):
                yield notes
    finally:
        root.removeHandler(handler)
