"""Identity of a data set's content: per-image SHA-256, the manifest hash, exact duplicates."""

from __future__ import annotations

import hashlib

from auditor.errors import DataError
from auditor.hashing import sha256_file
from auditor.types import Sample, Skipped

file_sha256 = sha256_file


def fingerprint(samples) -> tuple[list[Sample], str]:
    """Samples with their SHA-256 filled in, and the manifest hash.

    The manifest is one line ``rel_path<TAB>label<TAB>sha256`` per image, sorted;
    its SHA-256 identifies the data set independently of where it lies on disk.
    """
    out = []
    for s in samples:
        digest = s.sha256 or file_sha256(s.path)
        out.append(Sample(s.path, s.label, s.rel_path, s.patient_id, digest))
    lines = sorted(f"{s.rel_path}\t{s.label}\t{s.sha256}\n" for s in out)
    return out, hashlib.sha256("".join(lines).encode()).hexdigest()


def drop_duplicates(samples) -> tuple[list[int], list[Skipped]]:
    """Indices of the samples to keep (first of each SHA-256) and a :class:`Skipped` per exact duplicate.

    ``samples`` must carry their SHA-256 (see :func:`fingerprint`). The same
    content listed twice (a copy, a link, a repeated manifest row) is scored
    once. The same content under two labels is a :class:`DataError` naming
    both paths: the ground truth is contradictory and no verdict can stand.
    """
    first: dict[str, Sample] = {}
    keep: list[int] = []
    dups: list[Skipped] = []
    for i, s in enumerate(samples):
        if not s.sha256:
            raise ValueError("drop_duplicates needs fingerprinted samples")
        seen = first.get(s.sha256)
        if seen is None:
            first[s.sha256] = s
            keep.append(i)
        elif seen.label != s.label:
            raise DataError(
                f"the same image (SHA-256 {s.sha256[:12]}...) is labelled {seen.label!r} as "
                f"{seen.rel_path or seen.path} and {s.label!r} as {s.rel_path or s.path}"
            )
        else:
            dups.append(
                Skipped(
                    s.rel_path or s.path,
                    f"exact duplicate of {seen.rel_path or seen.path} (same SHA-256): counted once",
                    "image",
                )
            )
    return keep, dups
