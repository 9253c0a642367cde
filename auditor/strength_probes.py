"""Attack-strength probes: the records the scan writes to ``extras.strength_probes`` of results.json.

A :class:`StrengthProbe` is one large-ε or more-iterations run; :func:`read_probes` reads them back for
the checks of :mod:`auditor.strength`. Pure Python, no torch: the report layer imports this module.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from auditor.types import AuditResult

#: probe kinds of ``extras.strength_probes``
PROBE_KINDS = ("large_eps", "more_iterations")


@dataclass(frozen=True)
class StrengthProbe:
    """One attack-strength probe run by the scan (``extras.strength_probes`` of results.json).

    * ``kind="large_eps"``: ``accuracy`` of the target on ``n`` images attacked by ``attack`` (under
      ``threat_model``) at a large budget ``epsilon`` (L∞, in ``[0, 1]`` units); ``steps`` optional.
    * ``kind="more_iterations"``: ``accuracy`` with ``steps`` iterations and ``reference_accuracy``
      with ``reference_steps`` iterations, on the same ``n`` images at budget ``epsilon``.
    """

    kind: str
    attack: str
    threat_model: str
    epsilon: float
    n: int
    accuracy: float
    reference_accuracy: float | None = None
    steps: int | None = None
    reference_steps: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROBE_KINDS:
            raise ValueError(f"probe kind {self.kind!r} is not one of {', '.join(PROBE_KINDS)}")
        for name in ("attack", "threat_model"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip() or len(v) > 200:
                raise ValueError(f"probe {name} must be a non-empty name, not {v!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"probe n must be a positive integer, not {self.n!r}")
        for name in ("epsilon", "accuracy", "reference_accuracy"):
            v = getattr(self, name)
            if v is None and name == "reference_accuracy":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"probe {name} must be a number in [0, 1], not {v!r}")
        for name in ("steps", "reference_steps"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"probe {name} must be a positive integer or null, not {v!r}")
        if self.kind == "more_iterations" and (
            self.reference_accuracy is None or self.steps is None or self.reference_steps is None
        ):
            raise ValueError("a more_iterations probe needs steps, reference_steps and reference_accuracy")

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of results.json ``extras.strength_probes``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StrengthProbe":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on unknown keys or out-of-range values."""
        if not isinstance(d, dict):
            raise ValueError("a strength probe must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown strength-probe keys: {sorted(unknown)}")
        missing = {"kind", "attack", "threat_model", "epsilon", "n", "accuracy"} - set(d)
        if missing:
            raise ValueError(f"strength probe lacks {sorted(missing)}")
        return cls(**d)


def read_probes(result: AuditResult) -> tuple[list[StrengthProbe], list[str]]:
    """The probes of ``extras.strength_probes`` and one note per unreadable record."""
    raw = result.extras.get("strength_probes") if isinstance(result.extras, dict) else None
    probes, notes = [], []
    for i, d in enumerate(raw if isinstance(raw, list) else []):
        try:
            probes.append(StrengthProbe.from_dict(d))
        except (TypeError, ValueError) as exc:
            notes.append(f"strength probe {i} ignored: {exc}")
    return probes, notes
