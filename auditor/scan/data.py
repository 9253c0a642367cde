"""Scan stage: index, sample, read, fingerprint and label-map the data set (:func:`load_data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from auditor.data import DROP, drop_duplicates, drop_labels, fingerprint, map_labels, open_dataset, stratified_subset
from auditor.data.fingerprint import manifest_sha256
from auditor.data.index import SampleIndex
from auditor.data.skips import SkipLog
from auditor.data.spill import CleanRows
from auditor.data.stream import SampleImages, content_sha256, scan_readable
from auditor.errors import DataError, UsageError
from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.options import VISIBLE_ATTACKS
from auditor.types import STATED_CAVEAT_PREFIX, Skipped


def load_data(ctx: ScanContext, data: str) -> LoadedData:
    """Index, sample, fingerprint, decode and label-map the data set."""
    opt, spec = ctx.options, ctx.target.spec
    ds = open_dataset(data, opt.data_format, opt.images_dir, allow_outside_root=opt.allow_outside_root)
    samples, dropped = _drop_classes(ctx, ds.samples)
    # map labels before decoding so a mismatch fails fast
    map_labels(samples.labels, spec.class_names, opt.label_map)
    if opt.max_images is not None:
        if opt.max_images < 1:
            raise UsageError("--max-images must be at least 1")
        samples = samples.take(stratified_subset(samples.labels, opt.max_images, opt.seed))
    samples, skipped, duplicates, on_grid, notes, spilled = _read(ctx, data, samples)
    manifest_sha = manifest_sha256(samples)
    images = SampleImages(samples.paths, (spec.height, spec.width), content_sha256(samples.sha256_array()), spilled)
    y = map_labels(samples.labels, spec.class_names, opt.label_map)
    all_skipped = SkipLog(ds.skipped)
    all_skipped.extend(skipped)
    caveats = _caveats(ctx, data, ds.caveats, len(duplicates), on_grid)
    all_skipped.report(ctx.reporter.warn, quiet=getattr(ctx.reporter, "quiet", False))
    info = {
        "root": str(Path(data).resolve()),
        "format": ds.format,
        "manifest_sha256": manifest_sha,
        "n_images": len(samples),
        "per_class": {c: int((y == i).sum()) for i, c in enumerate(spec.class_names)},
        "skipped": all_skipped.to_dicts(),  # the first MAX_SKIP_EXAMPLES, then one row with the totals
        "skipped_total": all_skipped.total,
        "skipped_by_reason": dict(all_skipped.by_reason.most_common()),
        "conversions": [{"name": k, "notes": notes[k]} for k in samples.names if k in notes] if notes else [],
        "caveats": [*(STATED_CAVEAT_PREFIX + c for c in opt.caveats), *caveats],
        "patient_ids": sum(1 for pid in samples.patient_ids if pid),
        "sampled_from": len(ds.samples) - sum(dropped.values()) if opt.max_images is not None else None,
        "dropped": dropped,
    }
    return LoadedData(images, y, samples, samples.patient_ids, info, samples.names)


def _read(
    ctx: ScanContext, data: str, samples: SampleIndex
) -> tuple[SampleIndex, SkipLog, list[Skipped], bool, dict[str, list[str]], CleanRows | None]:
    """Keep the readable samples, once each: (samples, skipped incl. duplicates, duplicates, on the 8-bit grid,
    conversion notes per file, and the kept samples' rows in the scan's spill of this first decode, when there is
    room for one: :mod:`auditor.data.spill`)."""
    spec = ctx.target.spec
    size = (spec.height, spec.width)
    notes: dict[str, list[str]] = {}
    clock = ctx.clock(ctx.target.path)
    with ctx.reporter.task("Reading images", len(samples)) as adv, clock.timed("read", len(samples)):
        spill = ctx.scratch.clean_spill(len(samples), size) if ctx.scratch is not None else None
        kept, skipped, on_grid = scan_readable(
            samples, size, batch_size=ctx.options.batch_size, progress=adv, notes=notes, spill=spill
        )
    if not kept:
        raise DataError(f"{data}: none of the images could be read ({skipped.total} skipped)")
    samples, _ = fingerprint(samples.take(kept))
    rows = np.asarray(kept, dtype=np.int64)  # the spill row (index into the samples read) of each kept sample
    keep, duplicates = drop_duplicates(samples)
    if duplicates:
        samples = samples.take(keep)
        rows = rows[np.asarray(keep, dtype=np.int64)]
        skipped.extend(duplicates)
    spilled = None
    if spill is not None:
        spilled = CleanRows(spill, None if np.array_equal(rows, np.arange(spill.n)) else rows)
    return samples, skipped, duplicates, on_grid, notes, spilled


def _caveats(ctx: ScanContext, data: str, found: Any, n_duplicates: int, on_grid: bool) -> list[str]:
    """The tool's own caveats about the data: synthetic images, duplicates, images off the 8-bit grid."""
    caveats = list(found)
    readme = Path(data) / "README.md"
    if readme.is_file() and "SYNTHETIC" in readme.read_text(encoding="utf-8", errors="replace")[:4000]:
        caveats.insert(
            0,
            "SYNTHETIC data (procedural phantoms, no patient images): the numbers say nothing "
            "about performance on radiographs",
        )
    if n_duplicates:
        caveats.append(
            f"{n_duplicates} exact-duplicate file(s) (same SHA-256 as another image of the same "
            "label) were counted once; they are listed with the skipped files"
        )
    if (ctx.options.whitebox_attacks or any(a not in VISIBLE_ATTACKS for a in ctx.options.attacks)) and not on_grid:
        caveats.append(
            "the scored images are not on the 8-bit grid (resized to the model's size, or a >8-bit "
            "source): adversarial PNGs keep every pixel within epsilon of the float clean image, so "
            "some pixels cannot reach the budget's edge exactly (up to one grey level short)"
        )
    return caveats


def _drop_classes(ctx: ScanContext, samples: SampleIndex) -> tuple[SampleIndex, dict[str, int]]:
    """Remove the data labels that ``--label-map LABEL=-`` drops; {label: images dropped}."""
    label_map = ctx.options.label_map
    labels = samples.labels
    kept, dropped = drop_labels(labels, label_map)
    unused = sorted(
        k for k, v in label_map.items() if v.strip() == DROP and k.lower() not in {d.lower() for d in dropped}
    )
    if unused:
        have = sorted(set(labels))
        raise UsageError(f"--label-map drops {unused}, which no image has (data labels: {have})")
    if not kept:
        raise DataError("--label-map drops every image of the data set")
    for label, n in dropped.items():
        ctx.reporter.info(f"dropped data class {label!r} ({n} images, --label-map {label}=-)")
    return (samples if len(kept) == len(samples) else samples.take(kept)), dropped
