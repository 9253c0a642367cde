"""Progress display: rich bars on a terminal (stderr), silence elsewhere or when quiet."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator

from auditor.types import one_line


def _no_advance(n: int = 1) -> None:
    """The ``advance`` of a task without a bar."""


class Reporter:
    """Prints stage messages and drives progress bars on stderr.

    Bars appear only when stderr is a terminal and ``quiet`` is off, so logs
    and CI output stay clean (ART#87/#640 show why nested tools must be able
    to silence bars).
    """

    def __init__(self, quiet: bool = False, progress: bool | None = None) -> None:
        self.quiet = quiet
        self.show_bars = (not quiet) and (sys.stderr.isatty() if progress is None else progress)

    def info(self, message: str) -> None:
        """One line of status on stderr (suppressed by ``quiet``); control characters in it are escaped."""
        if not self.quiet:
            print(one_line(message), file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        """A warning line on stderr (always shown); control characters in it (a file name's ANSI escape
        sequences or line breaks) are escaped, so it stays one line and cannot steer the terminal."""
        print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        """A context giving ``advance(n)``; draws a bar when bars are on."""
        if not self.show_bars or total <= 0:
            yield _no_advance
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            tid = bar.add_task(description, total=total)

            def advance(n: int = 1) -> None:
                bar.advance(tid, n)

            yield advance
