"""Skipped files of an archive, kept within a bound (:class:`SkipLog`).

A manifest of 1,000,000 rows pointing at missing files used to give 1,000,000 :class:`~auditor.types.Skipped`
objects, as many stderr lines (``-q`` included) and a results.json too big for ``report`` to read. A
:class:`SkipLog` keeps the first :data:`MAX_SKIP_EXAMPLES` entries in full and, for every entry, a count per
reason (at most :data:`MAX_SKIP_REASONS` distinct reasons, the rest counted under :data:`OTHER_REASONS`), so
its memory does not grow with the number of files listed. It is a sequence of the entries it keeps;
:attr:`SkipLog.total` counts them all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Iterable, Iterator

from auditor.types import Skipped

#: skipped entries kept in full (results.json ``data.skipped``); the rest are counted by reason
MAX_SKIP_EXAMPLES = 1000
#: distinct reasons counted one by one (reasons naming a file or a size can all differ)
MAX_SKIP_REASONS = 100
#: the reason key of the entries beyond :data:`MAX_SKIP_REASONS` distinct reasons
OTHER_REASONS = "other reasons"
#: skipped files printed one per line on stderr before the summary line
MAX_SKIP_LINES = 20


class SkipLog(Sequence):
    """The first ``limit`` skipped entries, and how many were skipped in all, per reason."""

    def __init__(self, entries: Iterable[Skipped] = (), limit: int | None = None) -> None:
        self.limit = MAX_SKIP_EXAMPLES if limit is None else limit
        self.examples: list[Skipped] = []
        self.total = 0
        self.by_reason: Counter[str] = Counter()
        self.extend(entries)

    def append(self, s: Skipped) -> None:
        """Count ``s``; keep it while fewer than ``limit`` entries are kept."""
        self.total += 1
        if len(self.examples) < self.limit:
            self.examples.append(s)
        key = s.reason if s.reason in self.by_reason or len(self.by_reason) < MAX_SKIP_REASONS else OTHER_REASONS
        self.by_reason[key] += 1

    def extend(self, entries: Iterable[Skipped]) -> None:
        """Add every entry of ``entries`` (another :class:`SkipLog` adds its totals too)."""
        if isinstance(entries, SkipLog):
            for s in entries.examples:
                if len(self.examples) < self.limit:
                    self.examples.append(s)
            self.total += entries.total
            for reason, n in entries.by_reason.items():
                key = reason if reason in self.by_reason or len(self.by_reason) < MAX_SKIP_REASONS else OTHER_REASONS
                self.by_reason[key] += n
            return
        for s in entries:
            self.append(s)

    @property
    def omitted(self) -> int:
        """Entries counted but not kept."""
        return self.total - len(self.examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i):
        return self.examples[i]

    def __iter__(self) -> Iterator[Skipped]:
        return iter(self.examples)

    def __bool__(self) -> bool:
        return self.total > 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SkipLog):
            return self.total == other.total and self.examples == other.examples
        if isinstance(other, (list, tuple)):
            return self.total == len(other) and self.examples == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed types __hash__ as a method

    def __repr__(self) -> str:
        return f"SkipLog(total={self.total}, kept={len(self.examples)})"

    def counts(self, top: int = 5) -> str:
        """``"999990 × file not found; 10 × corrupt"``: the ``top`` most frequent reasons."""
        common = self.by_reason.most_common(top)
        text = "; ".join(f"{n} × {reason}" for reason, n in common)
        rest = len(self.by_reason) - len(common)
        return text + (f"; {rest} more reason(s)" if rest > 0 else "")

    def summary(self) -> Skipped | None:
        """One entry standing for the entries not kept (None when all are kept), for reports that list skips."""
        if not self.omitted:
            return None
        return Skipped(
            f"... {self.omitted} more",
            f"{self.total} skipped in all, the first {len(self.examples)} listed; by reason: {self.counts()}",
            "image",
        )

    def to_dicts(self) -> list[dict[str, str]]:
        """The kept entries as results.json ``data.skipped`` rows, plus the :meth:`summary` row when some were not kept."""
        rows = [s.to_dict() for s in self.examples]
        extra = self.summary()
        return rows + [extra.to_dict()] if extra else rows

    def report(self, warn, quiet: bool = False, lines: int | None = None) -> None:
        """Tell the user on stderr: up to ``lines`` entries one per line (none when ``quiet``), then one line
        with the totals by reason when any were not shown. ``warn`` prints one warning line."""
        if not self.total:
            return
        shown = 0 if quiet else min(MAX_SKIP_LINES if lines is None else lines, len(self.examples))
        for s in self.examples[:shown]:
            warn(f"skipped {s.name}: {s.reason}")
        if shown < self.total:
            warn(
                f"{self.total} file(s) skipped{f', {shown} shown above' if shown else ''} "
                f"(by reason: {self.counts()}); results.json data.skipped lists the first {len(self.examples)}"
            )
