"""Scan stage: the input-transform defenses (:func:`build_preprocessors`) and the adaptive (BPDA)
check against them (:func:`build_bpda_sets`)."""

from __future__ import annotations

from typing import Sequence

from auditor.condition_ids import ConditionId
from auditor.result_records import AdaptiveSetMeta
from auditor.scan.attack import record_cache_warnings, scan_jobs, set_data, set_run
from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.factories import DefenseFactory, SurrogateFactory
from auditor.scan.options import ADAPTIVE_ATTACKS
from auditor.scan.records import AdversarialSet
from auditor.types import Skipped

COST_SAMPLE = 8


def build_preprocessors(
    ctx: ScanContext, data: LoadedData, defenses: DefenseFactory, surrogates: SurrogateFactory
) -> list:
    """The scan's defenses from ``defenses`` (``feature`` gets the features of the surrogate ``surrogates``
    builds), each with its cost measured; unusable ones become Skipped."""
    opt = ctx.options
    feature_extractor = None
    if "feature" in (opt.defenses or "") and opt.surrogate:
        sur = surrogates(None)
        if sur is not None:
            from auditor.defenses.feature import ConvFeatureExtractor

            feature_extractor = ConvFeatureExtractor(sur.module)
    out = []
    for item in defenses(feature_extractor):
        if isinstance(item, Skipped):  # --strict turns skips into exit 1 once the reports are written
            ctx.reporter.warn(f"skipped {item.name}: {item.reason}")
            ctx.skipped.append(item)
            continue
        item.measure_cost(data.images[:COST_SAMPLE])
        out.append(item)
    return out


def _bpda_bases(opt, sets: Sequence[AdversarialSet]) -> dict[str, AdversarialSet]:
    """The set each adaptive attack starts from: the largest epsilon of each gradient attack (the first on a tie),
    limited to ``--bpda-attacks`` when given."""
    top: dict[str, AdversarialSet] = {}
    for s in sets:
        if s.kind != "attack" or s.attack not in ADAPTIVE_ATTACKS:
            continue
        if opt.bpda_attacks and s.attack not in opt.bpda_attacks:
            continue
        if s.attack not in top or (s.epsilon or 0.0) > (top[s.attack].epsilon or 0.0):  # attack sets have budgets
            top[s.attack] = s
    return top


def _through_defense(ctx: ScanContext, surrogate, pre):
    """The surrogate composed with the defense's torch path, or None (recorded as skipped) without one."""
    import dataclasses

    from auditor.defenses.bpda import defended_module

    module = defended_module(surrogate.module, pre)
    if isinstance(module, Skipped):
        ctx.skipped.append(module)
        return None
    ident = dict(surrogate.identity)
    ident["sha256"] = list(ident.get("sha256", [])) + [f"bpda:{pre.name}:{pre.params.get('sha256', '')}"]
    ident["label"] = f"{ident.get('label', ctx.options.surrogate)} + {pre.name} ({module.gradient} gradient)"
    return dataclasses.replace(surrogate, module=module, identity=ident)


def build_bpda_sets(
    ctx: ScanContext,
    data: LoadedData,
    surrogates: SurrogateFactory,
    preprocessors: list,
    sets: Sequence[AdversarialSet],
    precision: str,
) -> list[AdversarialSet]:
    """Adaptive check (BPDA, Athalye et al., ICML 2018): attack surrogate∘defense with the defense's
    torch path (exact, or straight-through where it is not differentiable), at the largest epsilon of
    each gradient attack. Each set carries its ``defense`` (the target sees ``defense(x_adv)``) and ``base``,
    and the threat model of the scan's surrogate (``white-box`` when it is the target itself, else ``transfer``):
    that it is adaptive is said by its kind and its condition's ``adaptive`` flag, not by the threat model.
    The sets are made at ``precision`` (the attack stage's)."""
    from auditor.models.device import pick_device

    if not any(s.kind == "attack" for s in sets) or not preprocessors:
        return []
    surrogate = surrogates(None)
    if surrogate is None:
        return []
    top = _bpda_bases(ctx.options, sets)
    device = pick_device(ctx.options.device)
    out = []
    for pre in preprocessors:
        adaptive = _through_defense(ctx, surrogate, pre)
        if adaptive is None:
            continue
        for attack, base in top.items():
            out.append(_bpda_set(ctx, data, attack, base, pre, adaptive, device, precision))
    return out


def _bpda_set(
    ctx: ScanContext, data: LoadedData, attack: str, base: AdversarialSet, pre, adaptive, device, precision: str
) -> AdversarialSet:
    """One adaptive set: ``attack`` at the epsilon of ``base`` on the surrogate through ``pre``."""
    from auditor.attacks.perturbation import set_stats
    from auditor.attacks.sets import build_adversarial_set

    params = dict(scan_jobs(ctx, data, [attack], [base.epsilon])[0].params)
    name = ConditionId(base.name, pre.name, adaptive=True).name
    ctx.reporter.info(f"adaptive attack {name}")
    with ctx.reporter.task(name, len(data.images)) as adv:
        aset = build_adversarial_set(
            attack,
            params,
            adaptive,
            set_data(data),
            set_run(ctx, device, precision),
            progress=adv,
        )
    record_cache_warnings(ctx, name, aset.warnings)
    meta = AdaptiveSetMeta(
        name, aset.key, aset.cache_hit, adaptive.module.gradient, round(aset.seconds, 2), aset.backend
    )
    return AdversarialSet(
        base.id,
        "adaptive",
        aset.images,
        set_stats(data.images, aset),
        f"{aset.label} + BPDA",
        meta,
        adaptive.identity["label"],
        adaptive.threat_model,  # the scan's surrogate's (white-box when it is the target); adaptive: kind/extra
        defense=pre,
        base=base,
    )
