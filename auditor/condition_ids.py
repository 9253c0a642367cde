"""Condition names as data: :class:`SetId` (an undefended set), :class:`ConditionId` (a set seen through a
defense, possibly attacked through it), the ε name of a budget (:func:`eps_name`) and the threat models.

A foundation module (docs/architecture.md §2): it imports nothing from the rest of the package,
so any layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass


def eps_name(eps: float) -> str:
    """``8/255`` -> ``"8"``; non-integer multiples of 1/255 keep two decimals, or three significant digits
    when two decimals would read 0 (a name never says a budget is 0)."""
    v = eps * 255
    if abs(v - round(v)) < 1e-6 and (round(v) != 0 or v == 0):
        return str(int(round(v)))
    two = f"{v:.2f}"
    return two if float(two) != 0 else f"{v:.3g}"


#: the threat models an attacked condition carries (results.json ``threat_model``): an outside attacker with
#: a surrogate (transfer), an attacker with the target's gradients (white-box, the converted model), and an
#: attacker who only queries the ONNX model's outputs (query, e.g. the Square attack)
THREAT_TRANSFER = "transfer"
THREAT_WHITE_BOX = "white-box"
THREAT_QUERY = "query"
THREAT_MODELS = (THREAT_TRANSFER, THREAT_WHITE_BOX, THREAT_QUERY)

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
    style_backend: str | None = None  #: the style backend of an attack that names it (STM), else None
    alpha: float | None = None  #: opacity of a style blend

    @property
    def name(self) -> str:
        """The condition name of the set."""
        if self.attack is None:
            return "clean"
        if self.alpha is not None:
            return f"{self.attack}@{self.alpha:g}"
        if self.epsilon is None:
            raise ValueError(f"attacked set {self.attack!r} names neither a budget (epsilon) nor an opacity (alpha)")
        backend = f"[{self.style_backend}]" if self.style_backend else ""
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
