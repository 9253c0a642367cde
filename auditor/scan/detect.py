"""Scan stage: the reference-based and feature-squeezing detectors (:func:`run_detectors`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from auditor.detector_records import DetectorResult, DetectorSplit, FftExample
from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.records import AdversarialSet
from auditor.types import Skipped

#: the detectors are calibrated and tested on at most this many images (a seeded subset of larger scans),
#: so their memory does not grow with the archive
DETECTOR_MAX_IMAGES = 500


def _halves(seed: int, n_all: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The images the detectors see (``pick``: all, or a seeded subset of at most :data:`DETECTOR_MAX_IMAGES`)
    and the calibration and held-out halves of them (indices into ``pick``)."""
    pick = np.arange(n_all)
    if n_all > DETECTOR_MAX_IMAGES:  # bounded memory: a seeded subset of a large scan
        pick = np.sort(np.random.default_rng([seed, 1]).choice(n_all, DETECTOR_MAX_IMAGES, replace=False))
    idx = np.random.default_rng(seed).permutation(len(pick))
    return pick, np.sort(idx[: len(pick) // 2]), np.sort(idx[len(pick) // 2 :])


def run_detectors(ctx: ScanContext, data: LoadedData, sets: Sequence[AdversarialSet]) -> DetectorResult | None:
    """Reference-based (edge/SSIM) and feature-squeezing detectors, calibrated on benign pairs."""
    from auditor.defenses.calibration import make_benign_pairs
    from auditor.defenses.detect import FeatureSqueezingDetector, calibrate_reference_detector, evaluate_detector

    opt = ctx.options
    attacked = [s for s in sets if s.kind == "attack"]
    if not attacked:
        return None
    ctx.reporter.info("detectors: calibrating on benign pairs")
    rng_seed = opt.seed
    # calibrate on one half of the benign pairs, report FPR on the other half
    n_all = len(data.images)
    pick, cal, held = _halves(rng_seed, n_all)
    images = np.asarray(data.images[pick], dtype=np.float32)
    benign = make_benign_pairs(images, seed=rng_seed)
    n = len(images)
    if len(cal) < 4 or len(held) < 4:
        ctx.skipped.append(Skipped("detector", f"too few images ({n}) to calibrate and test a detector", "detector"))
        return None
    # calibration half first, so both halves are views (no copies of the 500-image subset)
    order = np.concatenate([cal, held])
    images, benign = images[order], benign[order]
    cal_x, held_x, cal_b, held_b = images[: len(cal)], images[len(cal) :], benign[: len(cal)], benign[len(cal) :]
    suspects = {s.name: np.asarray(s.images[pick[held]], dtype=np.float32) for s in attacked}
    ref = calibrate_reference_detector(cal_x, cal_b)
    ref_result = evaluate_detector(ref, held_x, held_b, suspects)

    def proba(x):
        return ctx.target.predict_proba(x, batch_size=opt.batch_size)

    fs = FeatureSqueezingDetector(proba)
    fs.calibrate(cal_x)
    fs_result = fs.evaluate(held_x, suspects)
    return DetectorResult(
        DetectorSplit(int(len(cal)), int(len(held)), rng_seed, int(n_all) if n_all > n else None),
        ref_result,
        fs_result,
        _fft_example(data, attacked, held_x[0, 0], int(pick[held[0]])),
    )


def _fft_example(data: LoadedData, attacked: list[AdversarialSet], clean: np.ndarray, row: int) -> FftExample:
    """Spectra of the first held-out image (``clean``, row ``row`` of the scan), clean and under the
    largest-epsilon attack (64x64 for the report)."""
    import cv2

    from auditor.defenses.spectra import fft_spectra

    worst = max(attacked, key=lambda s: s.epsilon or 0)
    spectra = {
        k: cv2.resize(np.asarray(v, np.float32), (64, 64), interpolation=cv2.INTER_AREA)
        for k, v in fft_spectra(clean, worst.images[row, 0]).items()
    }
    return FftExample(
        worst.name,
        data.samples[row].rel_path,
        {k: v.round(3).tolist() for k, v in spectra.items()},
        "spectra downsampled to 64x64 for the report",
    )
