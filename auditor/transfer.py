"""How much a transfer audit means: per-set surrogate diagnostics and the weak-transfer rule.

A transfer attack is crafted on a surrogate and shown to the target. Its
accuracy figure is a lower bound on the target's vulnerability, and that bound
is only informative when the attack worked on the surrogate *and* carried over.
Per adversarial set this module records (``transfer`` in the condition of
results.json):

* ``surrogate_accuracy_clean`` / ``surrogate_accuracy``: the surrogate's own
  accuracy on the clean images and on the (8-bit quantised) adversarial images;
* ``surrogate_flip_rate`` / ``surrogate_attack_success_rate``: the white-box
  success of the attack on the surrogate it was made on (same definitions as
  the target's, :func:`auditor.metrics.compute_attack_rates`);
* ``agreement_clean``: share of clean images on which surrogate and target
  predict the same class;
* ``surrogate_input_size`` (one ``[H, W]`` per member) and ``target_input_size``;
* ``transfer_efficiency`` = target flip rate / surrogate flip rate (None when
  the surrogate flipped nothing).

**Weak-transfer rule.** An audit's transfer is *weak* when it ran transfer
attack conditions (no defense), the attacks worked on the surrogate (the
highest surrogate flip rate is above :data:`STRONG_SURROGATE_FLIP`, 80 %) and
none of them carried over (the highest target flip rate is below
:data:`WEAK_TARGET_FLIP`, 10 %). The report then says that the attacks did not
transfer and that the accuracy under attack is weak evidence of robustness.

The *audit transfer efficiency* (used by ``--min-transfer``) is the highest
transfer efficiency over the undefended transfer conditions; white-box
conditions attack the target itself and count as 1.0. Transferability and its
dependence on the surrogate's architecture are discussed by Papernot et al.,
"Transferability in Machine Learning" (arXiv:1605.07277, 2016) and Liu et al.,
"Delving into Transferable Adversarial Examples and Black-box Attacks" (ICLR
2017), who also motivate ensemble surrogates.

Pure numpy; no torch import (the report layer uses it).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from auditor.metrics import compute_attack_rates
from auditor.types import Condition

#: the target flip rate below which the attacks "did not transfer"
WEAK_TARGET_FLIP = 0.10
#: the surrogate flip rate above which the attacks "worked on the surrogate"
STRONG_SURROGATE_FLIP = 0.80
WHITE_BOX = ("white-box", "whitebox", "white_box")


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return float(num) / float(den)


def set_diagnostics(
    y: Sequence[int],
    target_clean: Sequence[int],
    target_adv: Sequence[int],
    surrogate_clean: Sequence[int],
    surrogate_adv: Sequence[int],
    surrogate_sizes: Iterable[Sequence[int]],
    target_size: Sequence[int],
) -> dict[str, Any]:
    """The ``transfer`` block of one adversarial set (class indices in the target's order)."""
    y = np.asarray(y)
    sc, sa = np.asarray(surrogate_clean), np.asarray(surrogate_adv)
    tc = np.asarray(target_clean)
    n = len(y)
    sur = compute_attack_rates(y, sc, sa)
    tgt = compute_attack_rates(y, tc, target_adv)
    sizes = [[int(v) for v in s] for s in surrogate_sizes]
    tsize = [int(v) for v in target_size]
    return {
        "surrogate_accuracy_clean": float(np.mean(sc == y)) if n else None,
        "surrogate_accuracy": float(np.mean(sa == y)) if n else None,
        "surrogate_flip_rate": sur["flip_rate"],
        "surrogate_attack_success_rate": sur["attack_success_rate"],
        "surrogate_n_clean_correct": sur["n_clean_correct"],
        "agreement_clean": float(np.mean(sc == tc)) if n else None,
        "surrogate_input_size": sizes,
        "target_input_size": tsize,
        "same_input_size": all(s == tsize for s in sizes),
        "transfer_efficiency": _ratio(tgt["flip_rate"], sur["flip_rate"]),
    }


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _undefended_attacks(conditions: Iterable[Condition]) -> list[Condition]:
    return [c for c in conditions if c.kind == "attack" and not c.defense]


def audit_transfer(conditions: Iterable[Condition]) -> dict[str, Any]:
    """Audit-level transfer verdict from the conditions of one result.

    Returns ``transfer_conditions`` (count), ``whitebox_conditions`` (count),
    ``max_target_flip_rate``, ``max_surrogate_flip_rate``, ``efficiency`` (see
    the module docstring; None when not measurable), ``weak`` (the rule),
    ``whitebox_worst`` (the white-box attack condition with the lowest
    accuracy, or None) and ``measured`` (False when no transfer condition
    carries diagnostics, e.g. a results.json of an older version).
    """
    attacks = _undefended_attacks(conditions)
    transfer = [c for c in attacks if (c.threat_model or "").lower() == "transfer"]
    whitebox = [c for c in attacks if (c.threat_model or "").lower() in WHITE_BOX]
    diag = [(c, c.extra.get("transfer")) for c in transfer if isinstance(c.extra.get("transfer"), dict)]
    target_flips = [v for c, _ in diag if (v := _num(c.extra.get("flip_rate"))) is not None]
    sur_flips = [v for _, d in diag if (v := _num(d.get("surrogate_flip_rate"))) is not None]
    effs = [v for _, d in diag if (v := _num(d.get("transfer_efficiency"))) is not None]
    max_t = max(target_flips) if target_flips else None
    max_s = max(sur_flips) if sur_flips else None
    weak = bool(max_t is not None and max_s is not None and max_t < WEAK_TARGET_FLIP and max_s > STRONG_SURROGATE_FLIP)
    if whitebox:
        efficiency: float | None = 1.0
    else:
        efficiency = max(effs) if effs else (0.0 if sur_flips and max_s == 0 else None)
    accs = [(v, c) for c in whitebox if (v := _num(c.metrics.get("accuracy"))) is not None]
    worst_wb = min(accs, key=lambda t: t[0])[1] if accs else None
    return {
        "transfer_conditions": len(transfer),
        "whitebox_conditions": len(whitebox),
        "max_target_flip_rate": max_t,
        "max_surrogate_flip_rate": max_s,
        "efficiency": efficiency,
        "weak": weak,
        "whitebox_worst": worst_wb,
        "measured": bool(diag),
    }


def transfer_summary(conditions: Iterable[Condition]) -> dict[str, Any]:
    """:func:`audit_transfer` as JSON (``extras.transfer`` of results.json), with the rule's thresholds."""
    v = audit_transfer(conditions)
    wb = v.pop("whitebox_worst")
    v["whitebox_worst"] = None if wb is None else {"name": wb.name, "accuracy": wb.metrics.get("accuracy")}
    v["rule"] = {"weak_target_flip_below": WEAK_TARGET_FLIP, "surrogate_flip_above": STRONG_SURROGATE_FLIP}
    return v
