"""Attack-strength checks: signs that an attack under-reports the vulnerability (possible gradient masking).

An attack that fails for the wrong reason (obfuscated or masked gradients, a broken loss, too few
steps) makes a model look robust. Carlini et al., "On Evaluating Adversarial Robustness"
(arXiv:1902.06705, 2019, section 5) and Athalye, Carlini & Wagner, "Obfuscated Gradients Give a False Sense
of Security" (ICML 2018, section 3.1) list sanity checks that such a failure breaks. Four are computed here
from an :class:`~auditor.types.AuditResult` (undefended attack conditions only):

``stronger_than_transfer``
    A white-box or query attack must succeed at least as often as a transfer attack at the same ε on
    the same model: an attacker with the model's gradients or outputs can always replay the transfer
    images. Compared: the attack success rate (share of the clean-correct images the attack fools).
``monotone_in_eps``
    Accuracy must not rise with ε along one attack (same attack, threat model and surrogate): every
    image of the smaller ball lies in the larger one.
``large_eps``
    A probe at a large ε on a small subset (a :class:`StrengthProbe` of kind ``large_eps``) must drive
    accuracy to about chance (1/K for K classes) or below: an unbounded untargeted attack that leaves
    images correctly classified is not finding the gradient.
``more_iterations``
    More iterations (a probe of kind ``more_iterations``) must not raise accuracy.

**Noise.** A check is *violated* only when the data rule out sampling noise, so a violation is worth a
reviewer's time (Carlini et al. ask for "significantly" better, not any difference):

* where both conditions carry per-image predictions (they score the same images), an exact one-sided
  McNemar test (binomial test on the discordant images, :func:`scipy.stats.binomtest`) at
  :data:`ALPHA` = 0.05, with Holm's step-down correction over the comparisons of each check (Holm,
  Scand. J. Statist. 1979), so running many attacks and budgets does not manufacture violations;
* without per-image predictions (an older results.json, or the aggregate ``more_iterations`` probe),
  the 95% intervals must not overlap: the supposedly stronger figure's interval lies entirely on the
  wrong side of the other's. Two non-overlapping 95% intervals imply a difference significant well
  below 5% (Schenker & Gentleman, Am. Stat. 2001), so this is the conservative fallback;
* ``large_eps``: an exact one-sided binomial test of the probe's correct count against 1/K, Holm over
  the probes.

The probes come from the scan (``extras.strength_probes`` of results.json, one
:meth:`auditor.strength_probes.StrengthProbe.to_dict` each). Pure numpy/scipy, no torch: the report
layer imports this module.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence, TypeGuard

import numpy as np

from auditor.condition_ids import THREAT_QUERY, THREAT_TRANSFER, THREAT_WHITE_BOX, eps_name
from auditor.strength_probes import StrengthProbe, read_probes
from auditor.types import AuditResult, Condition

#: significance level of every check (after Holm's correction within a check)
ALPHA = 0.05
#: the checks, in report order
CHECKS = ("stronger_than_transfer", "monotone_in_eps", "large_eps", "more_iterations")
CHECK_TITLES = {
    "stronger_than_transfer": "white-box and query attacks succeed at least as often as transfer attacks at the same ε",
    "monotone_in_eps": "accuracy does not rise with ε",
    "large_eps": "a large-ε probe drives accuracy to about chance or below",
    "more_iterations": "more iterations do not raise accuracy",
}
MASKING_TEXT = "possible gradient masking"
_WHITE_BOX_NAMES = {THREAT_WHITE_BOX, "whitebox", "white_box"}


# --------------------------------------------------------------------------- statistics


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _greater_p(k: int, n: int, p: float = 0.5) -> float:
    """One-sided exact binomial p-value P(X >= k), X ~ Binomial(n, p); 1.0 when n is 0."""
    if n <= 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(k), int(n), p, alternative="greater").pvalue)


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """Wilson score 95% interval of ``k`` successes in ``n`` (via :func:`scipy.stats.binomtest`)."""
    if n <= 0:
        return None
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _interval(v: Any) -> tuple[float, float] | None:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(_finite(x) for x in v) and v[0] <= v[1]:
        return float(v[0]), float(v[1])
    return None


# --------------------------------------------------------------------------- the conditions compared


def _threat(c: Condition) -> str:
    t = (c.threat_model or "").strip().lower()
    return THREAT_WHITE_BOX if t in _WHITE_BOX_NAMES else t


def _attacks(result: AuditResult) -> list[Condition]:
    return [c for c in result.conditions if c.kind == "attack" and not c.defense]


def _clean(result: AuditResult) -> Condition | None:
    return result.condition("clean") or next((c for c in result.conditions if c.kind == "clean"), None)


class _Images:
    """Per-image correctness of the conditions of one result (when they carry predictions)."""

    def __init__(self, result: AuditResult) -> None:
        labels = [s.get("label_index") for s in result.samples]
        self.ok = bool(labels) and all(isinstance(v, int) and not isinstance(v, bool) for v in labels)
        self.y = np.asarray(labels if self.ok else [], dtype=np.int64)
        clean = _clean(result)
        self.clean_correct = self.correct(clean) if clean is not None else None

    def correct(self, c: Condition) -> np.ndarray | None:
        """Boolean correctness per image, or None without aligned predictions."""
        if not self.ok or len(c.predictions) != len(self.y):
            return None
        return np.asarray(c.predictions, dtype=np.int64) == self.y


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _eps_text(eps: float | None) -> str:
    return "—" if not _finite(eps) else f"{eps_name(eps)}/255"


# --------------------------------------------------------------------------- the four checks


def _stronger_than_transfer(result: AuditResult, images: _Images) -> tuple[int, list[dict], list[dict]]:
    """Comparisons (white-box/query vs transfer at one ε): paired tests and interval fallbacks."""
    attacks = [(eps_name(eps), c) for c in _attacks(result) if _finite(eps := c.epsilon)]
    transfer = [(name, c) for name, c in attacks if _threat(c) == THREAT_TRANSFER]
    strong = [(name, c) for name, c in attacks if _threat(c) in (THREAT_WHITE_BOX, THREAT_QUERY)]
    paired, unpaired = [], []
    for eps_s, s in strong:
        for eps_t, t in transfer:
            if eps_s != eps_t:
                continue
            rate_s, rate_t = s.extra.attack_success_rate, t.extra.attack_success_rate
            item = {
                "condition": s.name,
                "threat_model": _threat(s),
                "versus": t.name,
                "epsilon": s.epsilon,
                "value": rate_s if _finite(rate_s) else None,
                "reference": rate_t if _finite(rate_t) else None,
            }
            cs, ct, cc = images.correct(s), images.correct(t), images.clean_correct
            if cs is not None and ct is not None and cc is not None:
                fooled_s, fooled_t = cc & ~cs, cc & ~ct
                b = int(np.sum(fooled_t & ~fooled_s))  # the transfer attack fools, the stronger one does not
                c = int(np.sum(fooled_s & ~fooled_t))
                paired.append({**item, "p": _greater_p(b, b + c), "test": f"exact McNemar ({b} vs {c} images)"})
            else:
                ci_s, ci_t = (
                    _interval(s.extra.attack_success_rate_ci),
                    _interval(t.extra.attack_success_rate_ci),
                )
                if ci_s is None or ci_t is None:
                    continue
                unpaired.append({**item, "violated": ci_s[1] < ci_t[0], "test": "95% intervals do not overlap"})
    return len(paired) + len(unpaired), paired, unpaired


def _series(result: AuditResult) -> dict[tuple[str, str, str], list[tuple[float, Condition]]]:
    """The attack conditions with a budget and an accuracy, as ``(epsilon, condition)``, per attack, threat
    model and surrogate."""
    out: dict[tuple[str, str, str], list[tuple[float, Condition]]] = {}
    for c in _attacks(result):
        if _finite(eps := c.epsilon) and _finite(c.metrics.get("accuracy")):
            out.setdefault((c.attack or c.name, _threat(c), c.surrogate or ""), []).append((eps, c))
    return out


def _monotone_in_eps(result: AuditResult, images: _Images) -> tuple[int, list[dict], list[dict]]:
    paired, unpaired = [], []
    for series in _series(result).values():
        conds = sorted(series, key=lambda t: t[0])
        for i, (eps_lo, lo) in enumerate(conds):
            for eps_hi, hi in conds[i + 1 :]:
                if eps_name(eps_hi) == eps_name(eps_lo):
                    continue
                item = {
                    "condition": hi.name,
                    "threat_model": _threat(hi),
                    "versus": lo.name,
                    "epsilon": hi.epsilon,
                    "value": hi.metrics["accuracy"],
                    "reference": lo.metrics["accuracy"],
                }
                c_hi, c_lo = images.correct(hi), images.correct(lo)
                if c_hi is not None and c_lo is not None:
                    b = int(np.sum(c_hi & ~c_lo))  # right at the larger ε, wrong at the smaller
                    c = int(np.sum(c_lo & ~c_hi))
                    paired.append({**item, "p": _greater_p(b, b + c), "test": f"exact McNemar ({b} vs {c} images)"})
                else:
                    ci_hi, ci_lo = _interval(hi.metrics.get("accuracy_ci")), _interval(lo.metrics.get("accuracy_ci"))
                    if ci_hi is None or ci_lo is None:
                        continue
                    unpaired.append({**item, "violated": ci_hi[0] > ci_lo[1], "test": "95% intervals do not overlap"})
    return len(paired) + len(unpaired), paired, unpaired


def _probe_conditions(result: AuditResult, probe: StrengthProbe) -> list[str]:
    tm = probe.threat_model.strip().lower()
    tm = THREAT_WHITE_BOX if tm in _WHITE_BOX_NAMES else tm
    return [c.name for c in _attacks(result) if (c.attack or "") == probe.attack and _threat(c) == tm]


def _probe_item(result: AuditResult, probe: StrengthProbe, value: float, reference: float | None, **rest) -> dict:
    """The record of one probe's comparison: what it concerns, its two figures and how it was tested."""
    return {
        "condition": None,
        "conditions": _probe_conditions(result, probe),
        "attack": probe.attack,
        "threat_model": probe.threat_model,
        "epsilon": probe.epsilon,
        "n": probe.n,
        "value": value,
        "reference": reference,
        **rest,
    }


def _large_eps(result: AuditResult, probes: list[StrengthProbe]) -> tuple[int, list[dict], list[dict]]:
    clean = _clean(result)
    k = len(result.class_names) or len((clean.metrics.get("labels") if clean is not None else None) or [])
    chance = 1.0 / k if k else None
    paired = []
    for p in probes:
        if p.kind != "large_eps" or chance is None:
            continue
        correct = int(round(p.accuracy * p.n))
        test = f"exact binomial, {correct} of {p.n} correct against chance 1/{k}"
        paired.append(_probe_item(result, p, p.accuracy, chance, p=_greater_p(correct, p.n, chance), test=test))
    return len(paired), paired, []


def _more_iterations(result: AuditResult, probes: list[StrengthProbe]) -> tuple[int, list[dict], list[dict]]:
    unpaired = []
    for p in probes:
        steps, reference_steps, reference_accuracy = p.steps, p.reference_steps, p.reference_accuracy
        if p.kind != "more_iterations" or steps is None or reference_steps is None or reference_accuracy is None:
            continue  # (a more_iterations probe has all three: StrengthProbe.__post_init__)
        # the run with more iterations must not be the more accurate one
        (more_acc, more_steps), (few_acc, few_steps) = sorted(
            [(p.accuracy, steps), (reference_accuracy, reference_steps)], key=lambda t: t[1], reverse=True
        )
        ci_more = wilson(int(round(more_acc * p.n)), p.n)
        ci_few = wilson(int(round(few_acc * p.n)), p.n)
        unpaired.append(
            _probe_item(
                result,
                p,
                more_acc,
                few_acc,
                steps=more_steps,
                reference_steps=few_steps,
                violated=bool(ci_more and ci_few and ci_more[0] > ci_few[1]),
                test="Wilson 95% intervals do not overlap",
            )
        )
    return len(unpaired), [], unpaired


def _text(check: str, item: dict) -> str:
    eps = _eps_text(item.get("epsilon"))
    if check == "stronger_than_transfer":
        return (
            f"{item['condition']} ({item['threat_model']}) fools {_pct(item['value'])} of the clean-correct images, "
            f"the transfer attack {item['versus']} {_pct(item['reference'])} at the same ε = {eps}"
        )
    if check == "monotone_in_eps":
        return (
            f"accuracy rises with ε: {item['versus']} {_pct(item['reference'])}, "
            f"{item['condition']} {_pct(item['value'])}"
        )
    if check == "large_eps":
        return (
            f"{item['attack']} ({item['threat_model']}) at ε = {eps} leaves {_pct(item['value'])} of {item['n']} "
            f"images correct, above chance {_pct(item['reference'])}"
        )
    return (
        f"{item['attack']} ({item['threat_model']}) at ε = {eps}: {item['steps']} iterations give "
        f"{_pct(item['value'])} accuracy, {item['reference_steps']} give {_pct(item['reference'])} "
        f"(on {item['n']} images)"
    )


def strength_checks(result: AuditResult, alpha: float = ALPHA) -> dict[str, Any]:
    """The attack-strength checks of ``result`` (``extras.strength_checks`` of results.json).

    Returns ``checks`` (one entry per name of :data:`CHECKS`: ``title``, ``status`` ``passed``,
    ``violated`` or ``not run``, ``tested`` comparisons, ``violations`` with a ``text`` and the
    ``conditions`` whose figures they put in doubt), ``flagged`` (condition name -> the violation
    texts), ``possible_masking`` (any violation), ``alpha``, ``method`` and ``notes``.
    """
    images = _Images(result)
    probes, notes = read_probes(result)
    runs = {
        "stronger_than_transfer": _stronger_than_transfer(result, images),
        "monotone_in_eps": _monotone_in_eps(result, images),
        "large_eps": _large_eps(result, probes),
        "more_iterations": _more_iterations(result, probes),
    }
    checks: dict[str, Any] = {}
    flagged: dict[str, list[str]] = {}
    for name in CHECKS:
        tested, paired, unpaired = runs[name]
        adjusted = holm([it["p"] for it in paired])
        violations = []
        for it, p_adj in zip(paired, adjusted):
            it["p_holm"] = p_adj
            if p_adj < alpha:
                violations.append(it)
        violations += [it for it in unpaired if it.pop("violated")]
        for it in violations:
            it["text"] = _text(name, it)
            it["conditions"] = it.get("conditions") or ([it["condition"]] if it.get("condition") else [])
            for cond in it["conditions"]:
                flagged.setdefault(cond, []).append(it["text"])
        checks[name] = {
            "title": CHECK_TITLES[name],
            "status": "not run" if not tested else ("violated" if violations else "passed"),
            "tested": tested,
            "violations": violations,
        }
    return {
        "checks": checks,
        "flagged": flagged,
        "possible_masking": any(c["violations"] for c in checks.values()),
        "alpha": alpha,
        "method": (
            "exact one-sided McNemar / binomial tests with Holm's correction within each check where per-image "
            "predictions exist; otherwise non-overlapping 95% intervals"
        ),
        "notes": notes,
    }


def violations_of(checks: dict[str, Any], names: Iterable[str]) -> list[str]:
    """The violation texts of :func:`strength_checks` that put one of the conditions ``names`` in doubt."""
    flagged = checks.get("flagged") or {}
    return [t for n in names for t in flagged.get(n, [])]
