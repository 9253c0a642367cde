"""Plain data types shared by every layer of xray-audit.

This module imports nothing from the rest of the package but the compact
per-image outcome columns of :mod:`auditor.outcomes` (the foundation layer), so
any layer may import it. Everything here is a frozen dataclass or a small enum-like set of
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
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

# the typed records a condition and a result carry (extras, detectors)
from auditor.detector_records import DetectorResult

# the compact per-image outcome columns that Condition and AuditResult hold
from auditor.outcomes import Predictions, Probabilities, SampleTable
from auditor.result_records import ConditionExtra

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
    :func:`auditor.models.inputs.scaling_mean_std`.
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


@dataclass(frozen=True, slots=True)
class Sample:
    """One image of a dataset: where it is, its label and its patient (slots: ~150 bytes less per image)."""

    path: str  #: absolute path on disk
    label: str  #: label as written in the dataset (before mapping)
    rel_path: str = ""  #: path relative to the dataset root, used in reports
    patient_id: str | None = None
    sha256: str = ""


#: characters that steer a terminal or a text viewer instead of showing: C0 controls but tab and newline,
#: DEL, C1 controls (ESC starts an ANSI sequence), and the bidirectional overrides (CVE-2021-42574)
_STEERING = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: the same plus tab, newline and carriage return: what one line on a terminal must not hold
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 256 else f"\\u{c:04x}"


def printable(text: str) -> str:
    """``text`` as any report can hold it: a file name whose bytes are not UTF-8 (which Python keeps as lone
    surrogates) gets ``\\xNN`` escapes for those bytes, and characters that steer a terminal or viewer
    (ANSI escape sequences, other control characters, bidirectional overrides) get ``\\xNN``/``\\uNNNN``
    escapes; tab and newline stay (one-line outputs use :func:`one_line`). Plain text is returned unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that no file name decoding makes
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _STEERING.sub(_escape, text)


def one_line(text: str) -> str:
    """``text`` safe for one line of a terminal: :func:`printable`, and line breaks, tabs and carriage returns
    escaped too (so a file name cannot forge a second line such as a fake "all gates passed")."""
    return _LINE_BREAKING.sub(_escape, printable(text))


@dataclass(frozen=True)
class Skipped:
    """Something that could not run or be read, with the reason. Never dropped silently.

    ``name`` and ``reason`` are made :func:`printable` (an undecodable file name must not break a report).
    """

    name: str
    reason: str
    kind: str = "item"  #: "image", "attack", "defense", "condition", "detector", ...

    def __post_init__(self) -> None:
        for attr in ("name", "reason"):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, printable(value))

    def to_dict(self) -> dict[str, str]:
        """JSON-compatible dictionary."""
        return {"name": self.name, "reason": self.reason, "kind": self.kind}


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
    threat_model: str | None = None  #: one of :data:`auditor.condition_ids.THREAT_MODELS`, or None (clean, blend)
    defense: str | None = None
    #: what the condition measured besides its metrics (attack rates, perturbation sizes, cost, ...); a mapping of
    #: results.json keys given here is read with :meth:`ConditionExtra.from_json`
    extra: ConditionExtra = field(default_factory=ConditionExtra)
    #: predicted class index per sample, aligned with AuditResult.samples
    predictions: Sequence[int] = ()
    #: class probabilities per sample (one tuple of K floats each), aligned with AuditResult.samples
    probabilities: Sequence[Sequence[float]] = ()

    def __post_init__(self) -> None:
        # kept as compact numpy columns (auditor.outcomes); they read back as the same ints and float tuples
        object.__setattr__(self, "predictions", Predictions(self.predictions))
        object.__setattr__(self, "probabilities", Probabilities(self.probabilities))
        if not isinstance(self.extra, ConditionExtra):
            object.__setattr__(self, "extra", ConditionExtra.from_json(self.extra))

    def to_dict(self, with_predictions: bool = False) -> dict[str, Any]:
        """JSON-compatible dictionary (predictions go to samples.csv unless asked)."""
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "attack": self.attack,
            "epsilon": self.epsilon,
            "surrogate": self.surrogate,
            "threat_model": self.threat_model,
            "defense": self.defense,
            "metrics": self.metrics,
        }
        d.update(self.extra.to_json())
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
    samples: Sequence[dict[str, Any]] = ()
    parameters: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()
    #: both detectors' results (a results.json mapping given here is read with :meth:`DetectorResult.from_json`)
    detector: DetectorResult | None = None
    gates: tuple[GateOutcome, ...] = ()
    #: results of further models scanned with ``--compare`` (same data and sets)
    compared: tuple["AuditResult", ...] = ()
    #: free-form extras a later stage adds (examples, figures meta, ...)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one compact table of the sample rows (auditor.outcomes.SampleTable); items read back as the same dicts
        object.__setattr__(self, "samples", SampleTable(self.samples))
        if self.detector is not None and not isinstance(self.detector, DetectorResult):
            object.__setattr__(self, "detector", DetectorResult.from_json(self.detector))

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
            "detector": None if self.detector is None else self.detector.to_json(),
            "gates": [g.to_dict() for g in self.gates],
            "compared": [r.to_dict(with_predictions) for r in self.compared],
            "extras": self.extras,
            "samples": list(self.samples) if with_predictions else [],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "AuditResult":
        """Rebuild from a results.json document (see ``auditor.report.io.load_results``)."""
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
            extra = ConditionExtra.from_json({k: v for k, v in c.items() if k not in cond_keys})
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
            detector=DetectorResult.from_json(d["detector"]) if isinstance(d.get("detector"), dict) else None,
            gates=tuple(GateOutcome(**g) for g in d.get("gates", [])),
            compared=tuple(cls.from_dict(r) for r in d.get("compared", [])),
            extras=d.get("extras", {}),
        )
