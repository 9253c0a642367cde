"""What the attack stage will cost on this host, measured before it starts (``--plan``, ``--budget``).

Each attack of the scan runs 2 iterations (a query attack: 2 queries) on 2 images of the data set
(:func:`auditor.scan.attack.probe_rates`), on the model it will attack (the surrogate, the converted target
of ``--whitebox``, or the ONNX target); its seconds per image at its full iterations are the probe's time
scaled by ``steps / PROBE_STEPS``. The stage clock (:mod:`auditor.attack_eta`) projects every attack from its
own probe until its first batches are measured, so no attack's time is extrapolated from another's. A
query attack's figure is an upper bound: images leave its batch once fooled. Cached sets take far less.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.factories import SurrogateFactory


class PlanOnly(Exception):
    """Raised by the scan after ``--plan`` has printed the attack stage's plan (nothing is attacked)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__("plan only")
        self.rows = rows


@dataclass(frozen=True)
class AttackPlan:
    """What the plan measured: one row per set (see :func:`plan_attack_stage`), and the seconds per image of each
    (surrogate source, attack) that the attack stage's clock starts from."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rates: dict[tuple[Optional[str], str], float] = field(default_factory=dict)


def plan_attack_stage(ctx: ScanContext, data: LoadedData, surrogates: SurrogateFactory) -> AttackPlan:
    """One row per adversarial set the scan will build: its attack, where it runs, the probed seconds per image
    and the projected seconds for the scan's images; and the probed rates, for the stage clock."""
    from auditor.models.device import pick_device
    from auditor.scan.attack import WHITEBOX_SURROGATE, probe_rates, query_model, resolve_scan_precision, scan_jobs
    from auditor.scan.options import GRADIENT_ATTACKS, QUERY_ATTACKS

    opt, n = ctx.options, len(data.images)
    groups = [
        (None, [a for a in opt.attacks if a in GRADIENT_ATTACKS]),
        (WHITEBOX_SURROGATE, list(opt.whitebox_attacks)),
        ("query", [a for a in opt.attacks if a in QUERY_ATTACKS]),
    ]
    rows = []
    all_rates: dict[tuple[Optional[str], str], float] = {}
    for source, names in groups:
        if not names:
            continue
        jobs = scan_jobs(ctx, data, names)
        if source == "query":
            model, device, precision, where = query_model(ctx), None, "fp32", "target (queries)"
        else:
            model = surrogates(source)
            if model is None:
                continue
            device = pick_device(opt.device)
            precision, _ = resolve_scan_precision(ctx, data, model, jobs, device)
            where = model.identity.get("label") or source or opt.surrogate or ""
        rates = probe_rates(ctx, data, jobs, model, device, precision)
        all_rates.update({(source, a): r for a, r in rates.items()})
        for job in jobs:
            rate = rates.get(job.attack)
            rows.append(
                {
                    "set": job.name,
                    "attack": job.attack,
                    "on": where,
                    "seconds_per_image": rate,
                    "images": n,
                    "seconds": None if rate is None else rate * n,
                }
            )
    return AttackPlan(rows, all_rates)


def plan_lines(rows: list[dict[str, Any]], budget_minutes: float | None) -> list[str]:
    """The plan as console lines, and with a budget what fits it."""
    from auditor.attack_eta import format_duration

    lines = []
    for r in rows:
        cost = "not measured" if r["seconds"] is None else format_duration(r["seconds"])
        per = "" if r["seconds_per_image"] is None else f" ({r['seconds_per_image']:.2f} s/image)"
        lines.append(f"plan: {r['set']} on {r['on']}: {cost}{per} for {r['images']} images")
    total = sum(r["seconds"] or 0.0 for r in rows)
    n = rows[0]["images"] if rows else 0
    lines.append(f"plan: attack stage about {format_duration(total)} on this host (uncached; cached sets take less)")
    if budget_minutes is not None and rows:
        budget = budget_minutes * 60.0
        if total <= budget:
            lines.append(f"plan: fits the budget of {budget_minutes:g} min")
        else:
            per_image = total / max(n, 1)
            fit = int(math.floor(budget / per_image)) if per_image > 0 else n
            by_attack: dict[str, float] = {}
            for r in rows:
                by_attack[r["attack"]] = by_attack.get(r["attack"], 0.0) + (r["seconds"] or 0.0)
            keep, used = [], 0.0
            for attack, seconds in sorted(by_attack.items(), key=lambda kv: kv[1]):
                if used + seconds <= budget:
                    keep.append(attack)
                    used += seconds
            lines.append(
                f"plan: over the budget of {budget_minutes:g} min: {fit} of {n} images fit (--max-images {fit})"
                + (f", or for all {n} images only {', '.join(keep)}" if keep else "")
            )
    return lines
