"""Scan stage: build (or load from the cache) the adversarial sets of a scan.

Each set is a dict: ``name`` (``usmm@8``), ``kind`` (``attack``/``style_blend``),
``attack``, ``epsilon``, ``surrogate``, ``threat_model``, ``images`` (N,1,H,W),
``stats`` (perturbation norms, SSIM, PSNR against clean), ``label``, ``meta``
(cache key, timing, cache hit) for results.json and, for gradient attacks,
``surrogate_eval`` (the surrogate's predictions on the clean and on the quantised
adversarial images and its input size; see :mod:`auditor.transfer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from auditor.types import Skipped

if TYPE_CHECKING:  # pragma: no cover
    from auditor.audit import Auditor, LoadedData

GRADIENT_ATTACKS = ("mifgsm", "usmm", "stm")


def _skip(auditor: "Auditor", name: str, reason: str, kind: str = "attack") -> None:
    """Record a skip (``--strict`` turns skips into exit 1 once the reports are written)."""
    auditor.reporter.warn(f"skipped {name}: {reason}")
    auditor.skipped.append(Skipped(name, reason, kind))


_NOT_LOADED = object()


def load_scan_surrogate(auditor: "Auditor"):
    """The surrogate of the scan, or None (recorded as skipped, once) when it cannot be built.

    Read and converted once per scan (an ONNX target as ``--surrogate target`` means an ONNX→torch
    conversion with an agreement check); every caller gets its own deep copy, so the attack loop's
    in-place preparation (eval mode, memory format) never reaches the feature defense or BPDA.
    """
    import copy

    from auditor.attacks.device import pick_device
    from auditor.models.torch import ConversionFailed, load_surrogate

    loaded = getattr(auditor, "_scan_surrogate", _NOT_LOADED)
    if loaded is _NOT_LOADED:
        opt = auditor.options
        try:
            loaded = load_surrogate(opt.surrogate, auditor.target.spec, auditor.target.path, pick_device(opt.device))
        except ConversionFailed as exc:
            _skip(auditor, f"surrogate {opt.surrogate}", str(exc))
            loaded = None
        auditor._scan_surrogate = loaded
    return None if loaded is None else copy.deepcopy(loaded)


def _stage_clock(auditor: "Auditor", attacks: list[str], n_images: int):
    """The attack stage's clock: projections after first batches, seconds per image per set."""
    from auditor.attack_eta import StageClock
    from auditor.audit import set_name

    opt = auditor.options
    plan = [(set_name(a, e, opt.style_backend), a) for a in attacks for e in opt.epsilons]
    steps = {a: int(p["steps"]) for a, p in opt.attack_params.items() if isinstance(p, dict) and "steps" in p}
    return StageClock.for_sets(plan, n_images, auditor.reporter.info, steps)


def _attack_params(opt, attack: str, eps: float, data: "LoadedData") -> dict:
    params = {"epsilon": eps, **opt.attack_params.get(attack, {})}
    if attack == "usmm":
        from auditor.attacks.usmm import bounded_mask_pool

        params.update(bounded_mask_pool(data.images, data.y, seed=opt.seed))
    if attack == "stm":
        params.update(style_backend=opt.style_backend, checkpoint_dir=opt.stm_checkpoint)
    return params


def resolve_scan_precision(auditor: "Auditor", surrogate, attacks: list[str], data: "LoadedData", device) -> str:
    """``--precision fp32|bf16`` as given; ``auto`` measured on this host (recorded on the auditor)."""
    opt = auditor.options
    if opt.precision != "auto":
        return opt.precision
    from auditor.attacks.auto_precision import choose_precision_cached
    from auditor.attacks.registry import make_attack
    from auditor.attacks.sets import batch_seed
    from auditor.attacks.stm import StyleBackendUnavailable

    n = min(opt.attack_batch_size, len(data.images))
    for attack in attacks:
        try:
            atk = make_attack(attack, surrogate, **_attack_params(opt, attack, opt.epsilons[0], data), device=device)
            rec = choose_precision_cached(atk, data.images[:n], data.y[:n], batch_seed(opt.seed, 0), opt.cache_dir,
                                          surrogate.identity.get("sha256"))
        except StyleBackendUnavailable:
            continue  # reported when the attack itself runs
        auditor.precision_choice = rec
        auditor.reporter.info(f"precision auto: {rec['chosen']} ({rec['reason']}; fp32 {rec['fp32_ms_per_row']} ms, "
                              f"bf16 {rec['bf16_ms_per_row']} ms per surrogate pass and image"
                              + (f"; measured earlier, {rec['reused']})" if rec.get("reused") else ")"))
        return rec["chosen"]
    return "fp32"


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


def build_sets(auditor: "Auditor", data: "LoadedData") -> list[dict]:
    """All adversarial sets of the scan, in a stable order (attack, then epsilon)."""
    from auditor.audit import BLEND_ALPHAS, set_name

    opt = auditor.options
    sets: list[dict] = []
    names = [s.rel_path or Path(s.path).name for s in data.samples]
    wanted = [a for a in opt.attacks if a in GRADIENT_ATTACKS]
    if wanted:
        from auditor.attacks.device import pick_device
        from auditor.attacks.sets import build_adversarial_set, perturbation_stats
        from auditor.attacks.stm import StyleBackendUnavailable
        from auditor.attacks.surrogate_eval import input_sizes, surrogate_predict

        surrogate = load_scan_surrogate(auditor)
        if surrogate is not None:
            device = pick_device(opt.device)
            clock = _stage_clock(auditor, wanted, len(data.images))
            precision = resolve_scan_precision(auditor, surrogate, wanted, data, device)
            sur_label = surrogate.identity.get("label") or opt.surrogate
            sur_clean = surrogate_predict(surrogate.module, data.images, opt.batch_size, device)
            sur_sizes = input_sizes(surrogate.module)
            for attack in wanted:
                for eps in opt.epsilons:
                    name = set_name(attack, eps, opt.style_backend)
                    params = _attack_params(opt, attack, eps, data)
                    auditor.reporter.info(f"attack {name} on surrogate {sur_label} ({len(data.images)} images)")
                    try:
                        with auditor.reporter.task(f"{name}", len(data.images)) as adv:
                            if opt.ray_address:
                                from auditor.distributed import build_set_on_ray

                                aset = build_set_on_ray(
                                    attack, params, surrogate, opt.surrogate, auditor.target.spec, auditor.target.path,
                                    data.images, data.y, names, Path(opt.cache_dir), data.info["manifest_sha256"],
                                    opt.seed, batch_size=opt.attack_batch_size, precision=precision,
                                    address=opt.ray_address, workers=opt.workers, progress=adv)
                            else:
                                aset = build_adversarial_set(
                                    attack, params, surrogate, data.images, data.y, names, Path(opt.cache_dir),
                                    data.info["manifest_sha256"], opt.seed, batch_size=opt.attack_batch_size,
                                    device=device, precision=precision, progress=adv,
                                    on_batch=clock.batch_timer(name))
                    except StyleBackendUnavailable as exc:
                        _skip(auditor, name, str(exc))
                        clock.forget(attack)
                        break  # every epsilon of this attack needs the same backend
                    for warning in aset.warnings:  # a cached batch failed its integrity check
                        auditor.reporter.warn(f"{name}: {warning}")
                        auditor.skipped.append(Skipped(f"{name} cache", warning, "cache"))
                    sets.append({
                        "name": name, "kind": "attack", "attack": attack, "epsilon": eps, "surrogate": sur_label,
                        "threat_model": surrogate.threat_model, "images": aset.images,
                        "stats": perturbation_stats(data.images, aset.images), "label": aset.label,
                        "meta": {"name": name, "key": aset.key, "dir": str(aset.dir), "cache_hit": aset.cache_hit,
                                 "seconds": round(aset.seconds, 2), "seconds_per_image": clock.seconds_per_image(name) or (
                                     None if aset.cache_hit else round(aset.seconds / max(len(aset.images), 1), 4)),
                                 "backend": aset.backend,
                                 "cache_warnings": list(aset.warnings),
                                 "style_diversity": aset.params.get("style_diversity"),
                                 "surrogate": surrogate.identity,
                                 "params": {k: v for k, v in aset.params.items() if not k.startswith("mask_pool")}},
                        "surrogate_eval": {"clean_pred": sur_clean, "input_sizes": sur_sizes,
                                           "adv_pred": surrogate_predict(surrogate.module, aset.images,
                                                                         opt.batch_size, device)},
                    })
    if "blend" in opt.attacks:
        from auditor.attacks.sets import perturbation_stats

        for alpha in BLEND_ALPHAS:
            images, label = _blend_images(data.images, alpha, opt.style_image, opt.seed)
            sets.append({"name": f"blend@{alpha:g}", "kind": "style_blend", "attack": "blend", "epsilon": None,
                         "alpha": alpha, "surrogate": None, "threat_model": "visible manipulation (no gradients)",
                         "images": images, "stats": perturbation_stats(data.images, images), "label": label,
                         "meta": {"name": f"blend@{alpha:g}", "cache_hit": False, "backend": None,
                                  "style_image": opt.style_image or "built-in procedural texture"}})
    return sets
