"""The typed record of what the detectors of a scan found (results.json ``detector``): :class:`DetectorResult`
with the image split (:class:`DetectorSplit`), one :class:`DetectorEval` per detector with a :class:`DetectionRow`
per attacked condition, each score's :class:`RocCurve`, and the spectra example (:class:`FftExample`).

Each record is frozen, writes exactly the JSON of results.json (``to_json``) and reads it back (``from_json``),
including the ROC layouts of earlier versions (``{"fpr", "tpr", "auc"}``, or one such object per score), so the
report draws every curve from one type. Made by :mod:`auditor.defenses.detect` and :mod:`auditor.scan.detect`,
held by :class:`~auditor.types.AuditResult`. The module imports nothing from the project (foundation layer,
docs/architecture.md §2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

#: a JSON value carried through unchanged
Json = Any


def _as_dict(record: Any) -> dict[str, Any]:
    """The fields of a flat record as a dict (no deep copy, unlike :func:`dataclasses.asdict`)."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


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
