"""The clean images' digest in a set's cache key (``images_sha256``): computed once per data set, stored with
the cache, and checked against the pixels every time it is used.

The digest is the SHA-256 of the whole decoded float32 ``(N, 1, H, W)`` array
(:func:`auditor.data.stream.stream_digest`), which costs a decode of every image. It is a function of the files'
bytes, their order, the model's input size and the decoders, so it is stored under
``<cache>/digests/<source>.json`` (:func:`auditor.attacks.cache_layout.digest_record`), where ``source`` hashes
exactly those: the ordered SHA-256 of the files (which the data stage computes anyway, see
:attr:`auditor.data.stream.SampleImages.content_sha256`), the shape, the tool version and the versions of
Pillow, OpenCV, pydicom and NumPy. A later scan of the same files finds the digest without decoding.

A stored digest is never trusted on its own. :func:`auditor.attacks.sets.build_adversarial_set` decodes every
clean batch anyway (to check each cached batch's recorded clean digest and the ε bound), and hashes those
batches into the same whole-array digest as it goes (:class:`DigestCheck`). When they differ (a file changed
after it was fingerprinted, a record edited by hand or by another tool), the record is replaced by the digest
of the pixels just read and the set is built again under the key of those pixels, with a cache warning; a set
is never filed or loaded under a key its images do not have. Once checked, the digest is remembered for the
rest of the scan, so later sets of the same images do not hash them again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from auditor.atomic import write_atomic
from auditor.attacks.cache_layout import digest_record
from auditor.data.stream import LazyImages, stream_digest
from auditor.outcomes import is_sha256_hex

#: the record's format (a change of what ``source`` covers must change it)
RECORD_FORMAT = 1
#: the libraries whose versions decide the decoded pixels
DECODERS = ("pillow", "opencv-python-headless", "opencv-python", "pydicom", "numpy")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in DECODERS:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def source_id(images: Any) -> str | None:
    """What identifies ``images``' decoded pixels without decoding them, or None when that is not known."""
    content = getattr(images, "content_sha256", None)
    if not content:
        return None
    from auditor import __version__

    facts = {
        "format": RECORD_FORMAT,
        "content_sha256": content,
        "shape": [int(v) for v in images.shape],
        "tool_version": __version__,
        "decoders": _versions(),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()


def _read(path: Path, source: str) -> str | None:
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: a depth bomb
        return None
    if not isinstance(rec, dict) or rec.get("source") != source or rec.get("format") != RECORD_FORMAT:
        return None
    digest = rec.get("images_sha256")
    return digest if isinstance(digest, str) and is_sha256_hex(digest) else None


def store(images: Any, cache_dir: str | Path | None, digest: str) -> None:
    """Remember ``digest`` as the checked digest of ``images`` for this scan, and store it in the cache."""
    if isinstance(images, LazyImages):
        images._stream_sha256 = digest  # the memo of stream_digest: checked pixels
    source = source_id(images)
    if source is None or cache_dir is None:
        return
    path = digest_record(cache_dir, source)
    doc = {"format": RECORD_FORMAT, "source": source, "images_sha256": digest, "shape": list(images.shape)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    except OSError:
        pass  # an unwritable cache only costs the decode next time


def clean_digest(images: Any, cache_dir: str | Path | None) -> tuple[str, bool]:
    """The digest of lazy ``images`` for the cache key and whether it still needs checking against the pixels.

    Checked already in this scan (or just computed): ``(digest, False)``. From the cache's record:
    ``(digest, True)``. Neither: computed by a decode of every image and stored, ``(digest, False)``.
    """
    memo = getattr(images, "_stream_sha256", None)
    if memo is not None:
        return memo, False
    source = source_id(images)
    if source is not None and cache_dir is not None:
        stored = _read(digest_record(cache_dir, source), source)
        if stored is not None:
            return stored, True
    digest = stream_digest(images)
    store(images, cache_dir, digest)
    return digest, False


class DigestCheck:
    """The whole-array digest of clean batches fed in order (equal to :func:`auditor.data.stream.stream_digest`)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self._h = hashlib.sha256(f"{np.dtype(np.float32).str}{tuple(int(v) for v in shape)}".encode())
        self.rows = 0

    def add(self, batch: np.ndarray) -> None:
        """Hash the next clean batch (float32 ``(k, 1, H, W)``)."""
        self._h.update(np.ascontiguousarray(batch, dtype=np.float32).tobytes())
        self.rows += len(batch)

    def hexdigest(self) -> str:
        """The digest of the batches added so far."""
        return self._h.hexdigest()
