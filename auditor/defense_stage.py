"""Scan stage: input-transform defenses, the adaptive (BPDA) check, and the detectors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from auditor.errors import UsageError
from auditor.types import Skipped

if TYPE_CHECKING:  # pragma: no cover
    from auditor.audit import Auditor, LoadedData

COST_SAMPLE = 8


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
        if isinstance(item, Skipped):
            if opt.strict:
                raise UsageError(f"{item.name}: {item.reason} (--strict)")
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
    benign = make_benign_pairs(data.images, seed=rng_seed)
    n = len(data.images)
    idx = np.random.default_rng(rng_seed).permutation(n)
    cal, held = np.sort(idx[: n // 2]), np.sort(idx[n // 2:])
    if len(cal) < 4 or len(held) < 4:
        auditor.skipped.append(Skipped("detector", f"too few images ({n}) to calibrate and test a detector", "detector"))
        return None
    suspects = {s["name"]: s["images"][held] for s in attacked}
    ref = calibrate_reference_detector(data.images[cal], benign[cal])
    ref_result = evaluate_detector(ref, data.images[held], benign[held], suspects)

    def proba(x):
        return auditor.target.predict_proba(x, batch_size=opt.batch_size)

    fs = FeatureSqueezingDetector(proba)
    fs.calibrate(data.images[cal])
    fs_result = fs.evaluate(data.images[held], suspects)
    worst = max(attacked, key=lambda s: s.get("epsilon") or 0)
    import cv2

    spectra = {k: cv2.resize(np.asarray(v, np.float32), (64, 64), interpolation=cv2.INTER_AREA)
               for k, v in fft_spectra(data.images[held[0], 0], worst["images"][held[0], 0]).items()}
    return {
        "calibration": {"calibration_images": int(len(cal)), "held_out_images": int(len(held)), "seed": rng_seed},
        "reference_based": ref_result,
        "feature_squeezing": fs_result,
        "fft_example": {"condition": worst["name"], "sample": data.samples[held[0]].rel_path,
                        "spectra": {k: v.round(3).tolist() for k, v in spectra.items()},
                        "note": "spectra downsampled to 64x64 for the report"},
    }
