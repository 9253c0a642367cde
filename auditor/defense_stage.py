"""Scan stage: input-transform defenses, the adaptive (BPDA) check, and the detectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from auditor.types import Skipped

if TYPE_CHECKING:  # pragma: no cover
    from auditor.audit import Auditor, LoadedData

COST_SAMPLE = 8
#: the detectors are calibrated and tested on at most this many images (a seeded subset of larger scans),
#: so their memory does not grow with the archive
DETECTOR_MAX_IMAGES = 500


def build_preprocessors(auditor: "Auditor", data: "LoadedData") -> list:
    """Parse ``--defenses``, measure each defense's cost; unusable ones become Skipped."""
    from auditor.defenses.registry import parse_defenses

    opt = auditor.options
    feature_extractor = None
    if "feature" in (opt.defenses or "") and opt.surrogate:
        from auditor.attack_stage import load_scan_surrogate

        sur = load_scan_surrogate(auditor)
        if sur is not None:
            from auditor.defenses.feature import ConvFeatureExtractor

            feature_extractor = ConvFeatureExtractor(sur.module)
    out = []
    for item in parse_defenses(opt.defenses, feature_extractor=feature_extractor):
        if isinstance(item, Skipped):  # --strict turns skips into exit 1 once the reports are written
            auditor.reporter.warn(f"skipped {item.name}: {item.reason}")
            auditor.skipped.append(item)
            continue
        item.measure_cost(data.images[:COST_SAMPLE])
        out.append(item)
    return out


def run_detectors(auditor: "Auditor", data: "LoadedData", sets: list[dict]) -> dict | None:
    """Reference-based (edge/SSIM) and feature-squeezing detectors, calibrated on benign pairs."""
    from auditor.defenses.detect import (
        FeatureSqueezingDetector,
        calibrate_reference_detector,
        evaluate_detector,
        fft_spectra,
        make_benign_pairs,
    )

    opt = auditor.options
    attacked = [s for s in sets if s["kind"] == "attack"]
    if not attacked:
        return None
    auditor.reporter.info("detectors: calibrating on benign pairs")
    rng_seed = opt.seed
    # calibrate on one half of the benign pairs, report FPR on the other half
    n_all = len(data.images)
    pick = np.arange(n_all)
    if n_all > DETECTOR_MAX_IMAGES:  # bounded memory: a seeded subset of a large scan
        pick = np.sort(np.random.default_rng([rng_seed, 1]).choice(n_all, DETECTOR_MAX_IMAGES, replace=False))
    images = np.asarray(data.images[pick], dtype=np.float32)
    benign = make_benign_pairs(images, seed=rng_seed)
    n = len(images)
    idx = np.random.default_rng(rng_seed).permutation(n)
    cal, held = np.sort(idx[: n // 2]), np.sort(idx[n // 2:])
    if len(cal) < 4 or len(held) < 4:
        auditor.skipped.append(Skipped("detector", f"too few images ({n}) to calibrate and test a detector", "detector"))
        return None
    suspects = {s["name"]: np.asarray(s["images"][pick[held]], dtype=np.float32) for s in attacked}
    ref = calibrate_reference_detector(images[cal], benign[cal])
    ref_result = evaluate_detector(ref, images[held], benign[held], suspects)

    def proba(x):
        return auditor.target.predict_proba(x, batch_size=opt.batch_size)

    fs = FeatureSqueezingDetector(proba)
    fs.calibrate(images[cal])
    fs_result = fs.evaluate(images[held], suspects)
    worst = max(attacked, key=lambda s: s.get("epsilon") or 0)
    import cv2

    spectra = {k: cv2.resize(np.asarray(v, np.float32), (64, 64), interpolation=cv2.INTER_AREA)
               for k, v in fft_spectra(images[held[0], 0], worst["images"][int(pick[held[0]]), 0]).items()}
    return {
        "calibration": {"calibration_images": int(len(cal)), "held_out_images": int(len(held)), "seed": rng_seed,
                        **({"subset_of": int(n_all)} if n_all > n else {})},
        "reference_based": ref_result,
        "feature_squeezing": fs_result,
        "fft_example": {"condition": worst["name"], "sample": data.samples[int(pick[held[0]])].rel_path,
                        "spectra": {k: v.round(3).tolist() for k, v in spectra.items()},
                        "note": "spectra downsampled to 64x64 for the report"},
    }


def build_bpda_sets(auditor: "Auditor", data: "LoadedData", preprocessors: list, sets: list[dict]) -> list[dict]:
    """Adaptive check (BPDA, Athalye et al., ICML 2018): attack surrogate∘defense with the defense's
    torch path (exact, or straight-through where it is not differentiable), at the largest epsilon of
    each gradient attack. Each set carries ``defense``: the target sees ``defense(x_adv)``."""
    import dataclasses
    from pathlib import Path

    from auditor.attack_stage import load_scan_surrogate
    from auditor.attacks.device import pick_device
    from auditor.attacks.sets import build_adversarial_set, perturbation_stats
    from auditor.defenses.bpda import defended_module

    opt = auditor.options
    attacked = [s for s in sets if s["kind"] == "attack"]
    if not attacked or not preprocessors:
        return []
    surrogate = load_scan_surrogate(auditor)
    if surrogate is None:
        return []
    top = {}
    for s in attacked:
        if opt.bpda_attacks and s["attack"] not in opt.bpda_attacks:
            continue
        if s["attack"] not in top or s["epsilon"] > top[s["attack"]]["epsilon"]:
            top[s["attack"]] = s
    names = [s.rel_path for s in data.samples]
    device = pick_device(opt.device)
    out = []
    for pre in preprocessors:
        module = defended_module(surrogate.module, pre)
        if isinstance(module, Skipped):
            auditor.skipped.append(module)
            continue
        ident = dict(surrogate.identity)
        ident["sha256"] = list(ident.get("sha256", [])) + [f"bpda:{pre.name}:{pre.params.get('sha256', '')}"]
        ident["label"] = f"{ident.get('label', opt.surrogate)} + {pre.name} ({module.gradient} gradient)"
        adaptive = dataclasses.replace(surrogate, module=module, identity=ident)
        for attack, base in top.items():
            params = {"epsilon": base["epsilon"], **opt.attack_params.get(attack, {})}
            if attack == "usmm":
                from auditor.attacks.usmm import bounded_mask_pool

                params.update(bounded_mask_pool(data.images, data.y, seed=opt.seed))
            if attack == "stm":
                params.update(style_backend=opt.style_backend, checkpoint_dir=opt.stm_checkpoint)
            name = f"{base['name']}+bpda:{pre.name}"
            auditor.reporter.info(f"adaptive attack {name}")
            with auditor.reporter.task(name, len(data.images)) as adv:
                aset = build_adversarial_set(attack, params, adaptive, data.images, data.y, names, Path(opt.cache_dir),
                                             data.info["manifest_sha256"], opt.seed, batch_size=opt.attack_batch_size,
                                             device=device, progress=adv,
                                             precision=(auditor.precision_choice or {}).get("chosen", opt.precision))
            for warning in aset.warnings:  # a cached batch failed its integrity check
                auditor.reporter.warn(f"{name}: {warning}")
                auditor.skipped.append(Skipped(f"{name} cache", warning, "cache"))
            out.append({"name": name, "kind": "adaptive", "attack": attack, "epsilon": base["epsilon"],
                        "surrogate": ident["label"], "threat_model": "transfer (adaptive: BPDA through the defense)",
                        "defense": pre, "base": base["name"], "images": aset.images,
                        "stats": perturbation_stats(data.images, aset.images), "label": f"{aset.label} + BPDA",
                        "meta": {"name": name, "key": aset.key, "cache_hit": aset.cache_hit, "gradient": module.gradient,
                                 "seconds": round(aset.seconds, 2), "backend": aset.backend}})
    return out
