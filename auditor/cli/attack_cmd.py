"""``xray-audit attack --surrogate S --data DIR``: build (or load) cached adversarial sets.

The sets land in ``--out`` (the cache folder a later ``scan --cache-dir`` reuses):
one sub-folder per set key with 8-bit PNGs named after their sources and an
``index.json``; ``attack_summary.json`` lists what this run produced.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from auditor.cli.options import MAX_ATTACK_BATCH_SIZE, common_run_options, parse_epsilons, split_list
from auditor.errors import UsageError

GRADIENT_ATTACKS = ("mifgsm", "usmm", "stm")


def _parse_attack_names(text: str) -> list[str]:
    names = [a.lower() for a in split_list(text)]
    unknown = [a for a in names if a not in GRADIENT_ATTACKS]
    if unknown or not names:
        raise UsageError(f"--attacks {text!r}: unknown or empty; choose from {', '.join(GRADIENT_ATTACKS)}")
    return list(dict.fromkeys(names))


def _auto_precision(attacks, sur, images, y, eps, batch_size, seed, dev, style_backend, stm_checkpoint, out):
    """``--precision auto``: the decision record of the first attack that can run, or None."""
    from auditor.attacks.auto_precision import choose_precision_cached
    from auditor.attacks.registry import make_attack
    from auditor.attacks.sets import batch_seed
    from auditor.attacks.stm import StyleBackendUnavailable

    n = min(batch_size, len(images))
    for name in attacks:
        params: dict = {"epsilon": eps, "device": dev}
        if name == "usmm":
            from auditor.attacks.usmm import bounded_mask_pool

            params.update(bounded_mask_pool(images, y, seed=seed))  # the scan's pool, so sets are shared
        if name == "stm":
            params.update(style_backend=style_backend, checkpoint_dir=stm_checkpoint)
        try:
            return choose_precision_cached(make_attack(name, sur, **params), images[:n], y[:n], batch_seed(seed, 0),
                                           out, sur.identity.get("sha256"))
        except StyleBackendUnavailable:
            continue
    return None


@click.command("attack")
@click.option("--surrogate", required=True, help="Torch checkpoint(s) (comma = ensemble), or 'target' with --target.")
@click.option("--data", required=True, type=click.Path(), help="Image folder (root/<class>/...), CSV manifest or NIH table.")
@click.option("--data-format", type=click.Choice(["auto", "folder", "csv", "nih"]), default="auto", show_default=True)
@click.option("--label-map", help="Rename data labels to model classes: DATA=MODEL,...; DATA=- drops that data class.")
@click.option("--target", type=click.Path(dir_okay=False),
              help="ONNX target: its classes and input size are used (default: the surrogate checkpoint's spec).")
@click.option("--attacks", default="usmm,stm", show_default=True, help="Comma list of mifgsm, usmm, stm.")
@click.option("--eps", default="4,8,16", show_default=True, help="L-inf budgets, in 1/255 units (or 8/255, 0.03).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Cache folder the sets are written to.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Surrogate arithmetic; auto times fp32 and bf16 here and checks bf16 on the first batch.")
@click.option("--batch-size", type=click.IntRange(1, MAX_ATTACK_BATCH_SIZE), default=4, show_default=True, help="Images per attack batch.")
@click.option("--max-images", type=click.IntRange(1), help="Stratified, seeded subset of at most N images.")
@click.option("--image-size", type=click.IntRange(8, 4096), help="Attack resolution (default: the target's/surrogate's).")
@click.option("--style-backend", type=click.Choice(["randconv", "adain-stats", "ghiasi"]), default="randconv",
              show_default=True, help="STM style augmentation (ghiasi needs --stm-checkpoint).")
@click.option("--stm-checkpoint", type=click.Path(), help="Folder with checkpoint_transformer.pth (+ embeddings).")
@click.option("--strict", is_flag=True, help="Skipped images or attacks make the command fail.")
@common_run_options
def attack_command(surrogate, data, data_format, label_map, target, attacks, eps, out, precision, batch_size,
                   max_images, image_size, style_backend, stm_checkpoint, strict, seed, device, quiet,
                   no_progress) -> None:
    """Attack the images in --data with a surrogate and write 8-bit adversarial PNG sets to --out."""
    from auditor.attacks.device import pick_device
    from auditor.attacks.sets import build_adversarial_set, perturbation_stats
    from auditor.attacks.stm import StyleBackendUnavailable
    from auditor.audit import set_name as condition_name
    from auditor.data import (
        drop_duplicates,
        drop_labels,
        fingerprint,
        map_labels,
        open_dataset,
        parse_label_map,
        stratified_subset,
    )
    from auditor.data.stream import SampleImages, scan_readable
    from auditor.models.torch import load_surrogate, read_checkpoint
    from auditor.progress import Reporter

    names_wanted = _parse_attack_names(attacks)
    epsilons = parse_epsilons(eps)
    label_mapping = parse_label_map(label_map)  # every flag before the surrogate is loaded
    reporter = Reporter(quiet=quiet, progress=False if no_progress else None)
    dev = pick_device(device)

    target_spec = None
    if target:
        from auditor.models.spec import read_spec

        target_spec = read_spec(target)
    elif surrogate.strip().lower() == "target":
        raise UsageError("--surrogate target needs --target MODEL.onnx")
    sur = load_surrogate(surrogate, target_spec, target, dev)
    spec = target_spec or read_checkpoint(split_list(surrogate)[0])["spec"]
    size = (image_size, image_size) if image_size else (spec.height, spec.width)

    ds = open_dataset(data, fmt=data_format)
    kept, dropped = drop_labels([s.label for s in ds.samples], label_mapping)
    samples = [ds.samples[i] for i in kept]
    for label, n in dropped.items():
        reporter.info(f"dropped data class {label!r} ({n} images, --label-map {label}=-)")
    if max_images:
        samples = [samples[i] for i in stratified_subset([s.label for s in samples], max_images, seed)]
    y_all = map_labels([s.label for s in samples], tuple(sur.class_names), label_mapping)
    samples, _ = fingerprint(samples)
    unique, duplicates = drop_duplicates(samples)  # same content twice: once; under two labels: DataError
    samples, y_all = [samples[i] for i in unique], y_all[unique]
    samples, manifest = fingerprint(samples)
    with reporter.task("loading images", len(samples)) as adv:
        kept, skipped_imgs, _ = scan_readable(samples, size, progress=adv)
    samples = [samples[i] for i in kept]
    images = SampleImages([s.path for s in samples], size)  # decoded batch by batch, never held whole
    y = y_all[kept]
    skipped = [s.to_dict() for s in (*ds.skipped, *duplicates, *skipped_imgs)]
    for s in skipped:
        reporter.warn(f"skipped {s['kind']} {s['name']}: {s['reason']}")
    if not samples:
        raise UsageError(f"{data}: no readable images to attack")
    names = [s.rel_path or Path(s.path).name for s in samples]
    precision_choice = None
    if precision == "auto":
        precision_choice = _auto_precision(names_wanted, sur, images, y, epsilons[0], batch_size, seed, dev,
                                           style_backend, stm_checkpoint, out)
        precision = precision_choice["chosen"] if precision_choice else "fp32"
    reporter.info(f"{len(samples)} images at {size[0]}x{size[1]}, surrogate {sur.identity.get('label')} "
                  f"({sur.threat_model}), device {dev}, precision {precision}")

    summary: list[dict] = []
    for name in names_wanted:
        for e in epsilons:
            set_name = condition_name(name, e, style_backend)
            params: dict = {"epsilon": e}
            if name == "usmm":
                from auditor.attacks.usmm import bounded_mask_pool

                params.update(bounded_mask_pool(images, y, seed=seed))  # the scan's pool, so sets are shared
            if name == "stm":
                params.update(style_backend=style_backend, checkpoint_dir=stm_checkpoint)
            try:
                with reporter.task(set_name, len(samples)) as adv:
                    aset = build_adversarial_set(name, params, sur, images, y, names, Path(out), manifest, seed,
                                                 batch_size=batch_size, device=dev, precision=precision, progress=adv)
            except StyleBackendUnavailable as exc:
                reporter.warn(f"skipped {name}: {exc}")
                skipped.append({"name": name, "reason": str(exc), "kind": "attack"})
                break
            for warning in aset.warnings:
                reporter.warn(f"{set_name}: {warning}")
                skipped.append({"name": f"{set_name} cache", "reason": warning, "kind": "cache"})
            stats = perturbation_stats(images, aset.images)
            reporter.info(f"{set_name}: {aset.label}, {'cache hit' if aset.cache_hit else f'{aset.seconds:.1f} s'}, "
                          f"L-inf max {stats['linf_max'] * 255:.2f}/255, SSIM {stats['ssim_mean']:.3f} -> {aset.dir}")
            summary.append({"name": set_name, "attack": name, "epsilon": e, "label": aset.label, "key": aset.key,
                            "dir": str(aset.dir), "cache_hit": aset.cache_hit, "seconds": round(aset.seconds, 2),
                            "backend": aset.backend, "style_diversity": aset.params.get("style_diversity"),
                            "notes": list(aset.notes), "n_images": len(aset.images),
                            "stats": stats})
    doc = {"surrogate": sur.identity, "threat_model": sur.threat_model, "data": str(data), "manifest_sha256": manifest,
           "image_size": list(size), "seed": seed, "precision": precision, "precision_choice": precision_choice,
           "sets": summary, "skipped": skipped, "dropped": dropped}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "attack_summary.json").write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    from auditor.report.gates import exit_status

    code, message = exit_status((), skipped, strict)
    if message:
        click.echo(message, err=True)
    if code:
        click.get_current_context().exit(code)
