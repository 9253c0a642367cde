"""The results.json schema (pydantic), checked before a results file is rendered.

A results.json may come from anyone (``xray-audit report`` re-renders files sent
around), so every field a renderer reads is validated for type and range here:
fractions lie in ``[0, 1]`` (or are null/NaN where a metric is undefined), counts
are non-negative integers below :data:`MAX_COUNT`, lists hold what they claim.
Beyond types, each condition must be consistent (:meth:`ConditionDoc.consistent`): a metric
is never null or non-finite where it is defined (``metrics.n > 0``: accuracy, macro-F1,
weighted F1, the flip rate of an attacked or defended condition, the attack success rate unless
no image was correct when clean, a class's sensitivity when it has images), a point estimate
lies inside its 95% CI (whose ends are ordered), and the counts agree with the rates they
summarise (``n_flipped / n = flip_rate``, ``n_fooled / n_clean_correct =
attack_success_rate``, ``n_fooled <= n_clean_correct <= n``). A missing value therefore
cannot silently drop a condition out of a verdict: the file is refused (exit 3).
Unknown keys are kept (forward compatible within one schema major version);
free-form dictionaries (``parameters``, ``environment``, ``extras``) only have to
be JSON objects, and the whole document may nest at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Iterable, Optional, TypeGuard

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["MAX_COUNT", "MAX_DEPTH", "ValidationError", "check_depth", "describe_error", "validate_document"]

#: deepest nesting of lists/objects accepted in a results.json (ours nest about 8 levels)
MAX_DEPTH = 64
#: largest count (images, confusion-matrix cell, class index) accepted
MAX_COUNT = 10**9
#: largest absolute value of a free measurement (norms, costs, PSNR)
MAX_MEASURE = 1e12
#: tolerance of the consistency checks (a rate against its counts, a point against its CI)
CONSISTENCY_TOL = 1e-6


def _fraction(v: Optional[float]) -> Optional[float]:
    if v is None or math.isnan(v):
        return v
    if not 0.0 <= v <= 1.0:
        raise ValueError("must be a fraction in [0, 1]")
    return v


def _measure(v: Optional[float]) -> Optional[float]:
    if v is None or math.isnan(v):
        return v
    if not abs(v) <= MAX_MEASURE:
        raise ValueError(f"must be a finite number of magnitude at most {MAX_MEASURE:g}")
    return v


Fraction = Annotated[Optional[float], AfterValidator(_fraction)]
Measure = Annotated[Optional[float], AfterValidator(_measure)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Text = Annotated[str, Field(max_length=100_000)]
Interval = Optional[Annotated[list[Fraction], Field(min_length=2, max_length=2)]]


class _Open(BaseModel):
    """Strict types for the declared keys, unknown keys kept."""

    model_config = ConfigDict(strict=True, extra="allow")


class _Closed(BaseModel):
    """Strict types, no unknown keys (rebuilt with ``**`` into a dataclass)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class PerClass(_Open):
    """Per-class metrics of one condition."""

    precision: Fraction = None
    recall: Fraction = None
    f1: Fraction = None
    sensitivity: Fraction = None
    specificity: Fraction = None
    sensitivity_ci: Interval = None
    support: Optional[Count] = None


class Metrics(_Open):
    """A condition's metrics block."""

    accuracy: Fraction = None
    accuracy_ci: Interval = None
    macro_f1: Fraction = None
    macro_f1_ci: Interval = None
    weighted_f1: Fraction = None
    labels: Optional[Annotated[list[Text], Field(max_length=10_000)]] = None
    confusion_matrix: Optional[list[list[Count]]] = None
    n: Optional[Count] = None
    per_class: Optional[dict[str, Optional[PerClass]]] = None


class ConditionDoc(_Open):
    """One condition (clean, attack, defense) with its metrics and per-image predictions."""

    name: Text
    kind: Text
    metrics: Metrics
    attack: Optional[Text] = None
    epsilon: Fraction = None
    surrogate: Optional[Text] = None
    threat_model: Optional[Text] = None
    defense: Optional[Text] = None
    predictions: list[Count] = []
    probabilities: Annotated[
        list[Annotated[list[Probability], Field(max_length=10_000)]], Field(max_length=MAX_COUNT)
    ] = []
    attack_success_rate: Fraction = None
    attack_success_rate_ci: Interval = None
    flip_rate: Fraction = None
    flip_rate_ci: Interval = None
    n_clean_correct: Optional[Count] = None
    n_fooled: Optional[Count] = None
    n_flipped: Optional[Count] = None
    recovered_rate: Fraction = None
    opacity: Fraction = None
    linf_mean: Measure = None
    linf_max: Measure = None
    l2_mean: Measure = None
    ssim_mean: Measure = None
    psnr_mean: Measure = None
    cost_ms_per_image: Measure = None
    accuracy_drop_vs_non_adaptive: Measure = None

    @model_validator(mode="after")
    def consistent(self) -> "ConditionDoc":
        """Defined metrics are finite, points lie inside their CIs, counts agree with rates (module docstring)."""
        m = self.metrics
        inside = [("metrics.accuracy", m.accuracy, m.accuracy_ci), ("metrics.macro_f1", m.macro_f1, m.macro_f1_ci)]
        inside += [
            ("attack_success_rate", self.attack_success_rate, self.attack_success_rate_ci),
            ("flip_rate", self.flip_rate, self.flip_rate_ci),
        ]
        for name, pc in (m.per_class or {}).items():
            if pc is not None:
                inside.append((f"per_class.{name}.sensitivity", pc.sensitivity, pc.sensitivity_ci))
        for where, point, ci in inside:
            _check_inside(where, point, ci)
        n = m.n or 0
        if n > 0:
            _check_defined(m, ("accuracy",), ("macro_f1", "weighted_f1"), "metrics.")
            for name, pc in (m.per_class or {}).items():
                if pc is not None and (pc.support or 0) > 0 and "sensitivity" in pc.model_fields_set:
                    _check_defined(pc, (), ("sensitivity",), f"per_class.{name}.")
            if self.kind != "clean":
                _check_defined(self, (), ("flip_rate",), "")
                if self.n_clean_correct != 0:
                    _check_defined(self, (), ("attack_success_rate",), "")
        cm = m.confusion_matrix
        if not cm or sum(map(sum, cm)) == n:  # a matrix that miscounts n is reported by report.io.check_metrics
            self._check_counts(n)
        return self

    def _check_counts(self, n: int) -> None:
        correct, fooled, flipped = self.n_clean_correct, self.n_fooled, self.n_flipped
        if n and (correct is not None and correct > n or flipped is not None and flipped > n):
            raise ValueError(f"counts larger than the {n} images")
        if correct is not None and fooled is not None and fooled > correct:
            raise ValueError(f"n_fooled {fooled} is larger than n_clean_correct {correct}")
        if (
            n
            and flipped is not None
            and _finite(self.flip_rate)
            and abs(flipped / n - self.flip_rate) > CONSISTENCY_TOL
        ):
            raise ValueError(f"flip_rate {self.flip_rate} differs from n_flipped / n = {flipped}/{n}")
        if (
            correct
            and fooled is not None
            and _finite(self.attack_success_rate)
            and abs(fooled / correct - self.attack_success_rate) > CONSISTENCY_TOL
        ):
            raise ValueError(
                f"attack_success_rate {self.attack_success_rate} differs from n_fooled / n_clean_correct = "
                f"{fooled}/{correct}"
            )


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_defined(model: BaseModel, required: tuple[str, ...], if_given: tuple[str, ...], prefix: str) -> None:
    """Raise when a metric of ``required`` is missing, null or non-finite, or one of ``if_given`` is given as
    null or non-finite (older files may lack those keys)."""
    for key in required + if_given:
        if key in if_given and key not in model.model_fields_set:
            continue
        if not _finite(getattr(model, key)):
            raise ValueError(f"{prefix}{key} is {getattr(model, key)!r} although it is measured on n > 0 images")


def _check_inside(where: str, point: Optional[float], ci: Optional[list]) -> None:
    if ci is None or not all(_finite(v) for v in ci):
        return
    if ci[0] > ci[1] + CONSISTENCY_TOL:
        raise ValueError(f"{where}_ci {ci} has its ends reversed")
    if _finite(point) and not ci[0] - CONSISTENCY_TOL <= point <= ci[1] + CONSISTENCY_TOL:
        raise ValueError(f"{where} {point} lies outside its 95% CI {ci}")


class SkippedDoc(_Closed):
    """Something that was skipped, with the reason."""

    name: Text
    reason: Text
    kind: Text = "item"


class GateDoc(_Closed):
    """A stored gate verdict."""

    name: Text
    threshold: Annotated[float, Field(allow_inf_nan=False)]
    value: Optional[Annotated[float, Field(allow_inf_nan=False)]]
    passed: bool
    detail: Text = ""


class SpecDoc(_Open):
    """The parts of the stored ModelSpec the reports show."""

    class_names: Annotated[list[Text], Field(max_length=10_000)] = []
    sources: dict[str, Text] = {}


class ModelDoc(_Open):
    """Identity of the scanned model."""

    path: Text = ""
    sha256: Text = ""
    spec: SpecDoc = SpecDoc()


class ConversionDoc(_Open):
    """How one image was converted while loading (DICOM colour, frame, lossy codec)."""

    name: Text = ""
    notes: list[Text] = []


class DataDoc(_Open):
    """Identity of the data set and what was skipped while reading it."""

    skipped: list[SkippedDoc] = []
    conversions: list[ConversionDoc] = []
    dropped: dict[str, Count] = {}
    caveats: list[Text] = []
    per_class: dict[str, Count] = {}
    n_images: Optional[Count] = None


class SampleDoc(_Open):
    """One image of the scan (aligned with every condition's predictions)."""

    path: Text = ""
    label: Text = ""
    label_index: Optional[Count] = None
    patient_id: Optional[Text] = None
    sha256: Text = ""


_Row = Annotated[list[Measure], Field(max_length=512)]


class FftExample(_Open):
    """The frequency-spectrum example of the detector section."""

    spectra: dict[str, _Row | Annotated[list[_Row], Field(max_length=512)]] = {}


class DetectorDoc(_Open):
    """Detector blocks: each one a JSON object."""

    fft_example: Optional[FftExample] = None


Rate = Annotated[float, Field(ge=0.0, le=MAX_MEASURE, allow_inf_nan=False)]


class StageDoc(_Closed):
    """Throughput of one stage of a scan: images, wall seconds, images per second (null without a time)."""

    images: Count
    seconds: Rate
    images_per_second: Optional[Rate] = None


class EnvironmentDoc(_Open):
    """Host, library versions and timings; ``seconds_per_stage`` maps a stage (``read``, ``clean``,
    ``attacked``, ``defended``, ``adaptive``) to its :class:`StageDoc`."""

    seconds_per_stage: dict[Text, StageDoc] = {}


class ResultsDoc(_Open):
    """A whole results.json (``compared`` holds further documents of the same shape)."""

    schema_version: Text
    tool_version: Text
    created: Text
    finished: Text = ""
    command: Text = ""
    model: ModelDoc
    data: DataDoc
    conditions: Annotated[list[ConditionDoc], Field(min_length=1)]
    samples: list[SampleDoc] = []
    parameters: dict[str, Any] = {}
    environment: EnvironmentDoc = EnvironmentDoc()
    skipped: list[SkippedDoc] = []
    detector: Optional[dict[str, dict[str, Any]]] = None
    gates: list[GateDoc] = []
    compared: list["ResultsDoc"] = []
    extras: dict[str, Any] = {}


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (iterative); raises ``ValueError`` past ``limit``."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            raise ValueError(f"nested more than {limit} levels deep")
        deepest = max(deepest, depth)
        stack.extend((c, depth + 1) for c in children)
    return deepest


def validate_document(doc: Any) -> None:
    """Raise :class:`pydantic.ValidationError` (or ``ValueError``) if ``doc`` breaks the schema."""
    check_depth(doc)
    ResultsDoc.model_validate(doc)
    detector = doc.get("detector") if isinstance(doc, dict) else None
    if isinstance(detector, dict):
        DetectorDoc.model_validate(detector)
    for other in doc.get("compared", []) if isinstance(doc, dict) else []:
        if isinstance(other, dict) and isinstance(other.get("detector"), dict):
            DetectorDoc.model_validate(other["detector"])


def describe_error(exc: ValidationError) -> str:
    """The first schema violation as ``location: message`` (one line)."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if err.get("type") == "missing" and loc:
        where = f" in {'.'.join(loc[:-1])}" if len(loc) > 1 else ""
        return f"missing field {loc[-1]!r}{where}{more}"
    return f"{'.'.join(loc) or 'document'}: {err.get('msg', 'invalid')}{more}"
