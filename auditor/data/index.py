"""The samples of a data set as columns (:class:`SampleIndex`): what a scan keeps per image while it runs.

A list of :class:`~auditor.types.Sample` objects (the object, an absolute path, a relative path and a
hex SHA-256 as ``str``) kept ~400 bytes per image in ``tests/test_sample_index.py`` and peaked at ~560
while indexing; more with longer paths. Here paths are :class:`~auditor.outcomes.TextColumn` buffers,
labels and patient ids codes into vocabularies, and the SHA-256 32 raw bytes: ~155 bytes kept, ~340 at
the indexing peak. Items are built on access, so code that reads ``samples[i]`` or iterates gets the
same :class:`Sample` values as before.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Iterable, Iterator

import numpy as np

from auditor.outcomes import TextColumn, is_sha256_hex
from auditor.types import Sample


class SampleIndex(Sequence):
    """Read-only sequence of :class:`Sample` held as columns; :meth:`append` adds one while indexing."""

    __slots__ = (
        "paths",
        "rel_paths",
        "_labels",
        "_label_code",
        "_label",
        "_pids",
        "_pid_code",
        "_pid",
        "_sha",
        "_has_sha",
    )

    def __init__(self, samples: Iterable[Sample] = ()) -> None:
        self.paths = TextColumn()  #: absolute (or as given) path of every sample
        self.rel_paths = TextColumn()  #: path relative to the data root ("" when unknown)
        self._labels: list[str] = []
        self._label_code: dict[str, int] = {}
        self._label = array("i")
        self._pids: list[str] = []
        self._pid_code: dict[str, int] = {}
        self._pid = array("i")
        self._sha = bytearray()  # 32 bytes per sample (zeros with no SHA-256)
        self._has_sha = bytearray()  # 1 where the sample has a SHA-256
        for s in samples:
            self.append(s)

    def append(self, s: Sample) -> None:
        """Add one sample at the end (its ``sha256`` empty or 64 lower-case hex digits, else ValueError)."""
        if s.sha256 and not is_sha256_hex(s.sha256):
            raise ValueError(f"{s.path}: sha256 must be 64 lower-case hex digits, got {s.sha256!r}")
        self.paths.append(s.path)
        self.rel_paths.append(s.rel_path)
        self._label.append(self._code(s.label, self._labels, self._label_code))
        self._pid.append(-1 if s.patient_id is None else self._code(s.patient_id, self._pids, self._pid_code))
        self._sha += bytes.fromhex(s.sha256) if s.sha256 else bytes(32)
        self._has_sha.append(1 if s.sha256 else 0)

    @staticmethod
    def _code(value: str, vocab: list[str], codes: dict[str, int]) -> int:
        code = codes.get(value)
        if code is None:
            code = codes[value] = len(vocab)
            vocab.append(value)
        return code

    def __len__(self) -> int:
        return len(self._label)

    def _sha_of(self, i: int) -> str:
        return self._sha[32 * i : 32 * i + 32].hex() if self._has_sha[i] else ""

    def _item(self, i: int) -> Sample:
        pid = self._pid[i]
        return Sample(
            self.paths[i],
            self._labels[self._label[i]],
            self.rel_paths[i],
            None if pid < 0 else self._pids[pid],
            self._sha_of(i),
        )

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.take(range(*i.indices(len(self))))
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return self._item(i + n if i < 0 else i)

    def __iter__(self) -> Iterator[Sample]:
        return (self._item(i) for i in range(len(self)))

    def take(self, indices: Iterable[int]) -> "SampleIndex":
        """A new index of the samples ``indices``, in that order."""
        return SampleIndex(self._item(int(i)) for i in indices)

    def with_sha256(self, digests: Iterable[str]) -> "SampleIndex":
        """The same samples with these SHA-256s (one per sample, in order); the other columns are shared."""
        out = SampleIndex()
        for name in ("paths", "rel_paths", "_labels", "_label_code", "_label", "_pids", "_pid_code", "_pid"):
            setattr(out, name, getattr(self, name))
        for digest in digests:
            if not is_sha256_hex(digest):
                raise ValueError(f"sha256 must be 64 lower-case hex digits, got {digest!r}")
            out._sha += bytes.fromhex(digest)
            out._has_sha.append(1)
        if len(out._has_sha) != len(self):
            raise ValueError(f"{len(out._has_sha)} SHA-256s for {len(self)} samples")
        return out

    def label_codes(self) -> np.ndarray:
        """The label of every sample as an int32 code (equal codes, equal labels)."""
        return np.frombuffer(self._label, dtype=np.int32).copy()

    def sha256_array(self) -> np.ndarray:
        """``(N, 32)`` uint8 SHA-256 digests (zeros where a sample has none)."""
        return np.frombuffer(bytes(self._sha), dtype=np.uint8).reshape(-1, 32)

    @property
    def labels(self) -> list[str]:
        """The label of every sample (strings shared with the vocabulary)."""
        return [self._labels[c] for c in self._label]

    @property
    def patient_ids(self) -> list[str | None]:
        """The patient id of every sample, None where unknown (strings shared with the vocabulary)."""
        return [None if c < 0 else self._pids[c] for c in self._pid]

    @property
    def names(self) -> Sequence[str]:
        """How reports name each sample: its relative path, else its path."""
        if all(self.rel_paths):
            return self.rel_paths
        return TextColumn(s.rel_path or s.path for s in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SampleIndex, tuple, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed types __hash__ as a method

    def __repr__(self) -> str:
        return f"SampleIndex(n={len(self)})"

    @property
    def nbytes(self) -> int:
        """Bytes of the per-sample columns (vocabularies not included)."""
        per = self._label.itemsize * len(self._label) + self._pid.itemsize * len(self._pid)
        per += len(self._sha) + len(self._has_sha)
        return self.paths.nbytes + self.rel_paths.nbytes + per
