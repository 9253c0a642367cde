"""Scan stage: score one model on the clean, attacked, defended and adaptive images (:func:`evaluate_model`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence, cast

import numpy as np

from auditor.condition_ids import ConditionId
from auditor.errors import NonFiniteOutput, UsageError
from auditor.evaluation import predict_stream
from auditor.metrics import compute_attack_rates, compute_metrics
from auditor.outcomes import Predictions, Probabilities
from auditor.result_records import AdaptiveSetMeta, AttackSetMeta, ConditionExtra, QueryCurve
from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.records import AdversarialSet
from auditor.transfer import set_diagnostics
from auditor.types import Condition, Skipped


def _ints(a: np.ndarray) -> Sequence[int]:
    """An integer array where the measures (:mod:`auditor.metrics`, :mod:`auditor.transfer`) take class indices:
    they read any array-like, but numpy's stubs do not make an array a ``Sequence``."""
    return cast(Sequence[int], a)


class _DefenseFailed(Exception):
    """A defense raised while transforming a batch (a skip of that defense, not a crash)."""


def _guarded(pre):
    """``pre`` as a batch transform whose own failures surface as :class:`_DefenseFailed`."""

    def run(x):
        try:
            return pre(x)
        except Exception as exc:
            raise _DefenseFailed(str(exc)) from exc

    return run


def predict(
    ctx: ScanContext, model, x, what: str, stage: str = "clean", transform=None, names: Sequence[str] = ()
) -> np.ndarray:
    """Probabilities of ``model`` on ``x`` (array or lazy images, ``transform`` first), streamed in batches;
    ``names`` (the file of each row) name the first image of a non-finite output."""
    opt = ctx.options
    try:
        with ctx.reporter.task(what, len(x)) as adv, ctx.clock(model.path).timed(stage, len(x)):
            if opt.ray_address:
                from auditor.distributed_eval import NotDistributable, predict_on_ray

                try:
                    return predict_on_ray(
                        model,
                        x,
                        opt.batch_size,
                        transform=transform,
                        address=opt.ray_address,
                        workers=opt.workers,
                        progress=adv,
                    )
                except NotDistributable as exc:
                    ctx.reporter.info(f"{what}: evaluated in this process, {exc}")
            return predict_stream(model, x, opt.batch_size, transform=transform, progress=adv)
    except NonFiniteOutput as exc:
        first = names[exc.rows[0]] if exc.rows and len(names) == len(x) else f"row {exc.rows[0] if exc.rows else '?'}"
        raise NonFiniteOutput(
            f"{model.path}: {what}: the model returned NaN or infinite outputs for "
            f"{len(exc.rows)} of {len(x)} image(s); first file: {first}",
            exc.rows,
        ) from None


def _condition(
    ctx: ScanContext, data: LoadedData, name: str, kind: str, proba: np.ndarray, class_names, **kw
) -> Condition:
    pred = proba.argmax(1)
    metrics = compute_metrics(
        _ints(data.y),
        _ints(pred),
        class_names,
        groups=data.groups if any(data.groups) else None,
        seed=ctx.options.seed,
        n_boot=ctx.options.n_boot,
    )
    return Condition(
        name=name,
        kind=kind,
        metrics=metrics,
        predictions=Predictions(pred),
        probabilities=Probabilities.from_model(proba),  # round(p, 6) vectorised; no per-image tuples
        **kw,
    )


def _rates(ctx: ScanContext, data: LoadedData, clean_pred: np.ndarray, pred: np.ndarray) -> ConditionExtra:
    """Attack success and flip rates of ``pred`` against the clean predictions, with patient-wise CIs."""
    rates = compute_attack_rates(
        _ints(data.y),
        _ints(clean_pred),
        _ints(pred),
        groups=data.groups if any(data.groups) else None,
        seed=ctx.options.seed,
        n_boot=ctx.options.n_boot,
    )
    return ConditionExtra.from_json(rates)


def evaluate_model(
    ctx: ScanContext,
    data: LoadedData,
    model,
    sets: Sequence[AdversarialSet],
    preprocessors: Sequence,
    adaptive: Sequence[AdversarialSet] = (),
) -> list[Condition]:
    """Every condition of ``model`` on ``data``: clean, each set, each defense on clean and on each set, each
    adaptive set."""
    names = model.spec.class_names
    if [c.lower() for c in names] != [c.lower() for c in ctx.target.spec.class_names]:
        raise UsageError(
            f"{model.path}: classes {list(names)} differ from the target's {list(ctx.target.spec.class_names)}"
        )
    label = Path(model.path).name
    clean_proba = predict(ctx, model, data.images, f"Clean inference ({label})", names=data.names)
    clean_pred = clean_proba.argmax(1)
    conditions = [_condition(ctx, data, "clean", "clean", clean_proba, names)]
    adv_preds: dict[str, np.ndarray] = {}
    for st in sets:
        cond = _attacked(ctx, data, model, st, clean_pred)
        adv_preds[st.name] = np.asarray(cond.predictions)
        conditions.append(cond)
    for pre in preprocessors:
        conditions.extend(_defended(ctx, data, model, pre, sets, clean_pred, adv_preds))
    by_name = {c.name: c for c in conditions}
    conditions.extend(_adaptive(ctx, data, model, st, clean_pred, by_name) for st in adaptive)
    return conditions


def query_curve(used: np.ndarray, y: np.ndarray, clean_pred: np.ndarray, pred: np.ndarray, budget: int) -> QueryCurve:
    """Success against queries of a query attack: for budgets up to the attack's, the share of the images the
    model classifies correctly when clean that the attack made wrong within that many queries."""
    ok = clean_pred == y
    hit = ok & (pred != y)
    n = int(ok.sum())
    grid = sorted({q for q in (1, 10, 30, 100, 300, 1000, 3000, 5000, 10000) if q < budget} | {int(budget)})
    curve = tuple((q, float((hit & (used <= q)).sum() / n) if n else None) for q in grid)
    return QueryCurve(
        int(budget),
        float(used.mean()) if used.size else None,
        float(np.median(used[hit])) if hit.any() else None,
        curve,
    )


def _attacked(ctx: ScanContext, data: LoadedData, model, st: AdversarialSet, clean_pred: np.ndarray) -> Condition:
    """``model`` on the images of one adversarial set."""
    label = Path(model.path).name
    proba = predict(ctx, model, st.images, f"{st.name} ({label})", stage="attacked", names=data.names)
    pred = proba.argmax(1)
    meta = st.meta
    extra = _rates(ctx, data, clean_pred, pred).with_(
        **st.stats, label=st.label, cache_hit=meta.cache_hit, backend=meta.backend
    )
    if isinstance(meta, AttackSetMeta) and meta.style_diversity is not None:
        extra = extra.with_(style_diversity=meta.style_diversity)
    if st.kind == "style_blend":
        extra = extra.with_(opacity=st.alpha)
    queries = (st.record or {}).get("queries")
    if queries is not None and model is ctx.target and isinstance(meta, AttackSetMeta):
        extra = extra.with_(queries=query_curve(np.asarray(queries), data.y, clean_pred, pred, meta.params["queries"]))
    if st.surrogate_eval is not None:
        ev = st.surrogate_eval
        extra = extra.with_(
            transfer=set_diagnostics(
                _ints(data.y),
                _ints(clean_pred),
                _ints(pred),
                _ints(ev.clean_pred),
                _ints(ev.adv_pred),
                ev.input_sizes,
                (model.spec.height, model.spec.width),
            )
        )
    return _condition(
        ctx,
        data,
        st.name,
        st.kind,
        proba,
        model.spec.class_names,
        attack=st.attack,
        epsilon=st.epsilon,
        surrogate=st.surrogate,
        threat_model=st.threat_model,
        extra=extra,
    )


def _defended(
    ctx: ScanContext,
    data: LoadedData,
    model,
    pre,
    sets: Sequence[AdversarialSet],
    clean_pred: np.ndarray,
    adv_preds: dict[str, np.ndarray],
) -> list[Condition]:
    """``model`` behind one defense, on the clean images and on every set; [] (a skip) when the defense fails."""
    names, label = model.spec.class_names, Path(model.path).name
    clean_name = ConditionId("clean", pre.name).name
    what = f"{clean_name} ({label})"
    try:
        proba = predict(ctx, model, data.images, what, "defended", transform=_guarded(pre), names=data.names)
    except _DefenseFailed as exc:  # a defense failing on this data is a skip, not a crash
        ctx.skipped.append(Skipped(pre.name, f"defense failed on this data: {str(exc)[:160]}", "defense"))
        return []
    pred = proba.argmax(1)
    cost = getattr(pre, "cost_ms_per_image", None)
    out = [
        _condition(
            ctx,
            data,
            clean_name,
            "defense",
            proba,
            names,
            defense=pre.name,
            extra=_rates(ctx, data, clean_pred, pred).with_(cost_ms_per_image=cost),
        )
    ]
    for st in sets:
        name = ConditionId(st.name, pre.name).name
        dproba = predict(ctx, model, st.images, f"{name} ({label})", "defended", transform=pre, names=data.names)
        dpred = dproba.argmax(1)
        recovered = float(np.mean((dpred == data.y) & (adv_preds[st.name] != data.y)))
        out.append(
            _condition(
                ctx,
                data,
                name,
                "defense",
                dproba,
                names,
                attack=st.attack,
                epsilon=st.epsilon,
                surrogate=st.surrogate,
                threat_model=st.threat_model,
                defense=pre.name,
                extra=_rates(ctx, data, clean_pred, dpred).with_(cost_ms_per_image=cost, recovered_rate=recovered),
            )
        )
    return out


def _adaptive(
    ctx: ScanContext,
    data: LoadedData,
    model,
    st: AdversarialSet,
    clean_pred: np.ndarray,
    by_name: dict[str, Condition],
) -> Condition:
    """``model`` behind the defense on an adaptive (BPDA) set, compared with the non-adaptive attack."""
    pre, label, base = st.defense, Path(model.path).name, st.base
    if base is None:  # never: the BPDA stage gives every adaptive set its base
        raise ValueError(f"{st.name}: an adaptive set without the set it repeats")
    proba = predict(ctx, model, st.images, f"{st.name} ({label})", "adaptive", transform=pre, names=data.names)
    pred = proba.argmax(1)
    cond = _condition(
        ctx,
        data,
        st.name,
        "defense",
        proba,
        model.spec.class_names,
        attack=st.attack,
        epsilon=st.epsilon,
        surrogate=st.surrogate,
        threat_model=st.threat_model,
        defense=pre.name,
        extra=_rates(ctx, data, clean_pred, pred).with_(
            **st.stats,
            adaptive=True,
            label=st.label,
            gradient=st.meta.gradient if isinstance(st.meta, AdaptiveSetMeta) else None,
        ),
    )
    non_adaptive = by_name.get(ConditionId(base.name, pre.name).name)
    if non_adaptive is not None:
        drop = non_adaptive.metrics["accuracy"] - cond.metrics["accuracy"]
        # flag a defense whose benefit largely vanishes once the attacker knows it
        undefended = by_name[base.name].metrics["accuracy"]
        benefit = non_adaptive.metrics["accuracy"] - undefended
        vanishes = bool(benefit > 0 and cond.metrics["accuracy"] - undefended < 0.5 * benefit)
        cond = replace(cond, extra=cond.extra.with_(accuracy_drop_vs_non_adaptive=drop, benefit_vanishes=vanishes))
    return cond
