"""Plain data types shared by every layer of xray-audit.

This module imports nothing from the rest of the package, so any layer may
import it. Everything here is a frozen dataclass or a small enum-like set of
string constants; results are JSON-compatible (``to_dict``/``from_dict``).

Conventions used across the package:

* An *image batch* is a ``numpy.ndarray`` (or ``torch.Tensor`` inside
  attacks) of shape ``(N, 1, H, W)``, dtype float32, grey values in ``[0, 1]``.
  Channel replication, layout (NCHW/NHWC) and intensity scaling happen only in
  the model adapters, driven by :class:`ModelSpec`.
* Class indices always refer to ``ModelSpec.class_names`` of the target model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

SCHEMA_VERSION = "1.0"

#: largest image (height x width) the tool decodes or feeds to a model; a decompression-bomb and
#: untrusted-model guard (the same figure as ``auditor.data.limits.MAX_PIXELS``)
MAX_IMAGE_PIXELS = 64_000_000

#: prefix of the data caveats the auditor states with ``scan --caveat`` (results.json ``data.caveats``)
STATED_CAVEAT_PREFIX = "stated by the auditor: "

LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float16", "uint8")
OUTPUT_KINDS = ("logits", "probabilities", "sigmoid_logit", "sigmoid_probability")
#: Named intensity scalings. ``custom`` uses explicit mean/std.
SCALINGS = ("unit", "0-255", "imagenet", "minus1-1", "custom")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Input/output contract of an image classifier.

    The model receives ``(x_in_0_1 * factor - mean) / std`` per channel where
    ``factor`` is 255 for the ``0-255`` scaling and 1 otherwise; see
    :func:`auditor.models.spec.scaling_mean_std`.
    """

    input_name: str = "input"
    layout: str = "NCHW"
    channels: int = 3
    height: int = 224
    width: int = 224
    dtype: str = "float32"
    scaling: str = "unit"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    output_name: str = "output"
    output_kind: str = "logits"
    class_names: tuple[str, ...] = ()
    dynamic_batch: bool = True
    dynamic_size: bool = False
    #: where each field came from: "graph", "metadata", "sidecar", "flag", "default"
    sources: dict[str, str] = field(default_factory=dict)
    #: warnings raised while reading the contract (e.g. defaulted scaling)
    warnings: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of classes the model distinguishes (2 for a single sigmoid unit)."""
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary."""
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["class_names"] = list(self.class_names)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelSpec keys: {sorted(unknown)}")
        kw = dict(d)
        for key in ("mean", "std", "class_names", "warnings"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


# ----------------------------------------------------------------- compact per-image outcome stores
# Compact per-image outcome stores: what a scan keeps per image and condition, as numpy columns.
#
# A scan of 100,000 images keeps, per condition, one predicted class and ``K`` class probabilities
# per image, and once per scan a sample row (path, label, label index, patient id, SHA-256). Held
# as Python tuples and dicts these cost ~120 bytes per image and condition and ~300 bytes per
# sample row; here they are numpy columns:
#
# * :class:`Predictions`: int16 class indices (2 bytes per image and condition);
# * :class:`Probabilities`: the probabilities rounded to 6 decimals, stored as int32 millionths
#   (4 bytes per class) when that is lossless, else as the float64 values themselves;
# * :class:`SampleTable`: paths once, labels and patient ids as codes into interned vocabularies,
#   the SHA-256 as 32 raw bytes.
#
# All three are read-only sequences that give back exactly the Python values the tuples held
# (``int``, ``tuple`` of ``float``, ``dict``), so results.json is unchanged byte for byte.
# ``nbytes`` is the memory of the columns (the test of the bound reads it).

#: probabilities are kept (and written to results.json) to this many decimals
DECIMALS = 6
_SCALE = 10.0**DECIMALS
_INT32_MAX = float(np.iinfo(np.int32).max)


def _as_int_array(values: Iterable[int]) -> np.ndarray:
    arr = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64).reshape(-1)
    if arr.size and (arr.min() < np.iinfo(np.int16).min or arr.max() > np.iinfo(np.int16).max):
        return arr.astype(np.int32) if np.abs(arr).max() <= _INT32_MAX else arr.copy()
    return arr.astype(np.int16)


class Predictions(Sequence):
    """Predicted class index per image (int16 column); items are Python ``int``."""

    __slots__ = ("_a",)

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

    __hash__ = None  # type: ignore[assignment]

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
        return self._exact if self._exact is not None else self._micro / _SCALE

    def __len__(self) -> int:
        col = self._micro if self._micro is not None else self._exact
        return int(col.shape[0])

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

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Probabilities(n={len(self)}, k={self._k})"

    @property
    def nbytes(self) -> int:
        """Bytes of the column."""
        col = self._micro if self._micro is not None else self._exact
        return int(col.nbytes)


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
        rows = rows if isinstance(rows, (list, tuple)) else list(rows)
        self._rows = None
        if not all(_compactable(r) for r in rows):
            self._rows = tuple(rows)
            return
        labels: dict[str, int] = {}
        pids: dict[str, int] = {}
        self._paths = [r["path"] for r in rows]
        self._label = _as_int_array([labels.setdefault(r["label"], len(labels)) for r in rows])
        self._label_index = _as_int_array([r["label_index"] for r in rows])
        self._pid = np.asarray(
            [-1 if r["patient_id"] is None else pids.setdefault(r["patient_id"], len(pids)) for r in rows],
            dtype=np.int32,
        )
        self._has_sha = np.asarray([bool(r["sha256"]) for r in rows], dtype=bool)
        sha = np.zeros((len(rows), 32), dtype=np.uint8)
        for i, r in enumerate(rows):
            if r["sha256"]:
                sha[i] = np.frombuffer(bytes.fromhex(r["sha256"]), dtype=np.uint8)
        self._sha = sha
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

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SampleTable(n={len(self)})"

    @property
    def nbytes(self) -> int:
        """Bytes of the numeric columns (the path strings, held once, are not included)."""
        if self._rows is not None:
            return 0
        return int(
            self._label.nbytes + self._label_index.nbytes + self._pid.nbytes + self._sha.nbytes + self._has_sha.nbytes
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
        and (sha == "" or (len(sha) == 64 and sha == sha.lower() and _is_hex(sha)))
    )


def _is_hex(s: str) -> bool:
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Sample:
    """One image of a dataset: where it is, its label and its patient (slots: ~150 bytes less per image)."""

    path: str  #: absolute path on disk
    label: str  #: label as written in the dataset (before mapping)
    rel_path: str = ""  #: path relative to the dataset root, used in reports
    patient_id: str | None = None
    sha256: str = ""


@dataclass(frozen=True)
class Skipped:
    """Something that could not run or be read, with the reason. Never dropped silently."""

    name: str
    reason: str
    kind: str = "item"  #: "image", "attack", "defense", "condition", "detector", ...

    def to_dict(self) -> dict[str, str]:
        """JSON-compatible dictionary."""
        return {"name": self.name, "reason": self.reason, "kind": self.kind}


def eps_name(eps: float) -> str:
    """``8/255`` -> ``"8"``; non-integer multiples of 1/255 keep two decimals."""
    v = eps * 255
    return str(int(round(v))) if abs(v - round(v)) < 1e-6 else f"{v:.2f}"


#: joins an adaptive (BPDA) condition's attacked set and its defense: ``usmm@16+bpda:jpeg:75``
ADAPTIVE_MARK = "+bpda:"


@dataclass(frozen=True)
class SetId:
    """An undefended input condition as data: clean, one attack at one budget, or a style blend.

    :attr:`name` is the condition name results.json carries: ``clean``, ``usmm@8``, ``stm[randconv]@16``
    (STM names its style backend, so no headline passes a substitute off as the paper's style network),
    ``blend@0.3`` (a blend names its opacity).
    """

    attack: str | None = None  #: None: the clean images
    epsilon: float | None = None  #: L-inf budget in [0, 1] units (gradient attacks)
    style_backend: str | None = None  #: STM's style backend
    alpha: float | None = None  #: opacity of a style blend

    @property
    def name(self) -> str:
        """The condition name of the set."""
        if self.attack is None:
            return "clean"
        if self.alpha is not None:
            return f"{self.attack}@{self.alpha:g}"
        backend = f"[{self.style_backend}]" if self.attack == "stm" and self.style_backend else ""
        return f"{self.attack}{backend}@{eps_name(self.epsilon)}"


@dataclass(frozen=True)
class ConditionId:
    """Which images a condition scores, as data: an undefended set (``base``, a :attr:`SetId.name`), optionally
    seen through a ``defense``, optionally attacked through that defense (``adaptive``, BPDA).

    :attr:`name` builds the condition names of results.json (``usmm@8``, ``jpeg:75/usmm@8``,
    ``jpeg:75/clean``, ``usmm@8+bpda:jpeg:75``); :meth:`parse` is its inverse, the one place that reads
    a name back.
    """

    base: str = "clean"
    defense: str | None = None
    adaptive: bool = False

    @property
    def name(self) -> str:
        """The condition name."""
        if not self.defense:
            return self.base
        return f"{self.base}{ADAPTIVE_MARK}{self.defense}" if self.adaptive else f"{self.defense}/{self.base}"

    @classmethod
    def parse(cls, name: str, defense: str | None = None, adaptive: bool = False) -> "ConditionId":
        """The identifier of the condition ``name`` whose ``defense`` field (results.json) is ``defense``;
        ``adaptive`` is its ``extra.adaptive`` flag. Total: a name outside the grammar keeps its text as the base.

        Only a condition with a defense can be adaptive (flagged, or named with :data:`ADAPTIVE_MARK`).
        """
        if defense and (adaptive or ADAPTIVE_MARK in name):
            return cls(name.split(ADAPTIVE_MARK, 1)[0], defense, True)
        if defense and name.startswith(f"{defense}/"):
            return cls(name[len(defense) + 1 :], defense)
        if "/" in name:
            head, base = name.split("/", 1)
            return cls(base, defense or head)
        return cls(name, defense)


@dataclass(frozen=True)
class Condition:
    """Evaluation of the target on one input condition (clean, attacked, defended).

    ``metrics`` follows the results.json schema: ``accuracy``, ``accuracy_ci``,
    ``macro_f1``, ``macro_f1_ci``, ``weighted_f1``, ``per_class`` {class:
    {precision, recall, f1, support, sensitivity, specificity}},
    ``confusion_matrix``, ``labels``, ``n``.
    """

    name: str
    kind: str  #: "clean" | "attack" | "defense" | "style_blend"
    metrics: dict[str, Any]
    attack: str | None = None
    epsilon: float | None = None
    surrogate: str | None = None
    threat_model: str | None = None  #: "transfer" | "white-box" | None
    defense: str | None = None
    #: attack_success_rate, flip_rate, linf_mean, l2_mean, ssim_mean, psnr_mean, cost_ms_per_image, ...
    extra: dict[str, Any] = field(default_factory=dict)
    #: predicted class index per sample, aligned with AuditResult.samples
    predictions: tuple[int, ...] = ()
    #: class probabilities per sample (one tuple of K floats each), aligned with AuditResult.samples
    probabilities: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self) -> None:
        # kept as compact numpy columns (auditor.outcomes); they read back as the same ints and float tuples
        object.__setattr__(self, "predictions", Predictions(self.predictions))
        object.__setattr__(self, "probabilities", Probabilities(self.probabilities))

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        """JSON-compatible dictionary (predictions go to samples.csv unless asked)."""
        d = {
            "name": self.name,
            "kind": self.kind,
            "attack": self.attack,
            "epsilon": self.epsilon,
            "surrogate": self.surrogate,
            "threat_model": self.threat_model,
            "defense": self.defense,
            "metrics": self.metrics,
        }
        d.update(self.extra)
        if with_predictions:
            d["predictions"] = list(self.predictions)
            if self.probabilities:
                d["probabilities"] = [list(p) for p in self.probabilities]
        return d


@dataclass(frozen=True)
class GateOutcome:
    """One acceptance criterion (``--fail-under name=threshold``) and its verdict."""

    name: str
    threshold: float
    value: float | None
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AuditResult:
    """Everything a scan produced; the only input of the renderers.

    ``model`` holds ``path``, ``sha256``, ``spec`` (ModelSpec dict);
    ``data`` holds ``root``, ``format``, ``manifest_sha256``, ``n_images``,
    ``per_class``, ``skipped`` (list of Skipped dicts), ``caveats``;
    ``samples`` is one dict per image (``path``, ``label``, ``label_index``,
    ``patient_id``, ``sha256``) aligned with every condition's predictions.
    """

    schema_version: str
    tool_version: str
    created: str
    finished: str
    command: str
    model: dict[str, Any]
    data: dict[str, Any]
    conditions: tuple[Condition, ...]
    samples: tuple[dict[str, Any], ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()
    detector: dict[str, Any] | None = None
    gates: tuple[GateOutcome, ...] = ()
    #: results of further models scanned with ``--compare`` (same data and sets)
    compared: tuple["AuditResult", ...] = ()
    #: free-form extras a later stage adds (examples, figures meta, ...)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one compact table of the sample rows (auditor.outcomes.SampleTable); items read back as the same dicts
        object.__setattr__(self, "samples", SampleTable(self.samples))

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the target model."""
        return tuple(self.model.get("spec", {}).get("class_names", ()))

    def condition(self, name: str) -> Condition | None:
        """The condition with this name, or None."""
        for c in self.conditions:
            if c.name == name:
                return c
        return None

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        """The results.json document."""
        return {
            "schema_version": self.schema_version,
            "tool_version": self.tool_version,
            "created": self.created,
            "finished": self.finished,
            "command": self.command,
            "model": self.model,
            "data": self.data,
            "parameters": self.parameters,
            "environment": self.environment,
            "conditions": [c.to_dict(with_predictions) for c in self.conditions],
            "skipped": [s.to_dict() for s in self.skipped],
            "detector": self.detector,
            "gates": [g.to_dict() for g in self.gates],
            "compared": [r.to_dict(with_predictions) for r in self.compared],
            "extras": self.extras,
            "samples": list(self.samples) if with_predictions else [],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditResult":
        """Rebuild from a results.json document (see ``auditor.report.load_results``)."""
        cond_keys = {
            "name",
            "kind",
            "attack",
            "epsilon",
            "surrogate",
            "threat_model",
            "defense",
            "metrics",
            "predictions",
            "probabilities",
        }
        conditions = []
        for c in d.get("conditions", []):
            extra = {k: v for k, v in c.items() if k not in cond_keys}
            conditions.append(
                Condition(
                    name=c["name"],
                    kind=c["kind"],
                    metrics=c["metrics"],
                    attack=c.get("attack"),
                    epsilon=c.get("epsilon"),
                    surrogate=c.get("surrogate"),
                    threat_model=c.get("threat_model"),
                    defense=c.get("defense"),
                    extra=extra,
                    predictions=tuple(c.get("predictions", ())),
                    probabilities=tuple(tuple(p) for p in c.get("probabilities", ())),
                )
            )
        return cls(
            schema_version=d["schema_version"],
            tool_version=d["tool_version"],
            created=d["created"],
            finished=d.get("finished", ""),
            command=d.get("command", ""),
            model=d["model"],
            data=d["data"],
            conditions=tuple(conditions),
            samples=tuple(d.get("samples", ())),
            parameters=d.get("parameters", {}),
            environment=d.get("environment", {}),
            skipped=tuple(Skipped(**s) for s in d.get("skipped", [])),
            detector=d.get("detector"),
            gates=tuple(GateOutcome(**g) for g in d.get("gates", [])),
            compared=tuple(cls.from_dict(r) for r in d.get("compared", [])),
            extras=d.get("extras", {}),
        )
