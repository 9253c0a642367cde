"""Fingerprints shared by every layer (imports nothing internal): files and arrays.

These are the one owner of the project's SHA-256 forms; :func:`auditor.data.stream.stream_digest` streams the
same array digest batch by batch without holding the array.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def array_sha256(arr: Any) -> str:
    """Hex SHA-256 of an array's dtype, shape and C-ordered bytes (the set cache's key form)."""
    a = np.ascontiguousarray(np.asarray(arr))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()
