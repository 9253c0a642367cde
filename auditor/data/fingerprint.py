"""Identity of a data set's content: per-image SHA-256, the manifest hash, exact duplicates.

Both work on the columns of a :class:`~auditor.data.index.SampleIndex`, so an archive of 100,000
images is fingerprinted without a Python string per manifest line or a dict entry per image.
"""

from __future__ import annotations

import hashlib

import numpy as np

from auditor.data.index import SampleIndex
from auditor.errors import DataError
from auditor.hashing import sha256_file
from auditor.types import Skipped

file_sha256 = sha256_file


def fingerprint(samples) -> tuple[SampleIndex, str]:
    """Samples with their SHA-256 filled in, and the manifest hash.

    The manifest is one line ``rel_path<TAB>label<TAB>sha256`` per image, sorted;
    its SHA-256 identifies the data set independently of where it lies on disk.
    """
    index = samples if isinstance(samples, SampleIndex) else SampleIndex(samples)
    out = index.with_sha256(s.sha256 or file_sha256(s.path) for s in index)
    return out, manifest_sha256(out)


def _manifest_lines(samples: SampleIndex):
    for s in samples:
        # surrogatepass: a file name that is not UTF-8 (kept by Python as lone surrogates) still hashes
        yield f"{s.rel_path}\t{s.label}\t{s.sha256}\n".encode("utf-8", "surrogatepass")


def manifest_sha256(samples: SampleIndex) -> str:
    """SHA-256 of the sorted manifest lines (as ``sorted(lines)`` of the ``str`` lines would order them).

    The lines are sorted as one fixed-width bytes array: byte order of UTF-8 is code-point order, and a
    line ends with a newline, so the padding never meets a line's own bytes.
    """
    width = max((len(line) for line in _manifest_lines(samples)), default=1)
    lines = np.empty(len(samples), dtype=f"S{width}")
    for i, line in enumerate(_manifest_lines(samples)):
        lines[i] = line
    lines.sort()
    h = hashlib.sha256()
    for start in range(0, len(lines), 4096):
        h.update(b"".join(lines[start : start + 4096].tolist()))
    return h.hexdigest()


def drop_duplicates(samples) -> tuple[list[int], list[Skipped]]:
    """Indices of the samples to keep (first of each SHA-256) and a :class:`Skipped` per exact duplicate.

    ``samples`` must carry their SHA-256 (see :func:`fingerprint`). The same
    content listed twice (a copy, a link, a repeated manifest row) is scored
    once. The same content under two labels is a :class:`DataError` naming
    both paths: the ground truth is contradictory and no verdict can stand.
    """
    index = samples if isinstance(samples, SampleIndex) else SampleIndex(samples)
    n = len(index)
    if n == 0:
        return [], []
    if any(not s.sha256 for s in index):
        raise ValueError("drop_duplicates needs fingerprinted samples")
    digests = index.sha256_array()
    _, first_of_group, group = np.unique(digests, axis=0, return_index=True, return_inverse=True)
    first = first_of_group[group.reshape(-1)]  # index of the first sample with the same SHA-256
    repeats = np.flatnonzero(first != np.arange(n))
    labels = index.label_codes()
    conflict = repeats[labels[repeats] != labels[first[repeats]]]
    if conflict.size:
        s, seen = index[int(conflict[0])], index[int(first[conflict[0]])]
        raise DataError(
            f"the same image (SHA-256 {s.sha256[:12]}...) is labelled {seen.label!r} as "
            f"{seen.rel_path or seen.path} and {s.label!r} as {s.rel_path or s.path}"
        )
    dups = []
    for i in repeats:
        s, seen = index[int(i)], index[int(first[i])]
        dups.append(
            Skipped(
                s.rel_path or s.path,
                f"exact duplicate of {seen.rel_path or seen.path} (same SHA-256): counted once",
                "image",
            )
        )
    keep = np.flatnonzero(first == np.arange(n))
    return [int(i) for i in keep], dups
