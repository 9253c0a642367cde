"""The typed records a result is made of, below :class:`~auditor.types.AuditResult`: what a condition
measured besides its metrics (:class:`ConditionExtra`), what results.json records about each adversarial set
(:class:`AttackSetMeta`, :class:`BlendSetMeta`, :class:`AdaptiveSetMeta`) and what the detectors found
(:class:`DetectorResult`).

Every record is frozen and has a ``to_json`` that writes exactly the JSON of results.json and a
``from_json`` that reads it back, including the results.json files of earlier versions (keys they lack
read as None; :class:`ConditionExtra` keeps keys it does not name and writes them back). The module
imports nothing from the project (foundation layer, docs/architecture.md §2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

#: a JSON value carried through unchanged (a nested block another layer defines, e.g. the transfer diagnostics)
Json = Any


# ---------------------------------------------------------------------------------------------- conditions


@dataclass(frozen=True, slots=True)
class QueryCurve:
    """Success against queries of a query attack (see :func:`auditor.scan.evaluate.query_curve`)."""

    budget: int
    mean_used: float | None
    median_used_successful: float | None
    #: ``[queries, share of clean-correct images fooled within them]`` pairs (share None without such images)
    curve: tuple[tuple[int, float | None], ...]

    def to_json(self) -> dict[str, Any]:
        """The ``queries`` block of a condition in results.json."""
        return {
            "budget": self.budget,
            "mean_used": self.mean_used,
            "median_used_successful": self.median_used_successful,
            "curve": [list(p) for p in self.curve],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> QueryCurve:
        """Inverse of :meth:`to_json`."""
        return cls(
            int(d.get("budget") or 0),
            d.get("mean_used"),
            d.get("median_used_successful"),
            tuple((p[0], p[1]) for p in d.get("curve") or ()),
        )


@dataclass(frozen=True, slots=True)
class ConditionExtra:
    """What one condition measured besides its metrics; results.json writes these keys next to ``metrics``.

    Which keys a condition holds depends on what it is: attack rates (every condition but clean),
    perturbation sizes (attacked and adaptive sets), the set's label, cache hit, style backend and diversity
    (attacked), the opacity of a style blend, the query curve of a query attack, the transfer diagnostics
    of a surrogate attack, a defense's cost and recovered share, and the comparison of an adaptive (BPDA)
    condition with its non-adaptive one. A field is written when it is not None or is named in ``nulls``
    (results.json then holds it as null).
    """

    attack_success_rate: float | None = None
    attack_success_rate_ci: list[float] | None = None
    flip_rate: float | None = None
    flip_rate_ci: list[float] | None = None
    n_clean_correct: int | None = None
    n_fooled: int | None = None
    n_flipped: int | None = None
    #: how the rates' intervals were resampled (``n_boot``, ``unit``, ``seed``, ``level``)
    rates_bootstrap: Json = None
    linf_mean: float | None = None
    linf_max: float | None = None
    l2_mean: float | None = None
    ssim_mean: float | None = None
    psnr_mean: float | None = None
    adaptive: bool | None = None
    label: str | None = None
    cache_hit: bool | None = None
    backend: str | None = None
    gradient: str | None = None
    #: a style attack's measured diversity (``near_affine_share``, ``copies``, ...)
    style_diversity: Json = None
    opacity: float | None = None
    queries: QueryCurve | None = None
    #: the per-set transfer diagnostics (:func:`auditor.transfer.set_diagnostics`)
    transfer: Json = None
    cost_ms_per_image: float | None = None
    recovered_rate: float | None = None
    accuracy_drop_vs_non_adaptive: float | None = None
    benefit_vanishes: bool | None = None
    #: fields results.json holds as null (present although None)
    nulls: frozenset[str] = frozenset()
    #: keys this version does not name (a results.json of another version), written back unchanged
    unknown: tuple[tuple[str, Json], ...] = ()

    def rate_and_ci(self, rate: str) -> tuple[float | None, list[float] | None]:
        """``attack_success_rate`` or ``flip_rate`` and its 95% interval."""
        if rate == "attack_success_rate":
            return self.attack_success_rate, self.attack_success_rate_ci
        if rate == "flip_rate":
            return self.flip_rate, self.flip_rate_ci
        raise ValueError(f"not a rate of a condition: {rate!r}")

    def present(self) -> Iterable[tuple[str, Any]]:
        """``(name, value)`` of every named field results.json holds, in field order."""
        for f in _EXTRA_FIELDS:
            value = getattr(self, f)
            if value is not None or f in self.nulls:
                yield f, value

    def to_json(self) -> dict[str, Any]:
        """The keys results.json writes next to the condition's ``metrics``."""
        out = {k: (v.to_json() if isinstance(v, QueryCurve) else v) for k, v in self.present()}
        out.update(self.unknown)
        return out

    def with_(self, **fields: Any) -> ConditionExtra:
        """A copy with ``fields`` set; a field given as None is written as null."""
        nulls = (self.nulls | {k for k, v in fields.items() if v is None}) - {
            k for k, v in fields.items() if v is not None
        }
        return dataclasses.replace(self, nulls=frozenset(nulls), **fields)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ConditionExtra:
        """The extra keys of one condition of results.json (or one JSON object of such keys)."""
        known = {k: v for k, v in d.items() if k in _EXTRA_FIELDS}
        if isinstance(known.get("queries"), Mapping):
            known["queries"] = QueryCurve.from_json(known["queries"])
        return cls(
            **known,
            nulls=frozenset(k for k, v in known.items() if v is None),
            unknown=tuple((k, v) for k, v in d.items() if k not in _EXTRA_FIELDS),
        )


_EXTRA_FIELDS = tuple(f.name for f in dataclasses.fields(ConditionExtra) if f.name not in ("nulls", "unknown"))


# --------------------------------------------------------------------------------------------------- sets


@dataclass(frozen=True, slots=True)
class AttackSetMeta:
    """A set made by an attack (on a surrogate, or the target's queries): its entry in results.json
    ``extras.adversarial_sets``."""

    name: str
    key: str
    dir: str
    cache_hit: bool
    seconds: float
    seconds_per_image: float | None
    backend: str | None  #: style backend (STM), else None
    cache_warnings: tuple[str, ...]
    style_diversity: Json
    #: the identity of the model attacked (a surrogate's checkpoints, or the target's queries)
    surrogate: Json
    params: Json  #: the attack's effective parameters

    def to_json(self) -> dict[str, Any]:
        """The set's entry in results.json ``extras.adversarial_sets``."""
        return {**_as_dict(self), "cache_warnings": list(self.cache_warnings)}


@dataclass(frozen=True, slots=True)
class BlendSetMeta:
    """A visible style-blend set: its entry in results.json ``extras.adversarial_sets``."""

    name: str
    style_image: str
    cache_hit: bool = False
    backend: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The set's entry in results.json ``extras.adversarial_sets``."""
        return _as_dict(self)


@dataclass(frozen=True, slots=True)
class AdaptiveSetMeta:
    """An adaptive (BPDA) set: its entry in results.json ``extras.adversarial_sets``."""

    name: str
    key: str
    cache_hit: bool
    gradient: str  #: ``exact`` or ``straight-through``: how the defense's torch path was differentiated
    seconds: float
    backend: str | None

    def to_json(self) -> dict[str, Any]:
        """The set's entry in results.json ``extras.adversarial_sets``."""
        return _as_dict(self)


SetMeta = Union[AttackSetMeta, BlendSetMeta, AdaptiveSetMeta]


def set_meta_from_json(d: Mapping[str, Any]) -> SetMeta:
    """One entry of results.json ``extras.adversarial_sets`` (keys an older file lacks read as None or empty)."""
    name, key, hit, backend = (
        str(d.get("name") or ""),
        str(d.get("key") or ""),
        bool(d.get("cache_hit")),
        d.get("backend"),
    )
    seconds = float(d.get("seconds") or 0.0)
    if "gradient" in d:
        return AdaptiveSetMeta(name, key, hit, str(d["gradient"]), seconds, backend)
    if "style_image" in d:
        return BlendSetMeta(name, str(d["style_image"]), hit, backend)
    return AttackSetMeta(
        name,
        key,
        str(d.get("dir") or ""),
        hit,
        seconds,
        d.get("seconds_per_image"),
        backend,
        tuple(d.get("cache_warnings") or ()),
        d.get("style_diversity"),
        d.get("surrogate"),
        d.get("params"),
    )


def _as_dict(record: Any) -> dict[str, Any]:
    """The fields of a flat record as a dict (no deep copy, unlike :func:`dataclasses.asdict`)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


# ---------------------------------------------------------------------------------------------- detectors


@dataclass(frozen=True, slots=True)
class RocCurve:
    """A detector score's ROC on one condition: its AUC and curve (:func:`auditor.metrics.compute_roc`)."""

    score: str  #: the score's name (``edge``, ``ssim``, ``score``; empty in a single-score older file)
    auc: float | None
    points: tuple[tuple[float, float], ...]  #: ``(fpr, tpr)``, at most 50

    @property
    def fpr(self) -> list[float]:
        """False-positive rates of the curve's points."""
        return [p[0] for p in self.points]

    @property
    def tpr(self) -> list[float]:
        """True-positive rates of the curve's points."""
        return [p[1] for p in self.points]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """One detector score on one condition: the share flagged by it alone (the reference detector's
    scores; None when the detector flags on one score), the score's mean and its ROC."""

    score: str
    mean: float | None
    roc: RocCurve
    detection_rate: float | None = None


@dataclass(frozen=True, slots=True)
class DetectionRow:
    """A detector on the held-out images of one attacked condition."""

    condition: str
    n: int
    detection_rate: float | None
    scores: tuple[ScoreResult, ...]
    #: whether each score's own detection rate is recorded (the reference detector: edge and SSIM)
    per_score_rates: bool = False

    def measures(self) -> list[tuple[str, float | None]]:
        """The row's numbers as results.json names them (everything but the ROC points)."""
        out: list[tuple[str, float | None]] = [("n", self.n), ("detection_rate", self.detection_rate)]
        if self.per_score_rates:
            out += [(f"detection_rate_{s.score}", s.detection_rate) for s in self.scores]
        named = [s for s in self.scores if s.score]  # an older file's single unnamed curve has no columns
        out += [(f"auc_{s.score}", s.roc.auc) for s in named]
        out += [(f"mean_{s.score}", s.mean) for s in named]
        return out

    def to_json(self) -> dict[str, Any]:
        """The condition's entry in a detector's ``per_condition``."""
        out: dict[str, Any] = dict(self.measures())
        out.update((f"roc_{s.score}", [list(p) for p in s.roc.points]) for s in self.scores if s.score)
        return out

    @classmethod
    def from_json(cls, condition: str, d: Mapping[str, Any]) -> DetectionRow:
        """Inverse of :meth:`to_json`; also reads the ``roc`` layouts of older results.json files
        (``{"fpr", "tpr", "auc"}``, or one such object per score)."""
        names = [k[4:] for k in d if k.startswith("roc_")]
        scores = [
            ScoreResult(
                s,
                d.get(f"mean_{s}"),
                RocCurve(s, d.get(f"auc_{s}"), _points(d[f"roc_{s}"])),
                d.get(f"detection_rate_{s}"),
            )
            for s in names
        ]
        old = d.get("roc")
        if isinstance(old, Mapping) and "fpr" in old:
            scores.append(ScoreResult("", None, _old_curve("", old, None)))
        elif isinstance(old, Mapping):
            scores += [
                ScoreResult(s, d.get(f"mean_{s}"), _old_curve(s, c, d.get(f"auc_{s}")))
                for s, c in sorted(old.items())
                if isinstance(c, Mapping)
            ]
        return cls(
            condition,
            int(d.get("n") or 0),
            d.get("detection_rate"),
            tuple(scores),
            any(f"detection_rate_{s}" in d for s in names),
        )


def _points(pts: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(pts, list):
        return ()
    return tuple((p[0], p[1]) for p in pts if isinstance(p, (list, tuple)) and len(p) == 2)


def _old_curve(score: str, c: Mapping[str, Any], auc: Any) -> RocCurve:
    fpr, tpr = c.get("fpr") or [], c.get("tpr") or []
    return RocCurve(score, c.get("auc", auc), tuple(zip(fpr, tpr)))


@dataclass(frozen=True, slots=True)
class DetectorEval:
    """One detector's held-out evaluation (:func:`auditor.defenses.detect.evaluate_detector`)."""

    method: str  #: ``reference_edge_ssim`` or ``feature_squeezing``
    thresholds: Mapping[str, float | None]
    target_fpr: float
    benign_fpr: float | None
    n_benign: int
    #: the scores' means on the held-out benign images
    benign: Mapping[str, float | None]
    #: what calibration measured (budget, flagged pairs, score statistics)
    calibration: Json
    rows: tuple[DetectionRow, ...]
    squeezers: tuple[str, ...] | None = None  #: feature squeezing's squeezers
    canny: tuple[float, ...] | None = None  #: the reference detector's Canny thresholds

    def scalars(self) -> list[tuple[str, Any]]:
        """The detector's single numbers and names, as results.json names them."""
        return [
            ("method", self.method),
            ("target_fpr", self.target_fpr),
            ("benign_fpr", self.benign_fpr),
            ("n_benign", self.n_benign),
        ]

    def lists(self) -> list[tuple[str, list]]:
        """The detector's settings that are lists (the squeezers, the Canny thresholds)."""
        out = [("canny", list(self.canny))] if self.canny is not None else []
        return out + ([("squeezers", list(self.squeezers))] if self.squeezers is not None else [])

    def to_json(self) -> dict[str, Any]:
        """The detector's block of results.json ``detector``."""
        return {
            **dict(self.scalars()),
            **dict(self.lists()),
            "thresholds": dict(self.thresholds),
            "benign": dict(self.benign),
            "calibration": self.calibration,
            "per_condition": {r.condition: r.to_json() for r in self.rows},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DetectorEval:
        """Inverse of :meth:`to_json`."""
        per = d.get("per_condition")
        per = per if isinstance(per, Mapping) else {}
        return cls(
            str(d.get("method", "")),
            dict(d.get("thresholds") or {}),
            float(d.get("target_fpr") or 0.0),
            d.get("benign_fpr"),
            int(d.get("n_benign") or 0),
            dict(d.get("benign") or {}),
            d.get("calibration") or {},
            tuple(DetectionRow.from_json(k, v) for k, v in per.items() if isinstance(v, Mapping)),
            tuple(d["squeezers"]) if "squeezers" in d else None,
            tuple(d["canny"]) if "canny" in d else None,
        )


@dataclass(frozen=True, slots=True)
class DetectorSplit:
    """How the detectors' images were split: calibration and held-out halves, the seed, and the scan's
    image count when the detectors saw a seeded subset of it."""

    calibration_images: int
    held_out_images: int
    seed: int
    subset_of: int | None = None

    def scalars(self) -> list[tuple[str, Any]]:
        """The split's numbers as results.json names them (``subset_of`` only for a subset)."""
        return [(k, v) for k, v in _as_dict(self).items() if v is not None]

    def to_json(self) -> dict[str, Any]:
        """results.json ``detector.calibration``."""
        return dict(self.scalars())


@dataclass(frozen=True, slots=True)
class FftExample:
    """Spectra of one held-out image, clean and under the largest-ε attack, downsampled for the report."""

    condition: str
    sample: str
    spectra: Mapping[str, Json]  #: name -> 64x64 rows
    note: str = ""

    def scalars(self) -> list[tuple[str, Any]]:
        """The example's condition, image and note (the spectra are a figure)."""
        return [("condition", self.condition), ("sample", self.sample), ("note", self.note)]

    def to_json(self) -> dict[str, Any]:
        """results.json ``detector.fft_example``."""
        return {"condition": self.condition, "sample": self.sample, "spectra": dict(self.spectra), "note": self.note}


@dataclass(frozen=True, slots=True)
class DetectorResult:
    """Both detectors of a scan (:mod:`auditor.scan.detect`), results.json ``detector``."""

    split: DetectorSplit | None
    reference_based: DetectorEval | None
    feature_squeezing: DetectorEval | None
    fft_example: FftExample | None = None

    def blocks(self) -> list[tuple[str, DetectorSplit | DetectorEval | FftExample]]:
        """The result's blocks as results.json names them, those present only."""
        named = (
            ("calibration", self.split),
            ("reference_based", self.reference_based),
            ("feature_squeezing", self.feature_squeezing),
            ("fft_example", self.fft_example),
        )
        return [(k, v) for k, v in named if v is not None]

    def to_json(self) -> dict[str, Any]:
        """results.json ``detector``."""
        return {k: v.to_json() for k, v in self.blocks()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DetectorResult:
        """Inverse of :meth:`to_json` (blocks this version does not know are not read)."""
        split, fft = d.get("calibration"), d.get("fft_example")
        ref, fs = d.get("reference_based"), d.get("feature_squeezing")
        return cls(
            DetectorSplit(
                int(split.get("calibration_images") or 0),
                int(split.get("held_out_images") or 0),
                int(split.get("seed") or 0),
                split.get("subset_of"),
            )
            if isinstance(split, Mapping)
            else None,
            DetectorEval.from_json(ref) if isinstance(ref, Mapping) else None,
            DetectorEval.from_json(fs) if isinstance(fs, Mapping) else None,
            FftExample(
                str(fft.get("condition", "")),
                str(fft.get("sample", "")),
                fft.get("spectra") or {},
                str(fft.get("note", "")),
            )
            if isinstance(fft, Mapping)
            else None,
        )
