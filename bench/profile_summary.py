"""Summarise a py-spy profile (``py-spy record --format raw``: collapsed stacks, one ``frame;frame;... count`` a line).

Prints the share of samples per thread kind (main thread / loader threads / other), the top functions by
inclusive samples (a function counted once per stack it appears in: "cumulative") and by own samples, for
the main thread and for all threads together:

    py-spy record --nonblocking --threads --format raw -o scan.txt -- python -m auditor scan ...
    python bench/profile_summary.py scan.txt --top 25
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _name(frame: str) -> str:
    """``function (file)`` without the line number, with the path shortened to its package part."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/auditor/", "lib/python3"):
        if marker in path:
            path = ("auditor/" if marker == "/auditor/" else "") + path.split(marker, 1)[1]
            break
    return f"{m.group('fn')} ({path})"


def load(path: Path) -> list[tuple[str, list[str], int]]:
    """``(thread, frames root first, samples)`` per line."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread = frames[0] if frames and frames[0].startswith(("thread", "process")) else ""
        if thread and frames[0].startswith("process"):
            frames = frames[1:]
            thread = frames[0] if frames and frames[0].startswith("thread") else ""
        if thread:
            frames = frames[1:]
        rows.append((thread, [_name(f) for f in frames], int(count)))
    return rows


def _kind(thread: str, frames: list[str]) -> str:
    if any("xray-audit-loader" in thread or "_worker (concurrent/futures/thread.py)" in f for f in frames[:6]):
        return "loader threads"
    if "MainThread" in thread:
        return "main thread"
    return "other threads"


def summarise(rows, top: int) -> str:
    """The report text."""
    total = sum(c for _, _, c in rows)
    kinds: Counter = Counter()
    inclusive: dict[str, Counter] = {"main thread": Counter(), "all threads": Counter()}
    own: dict[str, Counter] = {"main thread": Counter(), "all threads": Counter()}
    for thread, frames, count in rows:
        kind = _kind(thread, frames)
        kinds[kind] += count
        for scope in ("all threads", "main thread"):
            if scope == "main thread" and kind != "main thread":
                continue
            for f in set(frames):
                inclusive[scope][f] += count
            if frames:
                own[scope][frames[-1]] += count
    out = [f"{total} samples; " + ", ".join(f"{k} {v / total:.0%}" for k, v in kinds.most_common())]
    for scope in ("main thread", "all threads"):
        n = sum(c for k, c in kinds.items() if scope == "all threads" or k == scope)
        out.append(f"\n-- {scope}: top {top} by inclusive samples (share of {scope} samples)")
        out += [f"{c / n:6.1%}  {f}" for f, c in inclusive[scope].most_common(top)]
        out.append(f"\n-- {scope}: top {top} by own samples")
        out += [f"{c / n:6.1%}  {f}" for f, c in own[scope].most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    print(summarise(load(args.profile), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
