"""``xray-audit attack --surrogate S --data DIR``: build (or load) cached adversarial sets.

The sets land in ``--out`` (the cache folder a later ``scan --cache-dir`` reuses):
one sub-folder per set key with 8-bit PNGs named after their sources and an
``index.json``; ``attack_summary.json`` lists what this run produced.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from auditor.attacks.registry import default_attacks, list_attacks
from auditor.cli.options import check_outside_data, common_run_options, parse_epsilons, split_list
from auditor.cli.scan_options import (
    allow_outside_root_option,
    attack_batch_size_option,
    data_format_option,
    data_option,
    eps_option,
    images_dir_option,
    label_map_option,
    max_images_option,
    stm_checkpoint_option,
)
from auditor.errors import UsageError


def _parse_attack_names(text: str) -> list[str]:
    from auditor.scan.options import GRADIENT_ATTACKS

    names = [a.lower() for a in split_list(text)]
    unknown = [a for a in names if a not in GRADIENT_ATTACKS]
    if unknown or not names:
        raise UsageError(f"--attacks {text!r}: unknown or empty; choose from {', '.join(GRADIENT_ATTACKS)}")
    return list(dict.fromkeys(names))


@click.command("attack")
@click.option("--surrogate", required=True, help="Torch checkpoint(s) (comma = ensemble), or 'target' with --target.")
@data_option
@data_format_option
@images_dir_option
@allow_outside_root_option
@label_map_option
@click.option(
    "--target",
    type=click.Path(dir_okay=False),
    help="ONNX target: its classes and input size are used (default: the surrogate checkpoint's spec).",
)
@click.option(
    "--attacks",
    default=",".join(default_attacks()),
    show_default=True,
    help="Comma list of gradient attacks: " + ", ".join(list_attacks("gradient")) + ".",
)
@eps_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Cache folder the sets are written to.")
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Surrogate arithmetic; auto times fp32 and bf16 here and checks bf16 on the first batch.",
)
@attack_batch_size_option("--batch-size")
@max_images_option
@click.option(
    "--image-size", type=click.IntRange(8, 4096), help="Attack resolution (default: the target's/surrogate's)."
)
@click.option(
    "--style-backend",
    type=click.Choice(["randconv", "adain-stats", "ghiasi"]),
    default="randconv",
    show_default=True,
    help="STM style augmentation (ghiasi needs --stm-checkpoint).",
)
@stm_checkpoint_option
@click.option("--strict", is_flag=True, help="Skipped images or attacks make the command fail.")
@common_run_options
def attack_command(
    surrogate,
    data,
    data_format,
    images_dir,
    allow_outside_root,
    label_map,
    target,
    attacks,
    eps,
    out,
    precision,
    batch_size,
    max_images,
    image_size,
    style_backend,
    stm_checkpoint,
    strict,
    seed,
    device,
    quiet,
    no_progress,
) -> None:
    """Attack the images in --data with a surrogate and write 8-bit adversarial PNG sets to --out."""
    from auditor.data import parse_label_map
    from auditor.models.device import pick_device
    from auditor.progress import Reporter
    from auditor.scan.options import ScanOptions

    opts = ScanOptions(
        attacks=tuple(_parse_attack_names(attacks)),
        epsilons=tuple(parse_epsilons(eps)),
        surrogate=surrogate,
        seed=seed,
        attack_batch_size=batch_size,
        max_images=max_images,
        device=device,
        precision=precision,
        cache_dir=out,
        style_backend=style_backend,
        stm_checkpoint=stm_checkpoint,
        label_map=parse_label_map(label_map),
        data_format=data_format,
        images_dir=images_dir,
        allow_outside_root=allow_outside_root,
        strict=strict,
    )  # every flag before the surrogate is loaded
    check_outside_data(data, out, "--out", data_format)
    reporter = Reporter(quiet=quiet, progress=False if no_progress else None)
    dev = pick_device(device)
    ctx, sur = _context(opts, target, image_size, reporter, dev)
    _run_attacks(ctx, sur, dev, data)


def _context(opts, target, image_size, reporter, dev):
    """The run's :class:`~auditor.scan.context.ScanContext` (its "target" names the classes and the attack
    resolution: the ONNX target's, else the surrogate checkpoint's) and the loaded surrogate."""
    import dataclasses

    from auditor.models.checkpoints import read_checkpoint
    from auditor.models.surrogate import load_surrogate
    from auditor.scan.context import InputTarget, ScanContext

    target_spec = None
    if target:
        from auditor.models.spec import read_spec

        target_spec = read_spec(target)
    elif opts.surrogate.strip().lower() == "target":
        raise UsageError("--surrogate target needs --target MODEL.onnx")
    sur = load_surrogate(opts.surrogate, target_spec, target, dev)
    spec = target_spec or read_checkpoint(split_list(opts.surrogate)[0])["spec"]
    if image_size:
        spec = dataclasses.replace(spec, height=image_size, width=image_size)
    spec = dataclasses.replace(spec, class_names=tuple(sur.class_names))
    return ScanContext(InputTarget(spec, target or opts.surrogate), opts, reporter), sur


def _run_attacks(ctx, sur, dev, data_path: str) -> None:
    """Load the data as a scan does, build every job's set as a scan does, write ``attack_summary.json``."""
    from auditor.report.gate_view import exit_status
    from auditor.scan.attack import generate_sets, resolve_scan_precision, scan_jobs
    from auditor.scan.data import load_data

    opts, reporter = ctx.options, ctx.reporter
    data = load_data(ctx, data_path)
    jobs = scan_jobs(ctx, data, list(opts.attacks))
    precision, choice = resolve_scan_precision(ctx, data, sur, jobs, dev)
    size = (ctx.target.spec.height, ctx.target.spec.width)
    reporter.info(
        f"{len(data.samples)} images at {size[0]}x{size[1]}, surrogate {sur.identity.get('label')} "
        f"({sur.threat_model}), device {dev}, precision {precision}"
    )
    summary = [
        _summary_entry(ctx, data, job, aset) for job, aset in generate_sets(ctx, data, jobs, sur, dev, precision)
    ]
    skipped = [*data.info["skipped"], *(s.to_dict() for s in ctx.skipped)]
    doc = {
        "surrogate": sur.identity,
        "threat_model": sur.threat_model,
        "data": str(data_path),
        "manifest_sha256": data.info["manifest_sha256"],
        "image_size": list(size),
        "seed": opts.seed,
        "precision": precision,
        "precision_choice": choice,
        "sets": summary,
        "skipped": skipped,
        "dropped": data.info["dropped"],
    }
    out = Path(opts.cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "attack_summary.json").write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    code, message = exit_status((), skipped, opts.strict)
    if message:
        click.echo(message, err=True)
    if code:
        click.get_current_context().exit(code)


def _summary_entry(ctx, data, job, aset) -> dict:
    """One set of ``attack_summary.json`` (and its console line)."""
    from auditor.attacks.perturbation import set_stats

    stats = set_stats(data.images, aset)
    ctx.reporter.info(
        f"{job.name}: {aset.label}, {'cache hit' if aset.cache_hit else f'{aset.seconds:.1f} s'}, "
        f"L-inf max {stats['linf_max'] * 255:.2f}/255, SSIM {stats['ssim_mean']:.3f} -> {aset.dir}"
    )
    return {
        "name": job.name,
        "attack": job.attack,
        "epsilon": job.epsilon,
        "label": aset.label,
        "key": aset.key,
        "dir": str(aset.dir),
        "cache_hit": aset.cache_hit,
        "seconds": round(aset.seconds, 2),
        "backend": aset.backend,
        "style_diversity": aset.params.get("style_diversity"),
        "notes": list(aset.notes),
        "n_images": len(aset.images),
        "stats": stats,
    }
