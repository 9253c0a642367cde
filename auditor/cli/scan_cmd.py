"""``xray-audit scan MODEL --data DIR``: the audit."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from auditor.cli.options import (
    common_run_options,
    contract_overrides,
    model_contract_options,
    parse_epsilons,
    split_list,
)
from auditor.errors import EXIT_GATE_FAILED, EXIT_OK, UsageError

DEFAULT_FORMATS = "json,csv,html,pdf"


def default_cache_dir() -> str:
    """``$XRAY_AUDIT_CACHE``, else ``$XDG_CACHE_HOME/xray-audit``, else ``~/.cache/xray-audit``."""
    import os

    if os.environ.get("XRAY_AUDIT_CACHE"):
        return os.environ["XRAY_AUDIT_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xray-audit")


def _parse_attacks(text: str | None, surrogate: str | None) -> tuple[str, ...]:
    from auditor.audit import KNOWN_ATTACKS

    if text is None:
        return ("usmm", "stm") if surrogate else ()
    names = [a.lower() for a in split_list(text)]
    if names in (["none"], []):
        return ()
    unknown = [a for a in names if a not in KNOWN_ATTACKS]
    if unknown:
        raise UsageError(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(KNOWN_ATTACKS)}, none")
    if any(a != "blend" for a in names) and not surrogate:
        raise UsageError("attacks need a surrogate: --surrogate CHECKPOINT[,CHECKPOINT...] or --surrogate target")
    return tuple(dict.fromkeys(names))


def run_scan(model: str, data: str, out: str, *, compare=(), formats: str = DEFAULT_FORMATS, fail_under: str | None = None,
             strict: bool = False, quiet: bool = False, progress: bool | None = None, overrides: dict | None = None,
             sidecar: str | None = None, command: str = "", **options) -> int:
    """Library entry of the scan command; returns the exit code (0 or 1)."""
    from auditor.audit import Auditor, ScanOptions
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.spec import read_spec
    from auditor.progress import Reporter
    from auditor.report.gates import evaluate_gates, parse_gates
    from auditor.report.render import render_all

    reporter = Reporter(quiet=quiet, progress=progress)
    fmts = split_list(formats)
    gates = parse_gates(fail_under) if fail_under else []
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out_dir}: cannot create the output folder ({exc.strerror})") from None
    spec = read_spec(model, sidecar=sidecar, overrides=overrides or {})
    for w in spec.warnings:
        reporter.warn(w)
    device = options.get("device", "auto")
    target = OnnxClassifier(model, spec=spec, device=device)
    reporter.info(f"model {model}: {spec.channels}x{spec.height}x{spec.width} {spec.layout}, classes "
                  f"{', '.join(spec.class_names)}; ONNX Runtime provider {target.provider}")
    others = []
    for path in compare:
        cspec = read_spec(path, overrides={k: v for k, v in (overrides or {}).items() if k != "class_names"})
        others.append(OnnxClassifier(path, spec=cspec, device=device))
    opts = ScanOptions(strict=strict, **options)
    result = Auditor(target, opts, reporter, command=command).run(data, compare=others)
    if gates:
        from dataclasses import replace

        result = replace(result, gates=tuple(evaluate_gates(result, gates)))
    written = render_all(result, out_dir, fmts)
    from auditor.report.console import print_summary

    print_summary(result, stream=sys.stdout)
    for fmt, path in written.items():
        reporter.info(f"wrote {fmt}: {path}")
    failed = [g for g in result.gates if not g.passed]
    if failed:
        click.echo(f"gate(s) failed: {', '.join(g.name for g in failed)}", err=True)
        return EXIT_GATE_FAILED
    all_skipped = list(result.skipped) + [s for s in result.data.get("skipped", [])]
    if strict and all_skipped:
        click.echo(f"--strict: {len(all_skipped)} item(s) skipped; see the report", err=True)
        return EXIT_GATE_FAILED
    return EXIT_OK


def run_scan_from_demo(model_path: str, data_dir: str, out_dir: str, surrogate_path: str | None, quiet: bool = False,
                       **extra) -> int:
    """The demo's scan: clean + USMM/STM (if a surrogate is given) + JPEG defense + detector."""
    attacks = ("usmm", "stm") if surrogate_path else ()
    extra.setdefault("defenses", "jpeg:75,median:3")
    extra.setdefault("cache_dir", str(Path(out_dir).parent / "cache"))
    extra.setdefault("n_boot", 500)
    return run_scan(model_path, data_dir, out_dir, quiet=quiet, surrogate=surrogate_path, attacks=attacks,
                    command=f"xray-audit demo --out {shlex.quote(str(Path(out_dir).parent))}", **extra)


@click.command("scan")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True, type=click.Path(), help="Image folder (root/<class>/...), CSV manifest or NIH table.")
@click.option("--data-format", type=click.Choice(["auto", "folder", "csv", "nih"]), default="auto", show_default=True)
@click.option("--images-dir", type=click.Path(file_okay=False), help="Where CSV/NIH image paths are relative to.")
@click.option("--label-map", help="Rename data labels to model classes: DATA=MODEL,...; DATA=- drops that data class.")
@click.option("--out", default="xray-audit-out", show_default=True, type=click.Path(file_okay=False))
@model_contract_options
@click.option("--attacks", help="Comma list of mifgsm, usmm, stm, blend, or none (default: usmm,stm with a surrogate).")
@click.option("--eps", default="4,8,16", show_default=True, help="L-inf budgets, in 1/255 units (or 8/255, 0.03).")
@click.option("--surrogate", help="Torch checkpoint(s) for transfer attacks (comma = ensemble), or 'target' (white-box).")
@click.option("--defenses", help="e.g. jpeg, jpeg:75, bitdepth:4, median:3, denoiser:PATH, cyclegan:PATH, feature:REF.")
@click.option("--bpda", is_flag=True, help="Also attack surrogate+defense with straight-through gradients (adaptive check).")
@click.option("--detector/--no-detector", default=True, show_default=True, help="Score the edge/SSIM and squeezing detectors.")
@click.option("--compare", multiple=True, type=click.Path(dir_okay=False), help="Further ONNX models scanned on the same sets.")
@click.option("--format", "formats", default=DEFAULT_FORMATS, show_default=True, help="json,csv,html,pdf,junit")
@click.option("--fail-under", help="Gates, e.g. accuracy=0.8,robust_accuracy=0.5 (see README).")
@click.option("--strict", is_flag=True, help="Skipped images, attacks or defenses make the scan fail (exit 1).")
@click.option("--max-images", type=click.IntRange(1), help="Stratified, seeded subset of at most N images.")
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True, help="Inference batch size.")
@click.option("--attack-batch-size", type=click.IntRange(1), default=4, show_default=True, help="Images per attack batch.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="Surrogate arithmetic for attacks; auto times fp32 and bf16 here and checks bf16 on the first batch.")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Adversarial-set cache (default: $XRAY_AUDIT_CACHE or ~/.cache/xray-audit).")
@click.option("--style-backend", type=click.Choice(["randconv", "adain-stats", "ghiasi"]), default="randconv",
              show_default=True, help="STM style network (ghiasi needs --stm-checkpoint).")
@click.option("--stm-checkpoint", type=click.Path(), help="Folder with checkpoint_transformer.pth (+ embeddings).")
@click.option("--style-image", type=click.Path(dir_okay=False), help="Style image for the blend attack.")
@click.option("--ray-address", help="Spread attack batches over Ray: 'local' or a cluster address ('auto'); "
              "--cache-dir must be on a shared file system.")
@click.option("--workers", type=click.IntRange(1), help="Ray tasks per adversarial set (default: available CPUs).")
@click.option("--n-boot", type=click.IntRange(0), default=1000, show_default=True, help="Bootstrap resamples for CIs.")
@common_run_options
def scan_command(model, data, data_format, images_dir, label_map, out, attacks, eps, surrogate, defenses, bpda, detector,
                 compare, formats, fail_under, strict, max_images, batch_size, attack_batch_size, precision, cache_dir,
                 style_backend, stm_checkpoint, style_image, ray_address, workers, n_boot, seed, device, quiet, no_progress, **kw) -> None:
    """Audit MODEL (ONNX) on the images in --data; write results.json, samples.csv and reports to --out."""
    from auditor.data import parse_label_map

    exit_code = run_scan(
        model, data, out, compare=compare, formats=formats, fail_under=fail_under, strict=strict, quiet=quiet,
        progress=False if no_progress else None, overrides=contract_overrides(kw), sidecar=kw.get("sidecar"),
        command=" ".join(shlex.quote(a) for a in ["xray-audit", *sys.argv[1:]]),
        attacks=_parse_attacks(attacks, surrogate), epsilons=parse_epsilons(eps), surrogate=surrogate,
        defenses=defenses, bpda=bpda, detector=detector, seed=seed, batch_size=batch_size,
        attack_batch_size=attack_batch_size, max_images=max_images, n_boot=n_boot, device=device, precision=precision,
        cache_dir=cache_dir or default_cache_dir(), style_backend=style_backend, stm_checkpoint=stm_checkpoint, style_image=style_image,
        label_map=parse_label_map(label_map), data_format=data_format, images_dir=images_dir,
        ray_address=ray_address, workers=workers,
    )
    if exit_code:
        click.get_current_context().exit(exit_code)
