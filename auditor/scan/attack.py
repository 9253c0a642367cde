"""Scan stage: build (or load from the cache) the adversarial sets of a scan (:func:`build_sets`).

Each set is an :class:`~auditor.scan.records.AdversarialSet`: its identifier (attack, ε, style backend or
opacity), images (N,1,H,W), perturbation statistics against clean, label, the metadata results.json
records (cache key, timing, cache hit) and, for gradient attacks, the surrogate's own predictions on
the clean and on the quantised adversarial images (:class:`~auditor.scan.records.SurrogateEval`, see
:mod:`auditor.transfer`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, cast

import numpy as np

from auditor.condition_ids import SetId
from auditor.result_records import BlendSetMeta
from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.factories import SurrogateFactory
from auditor.scan.jobs import AttackJob, attack_jobs, choose_precision
from auditor.scan.options import BLEND_ALPHAS, GRADIENT_ATTACKS, QUERY_ATTACKS, VISIBLE_ATTACKS
from auditor.scan.records import AdversarialSet, AttackStage, SurrogateEval
from auditor.types import Skipped

#: seconds per image of each (surrogate source, attack), as the plan's probe measured them (:mod:`auditor.scan.plan`)
Rates = Mapping[tuple[Optional[str], str], float]


def _stage_clock(
    ctx: ScanContext, data: LoadedData, jobs: list[AttackJob], source, model, device, precision: str, rates: Rates
):
    """The attack stage's clock: projections after first batches and at a steady interval, seconds per image
    per set. Every attack is projected from its own probe (:mod:`auditor.scan.plan`) until it is measured."""
    from auditor.attack_eta import StageClock
    from auditor.attacks.registry import get_spec

    plan = [(job.name, job.attack) for job in jobs]
    costs = {job.attack: get_spec(job.attack).cost(job.params) for job in jobs}
    probed = {a: r for (src, a), r in rates.items() if src == source}
    if len({job.attack for job in jobs} - set(probed)) > 1:
        probed.update(probe_rates(ctx, data, [j for j in jobs if j.attack not in probed], model, device, precision))
    return StageClock.for_sets(plan, len(data.images), ctx.reporter.info, costs=costs, probed=probed)


#: the stage clock's probe: iterations (or queries) on images of the data set, per attack
PROBE_IMAGES = 2
PROBE_STEPS = 2


def probe_rates(
    ctx: ScanContext, data: LoadedData, jobs: list, model: Any, device: Any, precision: str
) -> dict[str, float]:
    """Seconds per image of each attack of ``jobs`` at its full iterations, from :data:`PROBE_STEPS` iterations on
    :data:`PROBE_IMAGES` images on ``model`` (see :mod:`auditor.scan.plan`)."""
    import torch

    from auditor.attack_specs import get_spec
    from auditor.attacks.registry import make_attack

    k = min(PROBE_IMAGES, len(data.images))
    if k == 0:
        return {}
    x = np.asarray(data.images[np.arange(k)], dtype=np.float32)
    y = np.asarray(data.y)[:k].astype(np.int64)
    rates: dict[str, float] = {}
    for job in jobs:
        if job.attack in rates:
            continue
        spec = get_spec(job.attack)
        steps = int(job.params.get(spec.steps_param, spec.default_steps))
        short = max(1, min(PROBE_STEPS, steps))
        params = {**job.params, spec.steps_param: short, "precision": precision}
        if device is not None:
            params["device"] = device
        try:
            atk = make_attack(job.attack, model, **params)
            atk.ensure_setup()
            warm = make_attack(job.attack, model, **{**params, spec.steps_param: 1})
            warm.ensure_setup()
            warm(torch.from_numpy(x[:1]), torch.from_numpy(y[:1]), seed=ctx.options.seed)  # one-time costs
        except Exception:  # an attack that cannot even start is reported when it runs
            continue
        t0 = time.perf_counter()
        atk(torch.from_numpy(x), torch.from_numpy(y), seed=ctx.options.seed)
        rates[job.attack] = (time.perf_counter() - t0) / k * steps / short
    return rates


def scan_jobs(ctx: ScanContext, data: LoadedData, attacks: list[str], epsilons=None) -> list[AttackJob]:
    """The scan's attack jobs for ``attacks`` at ``epsilons`` (default: the scan's budgets)."""
    opt = ctx.options
    return attack_jobs(
        attacks,
        opt.epsilons if epsilons is None else epsilons,
        data.images,
        data.y,
        attack_params=opt.attack_params,
        style_backend=opt.style_backend,
        stm_checkpoint=opt.stm_checkpoint,
        seed=opt.seed,
    )


def resolve_scan_precision(
    ctx: ScanContext, data: LoadedData, surrogate, jobs: list[AttackJob], device
) -> tuple[str, dict[str, Any] | None]:
    """``--precision fp32|bf16`` as given; ``auto`` measured on this host, with what was measured (else None)."""
    opt = ctx.options
    if opt.precision != "auto":
        return opt.precision, None
    rec = choose_precision(
        jobs,
        surrogate,
        data.images,
        data.y,
        batch_size=opt.attack_batch_size,
        seed=opt.seed,
        cache_dir=opt.cache_dir,
        device=device,
    )
    if rec is None:
        return "fp32", None
    ctx.reporter.info(
        f"precision auto: {rec['chosen']} ({rec['reason']}; fp32 {rec['fp32_ms_per_row']} ms, "
        f"bf16 {rec['bf16_ms_per_row']} ms per surrogate pass and image"
        + (f"; measured earlier, {rec['reused']})" if rec.get("reused") else ")")
    )
    return rec["chosen"], rec


def _blend_batch(x, alpha: float, style_image, seed: int):
    from auditor.attacks.style_blend import style_blend_set

    return style_blend_set(x, alpha=alpha, style_image=style_image, seed=seed)[0]


def _blend_images(images, alpha: float, style_image, seed: int):
    """The style-blend set at ``alpha`` (lazy when ``images`` is: each batch is blended on access) and its label."""
    from functools import partial

    from auditor.attacks.style_blend import style_blend_set
    from auditor.data.stream import LazyImages, MappedImages

    if not isinstance(images, LazyImages):
        return style_blend_set(images, alpha=alpha, style_image=style_image, seed=seed)
    _, label = style_blend_set(images[:1], alpha=alpha, style_image=style_image, seed=seed)
    return MappedImages(images, partial(_blend_batch, alpha=alpha, style_image=style_image, seed=seed)), label


def build_sets(
    ctx: ScanContext, data: LoadedData, surrogates: SurrogateFactory, rates: Rates | None = None
) -> AttackStage:
    """All adversarial sets of the scan, in a stable order (attack, then epsilon), made on the surrogates
    ``surrogates`` builds; ``rates`` are the plan's probed seconds per image (:mod:`auditor.scan.plan`)."""
    opt, rates = ctx.options, rates or {}
    sets: list[AdversarialSet] = []
    choice = None
    wanted = [a for a in opt.attacks if a in GRADIENT_ATTACKS]
    if wanted:
        made, choice = _gradient_sets(ctx, data, surrogates(None), wanted, rates)
        sets.extend(made)
    if opt.whitebox_attacks:
        made, white = _gradient_sets(
            ctx, data, surrogates(WHITEBOX_SURROGATE), list(opt.whitebox_attacks), rates, WHITEBOX_SURROGATE
        )
        sets.extend(made)
        choice = white or choice  # the last measured, as the sets after it were made at it
    queries = [a for a in opt.attacks if a in QUERY_ATTACKS]
    if queries:
        sets.extend(_query_sets(ctx, data, queries, rates))
    for name in (a for a in opt.attacks if a in VISIBLE_ATTACKS):
        sets.extend(_blend_sets(ctx, data, name))
    return AttackStage(tuple(sets), choice)


#: the ``--surrogate`` text of the target's own gradients (``--whitebox``)
WHITEBOX_SURROGATE = "target"


def _gradient_sets(
    ctx: ScanContext, data: LoadedData, surrogate, wanted: list[str], rates: Rates, spec: str | None = None
) -> tuple[list[AdversarialSet], dict[str, Any] | None]:
    """The gradient-attack sets, built on ``surrogate`` (the scan's, or ``spec``'s; none when it could not be
    loaded), and what ``--precision auto`` measured."""
    from auditor.attacks.surrogate_eval import input_sizes, surrogate_predict
    from auditor.models.device import pick_device

    opt = ctx.options
    if surrogate is None:
        return [], None
    device = pick_device(opt.device)
    jobs = scan_jobs(ctx, data, wanted)
    precision, choice = resolve_scan_precision(ctx, data, surrogate, jobs, device)
    clock = _stage_clock(ctx, data, jobs, spec, surrogate, device, precision, rates)
    sur_label = surrogate.identity.get("label") or spec or opt.surrogate or ""
    timer = ctx.clock(ctx.target.path)  # the surrogate's own predictions: stage "surrogate" (inside "sets")
    with timer.timed("surrogate", len(data.images)):
        sur_clean = surrogate_predict(
            surrogate.module, cast(np.ndarray, data.images), opt.batch_size, device
        )  # by batch
    sur_sizes = input_sizes(surrogate.module)
    sets = []
    for job, aset in generate_sets(
        ctx, data, jobs, surrogate, device, precision, clock, announce=f"surrogate {sur_label}", surrogate_spec=spec
    ):
        with timer.timed("surrogate", len(aset.images)):
            adv_pred = surrogate_predict(surrogate.module, aset.images, opt.batch_size, device)
        evaluation = SurrogateEval(sur_clean, adv_pred, sur_sizes)
        sets.append(_attack_set(data, job, aset, surrogate, sur_label, clock, surrogate_eval=evaluation))
    return sets, choice


def query_model(ctx: ScanContext):
    """The target as query attacks see it: its ONNX Runtime session's log-odds scores, nothing else."""
    from auditor.attacks.square import QueryModel

    target, opt = ctx.target, ctx.options
    return QueryModel(
        target.predict_scores,
        tuple(target.spec.class_names),
        {"kind": "target", "sha256": [target.sha256], "label": f"target {Path(target.path).name} (queries only)"},
        batch_size=opt.batch_size if target.spec.dynamic_batch else 1,
    )


def _query_sets(ctx: ScanContext, data: LoadedData, wanted: list[str], rates: Rates) -> list[AdversarialSet]:
    """The query-attack sets: the target's ONNX file queried through ONNX Runtime (no surrogate, no conversion)."""
    model = query_model(ctx)
    jobs = scan_jobs(ctx, data, wanted)
    clock = _stage_clock(ctx, data, jobs, "query", model, None, "fp32", rates)
    sets = []
    for job, aset in generate_sets(ctx, data, jobs, model, None, "fp32", clock, announce=model.identity["label"]):
        label = model.identity["label"]
        sets.append(_attack_set(data, job, aset, model, label, clock, record=aset.per_image))
    return sets


def _attack_set(data: LoadedData, job: AttackJob, aset, model, label: str, clock, **extra) -> AdversarialSet:
    """The scan's record of one attack set made on ``model`` (a surrogate or the target's queries)."""
    return AdversarialSet(
        job.set_id,
        "attack",
        aset.images,
        _set_stats(data.images, aset),
        aset.label,
        aset.meta(job.name, model.identity, clock.seconds_per_image(job.name)),
        label,
        model.threat_model,
        **extra,
    )


def generate_sets(
    ctx: ScanContext,
    data: LoadedData,
    jobs: list[AttackJob],
    surrogate,
    device,
    precision: str,
    clock=None,
    announce: str | None = None,
    surrogate_spec: str | None = None,
) -> Iterator[tuple[AttackJob, Any]]:
    """Build (or load) the set of every job, in order, yielding ``(job, GeneratedSet)``.

    An attack whose style backend cannot run is skipped (recorded on ``ctx``) with all its budgets; a
    cached batch that failed its check is warned and listed. ``clock`` (the scan's stage clock) times
    every computed batch; ``announce`` (the surrogate's label) reports each attack before it runs.
    """
    from auditor.attacks.style import StyleBackendUnavailable

    failed: set[str] = set()
    for job in jobs:
        if job.attack in failed:
            continue  # every epsilon of this attack needs the same backend
        if announce is not None:
            ctx.reporter.info(f"attack {job.name} on {announce} ({len(data.images)} images)")
        try:
            aset = _generate(ctx, data, job, surrogate, device, precision, clock, surrogate_spec)
        except StyleBackendUnavailable as exc:
            ctx.skip(job.name, str(exc))
            failed.add(job.attack)
            if clock is not None:
                clock.forget(job.attack)
            continue
        record_cache_warnings(ctx, job.name, aset.warnings)
        yield job, aset


def _generate(
    ctx: ScanContext, data: LoadedData, job: AttackJob, surrogate, device, precision: str, clock, surrogate_spec=None
):
    """One set from :func:`auditor.attacks.sets.build_adversarial_set`, or on Ray with ``--ray-address`` (whose
    tasks receive the same :class:`~auditor.attacks.set_records.SetData` and ``SetRun`` records)."""
    from auditor.attacks.registry import get_spec
    from auditor.attacks.sets import build_adversarial_set

    opt = ctx.options
    params = dict(job.params)
    with ctx.reporter.task(job.name, len(data.images)) as adv:
        if opt.ray_address and get_spec(job.attack).kind == "gradient":  # a query attack runs here
            from auditor.distributed import SurrogateRecipe, build_set_on_ray

            recipe = SurrogateRecipe(surrogate_spec or opt.surrogate or "", ctx.target.spec, ctx.target.path)
            return build_set_on_ray(
                job.attack,
                params,
                surrogate,
                recipe,
                set_data(data),
                set_run(ctx, device, precision),
                address=opt.ray_address,
                workers=opt.workers,
                progress=adv,
            )
        return build_adversarial_set(
            job.attack,
            params,
            surrogate,
            set_data(data),
            set_run(ctx, device, precision),
            progress=adv,
            on_batch=clock.batch_timer(job.name) if clock is not None else None,
        )


def set_data(data: LoadedData):
    """The clean images a set is made from and what identifies them
    (:class:`~auditor.attacks.set_records.SetData`)."""
    from auditor.attacks.set_records import SetData

    names = [s.rel_path or Path(s.path).name for s in data.samples]
    return SetData(data.images, data.y, names, data.info["manifest_sha256"])


def set_run(ctx: ScanContext, device, precision: str):
    """Where and how the scan makes its sets (:class:`~auditor.attacks.set_records.SetRun`)."""
    from auditor.attacks.set_records import SetRun

    opt = ctx.options
    return SetRun(
        Path(opt.cache_dir),
        opt.seed,
        batch_size=opt.attack_batch_size,
        device=device,
        precision=precision,
        scratch=ctx.scratch,
    )


def record_cache_warnings(ctx: ScanContext, name: str, warnings) -> None:
    """A cached batch that failed its integrity check: warned and listed as a ``cache`` skip."""
    for warning in warnings:
        ctx.reporter.warn(f"{name}: {warning}")
        ctx.skipped.append(Skipped(f"{name} cache", warning, "cache"))


def _stats(clean, adv) -> dict:
    from auditor.attacks.perturbation import perturbation_stats

    return perturbation_stats(clean, adv)


def _set_stats(clean, aset) -> dict:
    from auditor.attacks.perturbation import set_stats

    return set_stats(clean, aset)  # computed while the set was verified; no second pass


def _blend_sets(ctx: ScanContext, data: LoadedData, name: str) -> list[AdversarialSet]:
    """The visible style-blend sets of attack ``name``, one per opacity of :data:`BLEND_ALPHAS`."""
    opt = ctx.options
    sets = []
    for alpha in BLEND_ALPHAS:
        set_id = SetId(name, alpha=alpha)
        images, label = _blend_images(data.images, alpha, opt.style_image, opt.seed)
        meta = BlendSetMeta(set_id.name, opt.style_image or "built-in procedural texture")
        sets.append(
            AdversarialSet(
                set_id,
                "style_blend",
                images,
                _stats(data.images, images),
                label,
                meta,
                None,
                "visible manipulation (no gradients)",
            )
        )
    return sets
