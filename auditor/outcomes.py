"""Compact per-image outcome stores: what a scan keeps per image and condition, as numpy columns.

A scan of 100,000 images keeps, per condition, one predicted class and ``K`` class probabilities
per image, and once per scan a sample row (path, label, label index, patient id, SHA-256). Held
as Python tuples and dicts these cost ~120 bytes per image and condition and ~300 bytes per
sample row; here they are numpy columns:

* :class:`Predictions`: int16 class indices (2 bytes per image and condition);
* :class:`Probabilities`: the probabilities rounded to 6 decimals, stored as int32 millionths
  (4 bytes per class) when that is lossless, else as the float64 values themselves;
* :class:`SampleTable`: paths as a :class:`TextColumn`, labels and patient ids as codes into
  interned vocabularies, the SHA-256 as 32 raw bytes;
* :class:`TextColumn`: strings (paths) as one UTF-8 buffer, their folders as codes.

All three are read-only sequences that give back exactly the Python values the tuples held
(``int``, ``tuple`` of ``float``, ``dict``), so results.json is unchanged byte for byte.
``nbytes`` is the memory of the columns (the test of the bound reads it).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, Iterable, Iterator

import numpy as np

#: probabilities are kept (and written to results.json) to this many decimals
DECIMALS = 6
_SCALE = 10.0**DECIMALS
_INT32_MAX = float(np.iinfo(np.int32).max)
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _as_int_array(values: Iterable[int]) -> np.ndarray:
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < np.iinfo(np.int16).min or arr.max() > np.iinfo(np.int16).max):
        return arr.astype(np.int32) if np.abs(arr).max() <= _INT32_MAX else arr.copy()
    return arr.astype(np.int16)


class Predictions(Sequence):
    """Predicted class index per image (int16 column); items are Python ``int``."""

    __slots__ = ("_a",)
    _a: np.ndarray

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._a = values._a if isinstance(values, Predictions) else _as_int_array(values)
        self._a.flags.writeable = False

    def __len__(self) -> int:
        return int(self._a.shape[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self._a[i].tolist())
        return int(self._a[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self._a.tolist())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self._a.astype(dtype or self._a.dtype, copy=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Predictions):
            return bool(np.array_equal(self._a, other._a))
        if isinstance(other, (tuple, list)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed types __hash__ as a method

    def __repr__(self) -> str:
        return f"Predictions(n={len(self)})"

    @property
    def nbytes(self) -> int:
        """Bytes of the column."""
        return int(self._a.nbytes)


def round_probabilities(proba: np.ndarray) -> np.ndarray:
    """``round(float(p), 6)`` of every element, vectorised, as float64 (bit-identical to Python's ``round``).

    Python rounds the exact binary value to the nearest multiple of 1e-6 (ties to even) and returns
    the float nearest to that decimal. ``rint(p * 1e6)`` finds the same multiple unless the product
    lies within rounding error of a tie; those few elements are rounded by Python itself.
    """
    p = np.asarray(proba, dtype=np.float64)
    scaled = p * _SCALE
    m = np.rint(scaled)
    out = m / _SCALE  # correctly rounded quotient = the float nearest to m * 1e-6
    near_tie = ~(np.abs(np.abs(scaled - m) - 0.5) > 1e-6) | ~np.isfinite(scaled) | (np.abs(scaled) >= 2.0**52)
    zero = (m == 0) & np.signbit(p)  # Python keeps the sign of a negative value that rounds to zero
    for idx in zip(*np.nonzero(near_tie | zero)):
        out[idx] = round(float(p[idx]), DECIMALS)
    return out


class Probabilities(Sequence):
    """Class probabilities per image, each row a ``tuple`` of Python floats.

    Stored as int32 millionths when every value is exactly ``m / 1e6`` (what :func:`round_probabilities`
    gives), else as float64; either way the values read back are the values stored.
    """

    __slots__ = ("_micro", "_exact", "_k")
    _micro: np.ndarray | None  #: int32 millionths, or None when the values are not all exact millionths
    _exact: np.ndarray | None  #: the float64 values, when ``_micro`` is None
    _k: int

    def __init__(self, rows: Any = (), k: int | None = None) -> None:
        if isinstance(rows, Probabilities):
            self._micro, self._exact, self._k = rows._micro, rows._exact, rows._k
            return
        arr = rows if isinstance(rows, np.ndarray) else np.asarray([tuple(r) for r in rows], dtype=np.float64)
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, k or 0)
        if arr.ndim != 2:
            raise ValueError(f"probabilities must be (N, K), got shape {arr.shape}")
        arr = np.asarray(arr, dtype=np.float64)
        self._k = int(arr.shape[1])
        self._micro = self._exact = None
        m = np.rint(arr * _SCALE)
        if (
            (arr.size == 0 or (np.isfinite(m).all() and np.abs(m).max() <= _INT32_MAX))
            and np.array_equal(m / _SCALE, arr)
            and not (np.signbit(arr) & (m == 0)).any()
        ):
            self._micro = m.astype(np.int32)
            self._micro.flags.writeable = False
        else:
            self._exact = arr.copy()
            self._exact.flags.writeable = False

    @classmethod
    def from_model(cls, proba: np.ndarray) -> "Probabilities":
        """The model's ``(N, K)`` probabilities rounded to 6 decimals (as results.json records them)."""
        return cls(round_probabilities(proba))

    def values(self) -> np.ndarray:
        """The ``(N, K)`` float64 values."""
        return self._exact if self._exact is not None else self._column() / _SCALE

    def _column(self) -> np.ndarray:
        """The stored column: ``_micro`` or, when it is None, ``_exact`` (``__init__`` sets exactly one)."""
        col = self._micro if self._micro is not None else self._exact
        if col is None:
            raise AssertionError("Probabilities holds neither column")
        return col

    def __len__(self) -> int:
        return int(self._column().shape[0])

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(tuple(r) for r in self.values()[i].tolist())
        return tuple(self.values()[i].tolist())

    def __iter__(self) -> Iterator[tuple[float, ...]]:
        for start in range(0, len(self), 4096):
            yield from (tuple(r) for r in self.values()[start : start + 4096].tolist())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        v = self.values()
        return v.astype(dtype or v.dtype, copy=True)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Probabilities):
            return self._k == other._k and bool(np.array_equal(self.values(), other.values()))
        if isinstance(other, (tuple, list)):
            return tuple(self) == tuple(tuple(r) for r in other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed types __hash__ as a method

    def __repr__(self) -> str:
        return f"Probabilities(n={len(self)}, k={self._k})"

    @property
    def nbytes(self) -> int:
        """Bytes of the column."""
        return int(self._column().nbytes)


class TextColumn(Sequence):
    """Strings (file paths) held compactly: the part up to the last ``/`` as a code into a vocabulary of
    folders, the rest in one UTF-8 buffer. About 15 bytes per item plus its file name, where a list of
    ``str`` costs ~60 bytes plus the whole path. Items come back as the same ``str`` (lone surrogates of
    undecodable file names included); :meth:`append` adds one.
    """

    __slots__ = ("_dirs", "_dir_code", "_code", "_buf", "_end")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._dirs: list[str] = []
        self._dir_code: dict[str, int] = {}
        self._code = array("i")
        self._buf = bytearray()
        self._end = array("q")
        for v in values:
            self.append(v)

    def append(self, value: str) -> None:
        """Add ``value`` at the end."""
        if not isinstance(value, str):
            raise TypeError(f"TextColumn holds str, got {type(value).__name__}")
        cut = value.rfind("/") + 1
        folder = value[:cut]
        code = self._dir_code.get(folder)
        if code is None:
            code = self._dir_code[folder] = len(self._dirs)
            self._dirs.append(folder)
        self._code.append(code)
        self._buf += value[cut:].encode("utf-8", "surrogatepass")
        self._end.append(len(self._buf))

    def __len__(self) -> int:
        return len(self._end)

    def _item(self, i: int) -> str:
        start = self._end[i - 1] if i else 0
        return self._dirs[self._code[i]] + self._buf[start : self._end[i]].decode("utf-8", "surrogatepass")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"item {i} out of range for {n} items")
        return self._item(i + n if i < 0 else i)

    def __iter__(self) -> Iterator[str]:
        return (self._item(i) for i in range(len(self)))

    def take(self, indices: Iterable[int]) -> "TextColumn":
        """A new column of the items ``indices``, in that order."""
        return TextColumn(self[int(i)] for i in indices)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (TextColumn, tuple, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed types __hash__ as a method

    def __repr__(self) -> str:
        return f"TextColumn(n={len(self)}, folders={len(self._dirs)})"

    @property
    def nbytes(self) -> int:
        """Bytes of the buffer and the per-item codes and offsets (the folder vocabulary not included)."""
        return len(self._buf) + self._code.itemsize * len(self._code) + self._end.itemsize * len(self._end)


_SAMPLE_KEYS = ("path", "label", "label_index", "patient_id", "sha256")


class SampleTable(Sequence):
    """The per-image sample rows of a result (``path``, ``label``, ``label_index``, ``patient_id``, ``sha256``).

    Items are fresh dicts equal to the rows given. Rows with other keys or value types than a
    scan writes are kept as given (``compact`` is then False).
    """

    __slots__ = ("_paths", "_label_vocab", "_label", "_label_index", "_pid_vocab", "_pid", "_sha", "_has_sha", "_rows")

    def __init__(self, rows: Iterable[dict] = ()) -> None:
        if isinstance(rows, SampleTable):
            for name in self.__slots__:
                setattr(self, name, getattr(rows, name))
            return
        for name in self.__slots__:  # a table kept as given rows leaves the columns unset: copies read them all
            setattr(self, name, None)
        # one pass, so rows may come from a generator and are never all held as dicts
        labels: dict[str, int] = {}
        pids: dict[str, int] = {}
        paths, label, label_index, pid = TextColumn(), array("i"), array("q"), array("i")
        sha, has_sha = bytearray(), bytearray()
        it = iter(rows)
        for r in it:
            if not _compactable(r) or not _INT64_MIN <= r["label_index"] <= _INT64_MAX:
                self._label_vocab, self._pid_vocab = list(labels), list(pids)
                self._paths, self._label = paths, np.frombuffer(label, np.int32)
                self._label_index = np.frombuffer(label_index, np.int64)
                self._pid, self._sha = np.frombuffer(pid, np.int32), np.frombuffer(bytes(sha), np.uint8).reshape(-1, 32)
                self._has_sha = np.frombuffer(bytes(has_sha), bool)
                head = [self[i] for i in range(len(paths))]
                for name in self.__slots__:
                    setattr(self, name, None)
                self._rows = (*head, r, *it)
                return
            paths.append(r["path"])
            label.append(labels.setdefault(r["label"], len(labels)))
            label_index.append(r["label_index"])
            pid.append(-1 if r["patient_id"] is None else pids.setdefault(r["patient_id"], len(pids)))
            has_sha.append(bool(r["sha256"]))
            sha += bytes.fromhex(r["sha256"]) if r["sha256"] else bytes(32)
        self._paths = paths
        self._label = _as_int_array(np.frombuffer(label, np.int32))
        self._label_index = _as_int_array(np.frombuffer(label_index, np.int64))
        self._pid = np.frombuffer(pid, np.int32).copy()
        self._has_sha = np.frombuffer(bytes(has_sha), np.uint8).astype(bool)
        self._sha = np.frombuffer(bytes(sha), np.uint8).reshape(-1, 32).copy()
        self._label_vocab = list(labels)
        self._pid_vocab = list(pids)

    @property
    def compact(self) -> bool:
        """Whether the rows are held as columns."""
        return self._rows is None

    def __len__(self) -> int:
        return len(self._rows) if self._rows is not None else len(self._paths)

    def __getitem__(self, i):
        if self._rows is not None:
            return self._rows[i]
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        if i < 0:
            i += len(self)
        pid = int(self._pid[i])
        return {
            "path": self._paths[i],
            "label": self._label_vocab[int(self._label[i])],
            "label_index": int(self._label_index[i]),
            "patient_id": None if pid < 0 else self._pid_vocab[pid],
            "sha256": self._sha[i].tobytes().hex() if self._has_sha[i] else "",
        }

    def __iter__(self) -> Iterator[dict]:
        if self._rows is not None:
            return iter(self._rows)
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SampleTable, tuple, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # unhashable; typeshed types __hash__ as a method

    def __repr__(self) -> str:
        return f"SampleTable(n={len(self)})"

    @property
    def nbytes(self) -> int:
        """Bytes of the columns, paths included (the label and patient vocabularies, held once, are not)."""
        if self._rows is not None:
            return 0
        return int(
            self._paths.nbytes
            + self._label.nbytes
            + self._label_index.nbytes
            + self._pid.nbytes
            + self._sha.nbytes
            + self._has_sha.nbytes
        )


def _compactable(r: Any) -> bool:
    if not isinstance(r, dict) or tuple(sorted(r)) != tuple(sorted(_SAMPLE_KEYS)):
        return False
    sha = r["sha256"]
    return (
        isinstance(r["path"], str)
        and isinstance(r["label"], str)
        and type(r["label_index"]) is int
        and (r["patient_id"] is None or isinstance(r["patient_id"], str))
        and isinstance(sha, str)
        and (sha == "" or is_sha256_hex(sha))
    )


def is_sha256_hex(value: str) -> bool:
    """True when ``value`` is a SHA-256 as ``hexdigest()`` writes it: 64 lower-case hex digits."""
    if len(value) != 64 or value != value.lower():
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True
