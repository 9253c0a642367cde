"""The typed records a result is made of, below :class:`~auditor.types.AuditResult`: what a condition
measured besides its metrics (:class:`ConditionExtra`) and what results.json records about each adversarial set
(:class:`AttackSetMeta`, :class:`BlendSetMeta`, :class:`AdaptiveSetMeta`); what the detectors found is
:mod:`auditor.detector_records`.

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
