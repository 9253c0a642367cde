"""How much a transfer audit means: per-set surrogate diagnostics and the graded transfer verdict.

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
* ``transfer_efficiency`` = target attack success rate / surrogate attack
  success rate (None when the surrogate was fooled on none of its correct
  images). Success rates, not flip rates: each is measured on the images its
  model classifies correctly when clean, so a surrogate that is only 74 %
  accurate but fooled on all of its correct images has success 1, not 0.74.
  The ratio can exceed 1 (the target is easier to fool than the surrogate).

**Graded verdict.** Only undefended conditions whose ``threat_model`` is
:data:`~auditor.condition_ids.THREAT_TRANSFER` count; white-box and query conditions
attack the target itself and are reported apart (``whitebox_worst``,
``query_conditions``), never as an efficiency. The audit's *transfer
efficiency* is the highest efficiency over those conditions, graded by
:func:`grade`: below :data:`NO_TRANSFER_EFFICIENCY` (0.2) the attacks *did not
transfer*, below :data:`WEAK_EFFICIENCY` (0.5) they transferred *weakly*, below
:data:`STRONG_EFFICIENCY` (0.8) *partially*, else *strongly*. Transfer is
*weak* (the report's "weak evidence of robustness") below 0.5: fewer than half
of the images the attack fooled on the surrogate (as a share of its correct
images) were fooled on the target, so the accuracy under attack understates the
vulnerability the same attack reaches with the model's own gradients by more
than a factor of two. docs/algorithms.md §10 gives the reasons for the cut-offs.

**``--min-transfer``** (:mod:`auditor.report.gates`) reads ``efficiency``: the
transfer-only efficiency above when the audit ran transfer conditions (a
white-box condition next to them no longer lifts it to 1), 1.0 when it ran
none but attacked the target itself (white-box or query conditions: nothing had
to carry over), else None (not measured). Transferability and its dependence
on the surrogate's architecture are discussed by Papernot et al.,
"Transferability in Machine Learning" (arXiv:1605.07277, 2016) and Liu et al.,
"Delving into Transferable Adversarial Examples and Black-box Attacks" (ICLR
2017), who also motivate ensemble surrogates.

Pure numpy; no torch import (the report layer uses it).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np

from auditor.condition_ids import THREAT_QUERY, THREAT_TRANSFER, THREAT_WHITE_BOX
from auditor.metrics import compute_attack_rates
from auditor.types import Condition

#: transfer efficiency below which the attacks "did not transfer"
NO_TRANSFER_EFFICIENCY = 0.2
#: transfer efficiency below which transfer is weak (the report's "weak evidence of robustness")
WEAK_EFFICIENCY = 0.5
#: transfer efficiency from which transfer is strong
STRONG_EFFICIENCY = 0.8
#: the grades of :func:`grade`, weakest first
GRADES = ("none", "weak", "partial", "strong")
#: spellings of the white-box threat model accepted in results.json of older versions
WHITE_BOX = (THREAT_WHITE_BOX, "whitebox", "white_box")


def grade(efficiency: float | None) -> str | None:
    """The grade of a transfer efficiency: ``none`` (< 0.2), ``weak`` (< 0.5), ``partial`` (< 0.8),
    ``strong``; None when it is not measured."""
    if efficiency is None or not math.isfinite(efficiency):
        return None
    if efficiency < NO_TRANSFER_EFFICIENCY:
        return "none"
    if efficiency < WEAK_EFFICIENCY:
        return "weak"
    return "partial" if efficiency < STRONG_EFFICIENCY else "strong"


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return float(num) / float(den)


def set_diagnostics(
    y: Sequence[int] | np.ndarray,
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
    sur = compute_attack_rates(y, sc, sa, n_boot=0)
    tgt = compute_attack_rates(y, tc, target_adv, n_boot=0)
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
        "transfer_efficiency": _ratio(tgt["attack_success_rate"], sur["attack_success_rate"]),
    }


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _undefended_attacks(conditions: Iterable[Condition]) -> list[Condition]:
    return [c for c in conditions if c.kind == "attack" and not c.defense]


def _threat(c: Condition) -> str:
    t = (c.threat_model or "").lower()
    return THREAT_WHITE_BOX if t in WHITE_BOX else t


def audit_transfer(conditions: Iterable[Condition]) -> dict[str, Any]:
    """Audit-level transfer verdict from the conditions of one result.

    Returns ``transfer_conditions``, ``whitebox_conditions`` and ``query_conditions`` (counts),
    ``max_target_success_rate`` and ``max_surrogate_success_rate`` (transfer conditions only),
    ``transfer_efficiency`` (the highest over the transfer conditions, None when not measurable),
    ``grade`` (:func:`grade` of it), ``weak`` (grade ``none`` or ``weak``), ``efficiency`` (what
    ``--min-transfer`` compares; module docstring), ``whitebox_worst`` (the white-box attack
    condition with the lowest accuracy, or None) and ``measured`` (False when no transfer
    condition carries diagnostics, e.g. a results.json of an older version).
    """
    attacks = _undefended_attacks(conditions)
    transfer = [c for c in attacks if _threat(c) == THREAT_TRANSFER]
    whitebox = [c for c in attacks if _threat(c) == THREAT_WHITE_BOX]
    query = [c for c in attacks if _threat(c) == THREAT_QUERY]
    diag = [(c, c.extra.transfer) for c in transfer if isinstance(c.extra.transfer, dict)]
    target_succ = [v for c, _ in diag if (v := _num(c.extra.attack_success_rate)) is not None]
    sur_succ = [v for _, d in diag if (v := _num(d.get("surrogate_attack_success_rate"))) is not None]
    effs = [v for _, d in diag if (v := _num(d.get("transfer_efficiency"))) is not None]
    transfer_eff = max(effs) if effs else None
    g = grade(transfer_eff)
    if transfer:
        efficiency = transfer_eff
    else:
        efficiency = 1.0 if whitebox or query else None
    accs = [(v, c) for c in whitebox if (v := _num(c.metrics.get("accuracy"))) is not None]
    worst_wb = min(accs, key=lambda t: t[0])[1] if accs else None
    return {
        "transfer_conditions": len(transfer),
        "whitebox_conditions": len(whitebox),
        "query_conditions": len(query),
        "max_target_success_rate": max(target_succ) if target_succ else None,
        "max_surrogate_success_rate": max(sur_succ) if sur_succ else None,
        "transfer_efficiency": transfer_eff,
        "grade": g,
        "weak": g in ("none", "weak"),
        "efficiency": efficiency,
        "whitebox_worst": worst_wb,
        "measured": bool(diag),
    }


def transfer_summary(conditions: Iterable[Condition]) -> dict[str, Any]:
    """:func:`audit_transfer` as JSON (``extras.transfer`` of results.json), with the grade cut-offs."""
    v = audit_transfer(conditions)
    wb = v.pop("whitebox_worst")
    v["whitebox_worst"] = None if wb is None else {"name": wb.name, "accuracy": wb.metrics.get("accuracy")}
    v["rule"] = {
        "efficiency": "target attack success rate / surrogate attack success rate (transfer conditions only)",
        "no_transfer_below": NO_TRANSFER_EFFICIENCY,
        "weak_below": WEAK_EFFICIENCY,
        "strong_from": STRONG_EFFICIENCY,
    }
    return v
