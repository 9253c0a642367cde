"""``xray-audit scan MODEL --data DIR``: the audit."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from auditor.cli.options import (
    MAX_ATTACK_BATCH_SIZE,
    MAX_BATCH_SIZE,
    MAX_BOOTSTRAP,
    common_run_options,
    contract_overrides,
    model_contract_options,
    parse_epsilons,
    split_list,
)
from auditor.cli.sign_options import load_signing_from, sign_options
from auditor.errors import UsageError
from auditor.scan.options import default_cache_dir

DEFAULT_FORMATS = "json,csv,html,pdf"


def _parse_attacks(text: str | None, surrogate: str | None) -> tuple[str, ...]:
    from auditor.scan.options import KNOWN_ATTACKS

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


def _parse_bpda_attacks(text: str | None, bpda: bool, attacks: tuple[str, ...]) -> tuple[str, ...]:
    """``--bpda-attacks mifgsm,usmm``: the scan's attacks the adaptive check runs with (empty: all)."""
    if text is None:
        return ()
    if not bpda:
        raise UsageError("--bpda-attacks needs --bpda")
    names = tuple(dict.fromkeys(a.lower() for a in split_list(text)))
    missing = [a for a in names if a not in attacks or a == "blend"]
    if not names or missing:
        usable = ", ".join(a for a in attacks if a != "blend") or "none"
        raise UsageError(f"--bpda-attacks {text}: name gradient attacks of this scan ({usable})")
    return names


def _check_dir_flag(path: str | None, flag: str) -> None:
    """A folder flag must not be, or lie under, an existing regular file (checked before any work)."""
    if not path:
        return
    p = Path(path).expanduser().absolute()
    for q in (p, *p.parents):
        try:
            if q.exists():
                if not q.is_dir():
                    what = "is a file" if q == p else f"lies under the file {q}"
                    raise UsageError(f"{flag} {path}: {what}, not a folder")
                return
        except OSError as exc:
            raise UsageError(f"{flag} {path}: cannot be checked ({exc.strerror or exc})") from None


def _check_file_flag(path: str | None, flag: str) -> None:
    if path and not Path(path).expanduser().is_file():
        raise UsageError(f"{flag} {path}: file not found")


def check_scan_flags(options: dict, gates=()) -> None:
    """Every flag of a scan that can be checked without the model or the data, checked at once.

    Raises :class:`UsageError` (exit 2) before any image is read or attacked.
    """
    from auditor.defenses.registry import check_defenses

    check_defenses(options.get("defenses"))
    if options.get("attacks") or options.get("bpda"):
        _check_dir_flag(options.get("cache_dir"), "--cache-dir")
    _check_file_flag(options.get("style_image"), "--style-image")
    # a missing STM style checkpoint is not checked here: it makes the STM attack a Skipped item
    surrogate = options.get("surrogate")
    if surrogate and surrogate.strip().lower() != "target":
        for part in split_list(surrogate):
            if Path(part).expanduser().is_dir():  # a surrogate zoo (xray-audit train surrogates)
                if not (Path(part).expanduser() / "zoo.json").is_file():
                    raise UsageError(
                        f"--surrogate {part}: a folder must be a surrogate zoo with zoo.json "
                        "(xray-audit train surrogates)"
                    )
                continue
            _check_file_flag(part, "--surrogate")


def check_gate_classes(gates, class_names, where: str = "the model") -> None:
    """``--fail-under sensitivity:<class>`` must name one of the model's classes (case-insensitive)."""
    known = {c.casefold() for c in class_names}
    for g in gates:
        if g.cls is not None and known and g.cls.casefold() not in known:
            raise UsageError(
                f"--fail-under {g.name}: {where} has no class {g.cls!r} (classes: {', '.join(class_names)})"
            )


def run_scan(
    model: str,
    data: str,
    out: str,
    *,
    compare=(),
    formats: str = DEFAULT_FORMATS,
    fail_under: str | None = None,
    strict: bool = False,
    quiet: bool = False,
    progress: bool | None = None,
    overrides: dict | None = None,
    sidecar: str | None = None,
    command: str = "",
    debug: bool = False,
    min_transfer: float | None = None,
    signing=None,
    **options,
) -> int:
    """Library entry of the scan command; returns the exit code (0, or 1 for a failed gate or a skip under ``strict``).

    ``signing`` (:class:`auditor.report.sign.Signing`) signs report.pdf (PAdES).

    Reports are written into a staging folder beside ``out`` and moved into
    place only when all of them are complete (see :mod:`auditor.report.staging`).
    Library warnings during the scan go to ``extras.notes`` of results.json
    instead of stderr (``debug=True`` shows them instead).
    """
    from auditor.report.base import parse_formats
    from auditor.report.gates import check_min_transfer, parse_gates
    from auditor.report.render import FILE_FORMATS
    from auditor.report.staging import StagedOutput

    fmts = split_list(formats)
    parse_formats(fmts)
    gates = parse_gates(fail_under) if fail_under else []
    min_transfer = check_min_transfer(min_transfer, gates)
    check_scan_flags(options, gates)
    _check_dir_flag(out, "--out")
    with StagedOutput(out, managed=FILE_FORMATS.values()) as stage:
        return _run_scan_staged(
            model,
            data,
            stage,
            compare=compare,
            fmts=fmts,
            gates=gates,
            strict=strict,
            quiet=quiet,
            progress=progress,
            overrides=overrides,
            sidecar=sidecar,
            command=command,
            debug=debug,
            min_transfer=min_transfer,
            signing=signing,
            **options,
        )


def _run_scan_staged(
    model,
    data,
    stage,
    *,
    compare,
    fmts,
    gates,
    strict,
    quiet,
    progress,
    overrides,
    sidecar,
    command,
    debug,
    min_transfer=None,
    signing=None,
    **options,
) -> int:
    from dataclasses import replace

    from auditor.capture import capture_library_output
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.spec import read_spec
    from auditor.progress import Reporter
    from auditor.report.gates import evaluate_gates, exit_status, skipped_items
    from auditor.report.render import FILE_FORMATS, render_all
    from auditor.scan.options import ScanOptions
    from auditor.scan.pipeline import Auditor

    reporter = Reporter(quiet=quiet, progress=progress)
    with capture_library_output(show=debug) as notes:
        spec = read_spec(model, sidecar=sidecar, overrides=overrides or {})
        check_gate_classes(gates, spec.class_names)
        for w in spec.warnings:
            reporter.warn(w)
        device = options.get("device", "auto")
        target = OnnxClassifier(model, spec=spec, device=device)
        reporter.info(
            f"model {model}: {spec.channels}x{spec.height}x{spec.width} {spec.layout}, classes "
            f"{', '.join(spec.class_names)}; ONNX Runtime provider {target.provider}"
        )
        others = []
        for path in compare:
            cspec = read_spec(path, overrides={k: v for k, v in (overrides or {}).items() if k != "class_names"})
            if [c.lower() for c in cspec.class_names] != [c.lower() for c in spec.class_names]:
                raise UsageError(
                    f"--compare {path}: classes {list(cspec.class_names)} differ from the target's "
                    f"{list(spec.class_names)}"
                )
            others.append(OnnxClassifier(path, spec=cspec, device=device))
        opts = ScanOptions(strict=strict, **options)
        result = Auditor(target, opts, reporter, command=command).run(data, compare=others)
    if notes:
        result = replace(result, extras={**result.extras, "notes": list(notes)})
    if gates:
        result = replace(result, gates=tuple(evaluate_gates(result, gates, min_transfer)))
    with capture_library_output(show=debug):
        render_all(result, stage.path, fmts, signing=signing)
    written = stage.commit()
    from auditor.report.console import print_summary

    print_summary(result, stream=sys.stdout)
    kinds = {name: fmt.value for fmt, name in FILE_FORMATS.items()}
    for name, path in written.items():
        reporter.info(f"wrote {kinds.get(name, name)}: {path}")
    code, message = exit_status([g.name for g in result.gates if not g.passed], skipped_items(result), strict)
    if message:
        click.echo(message, err=True)
    return code


def run_scan_from_demo(
    model_path: str, data_dir: str, out_dir: str, surrogate_path: str | None, quiet: bool = False, **extra
) -> int:
    """The demo's scan: clean + USMM/STM (if a surrogate is given) + JPEG defense + detector."""
    attacks = ("usmm", "stm") if surrogate_path else ()
    extra.setdefault("defenses", "jpeg:75,median:3")
    extra.setdefault("cache_dir", str(Path(out_dir).parent / "cache"))
    extra.setdefault("n_boot", 500)
    return run_scan(
        model_path,
        data_dir,
        out_dir,
        quiet=quiet,
        surrogate=surrogate_path,
        attacks=attacks,
        command=f"xray-audit demo --out {shlex.quote(str(Path(out_dir).parent))}",
        **extra,
    )


@click.command("scan")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--data", required=True, type=click.Path(), help="Image folder (root/<class>/...), CSV manifest or NIH table."
)
@click.option("--data-format", type=click.Choice(["auto", "folder", "csv", "nih"]), default="auto", show_default=True)
@click.option("--images-dir", type=click.Path(file_okay=False), help="Where CSV/NIH image paths are relative to.")
@click.option(
    "--allow-outside-root",
    is_flag=True,
    help="Let a CSV/NIH manifest list images whose real location is outside its data root.",
)
@click.option("--label-map", help="Rename data labels to model classes: DATA=MODEL,...; DATA=- drops that data class.")
@click.option("--out", default="xray-audit-out", show_default=True, type=click.Path(file_okay=False))
@model_contract_options
@click.option("--attacks", help="Comma list of mifgsm, usmm, stm, blend, or none (default: usmm,stm with a surrogate).")
@click.option("--eps", default="4,8,16", show_default=True, help="L-inf budgets, in 1/255 units (or 8/255, 0.03).")
@click.option(
    "--surrogate", help="Torch checkpoint(s) for transfer attacks (comma = ensemble), or 'target' (white-box)."
)
@click.option("--defenses", help="e.g. jpeg, jpeg:75, bitdepth:4, median:3, denoiser:PATH, cyclegan:PATH, feature:REF.")
@click.option(
    "--bpda", is_flag=True, help="Also attack surrogate+defense with straight-through gradients (adaptive check)."
)
@click.option(
    "--caveat",
    "caveats",
    multiple=True,
    help="A known limitation of the data (repeatable), shown in the "
    "report's summary and data section, e.g. a class with its own processing chain.",
)
@click.option(
    "--bpda-attacks", help="Run the adaptive check only with these attacks, e.g. mifgsm (default: every attack)."
)
@click.option(
    "--detector/--no-detector", default=True, show_default=True, help="Score the edge/SSIM and squeezing detectors."
)
@click.option(
    "--compare", multiple=True, type=click.Path(dir_okay=False), help="Further ONNX models scanned on the same sets."
)
@click.option("--format", "formats", default=DEFAULT_FORMATS, show_default=True, help="json,csv,html,pdf,junit")
@click.option("--fail-under", help="Gates, e.g. accuracy=0.8,robust_accuracy=0.5 (see README).")
@click.option(
    "--min-transfer",
    type=float,
    help="Robustness gates fail when the transfer efficiency "
    "(target flip rate / surrogate flip rate) is below this fraction, e.g. 0.5 (see README).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Any skip (image, attack, defense, BPDA, detector) makes the scan exit 1 after writing its reports.",
)
@click.option("--max-images", type=click.IntRange(1), help="Stratified, seeded subset of at most N images.")
@click.option(
    "--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=32, show_default=True, help="Inference batch size."
)
@click.option(
    "--attack-batch-size",
    type=click.IntRange(1, MAX_ATTACK_BATCH_SIZE),
    default=4,
    show_default=True,
    help="Images per attack batch.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Surrogate arithmetic for attacks; auto times fp32 and bf16 here and checks bf16 on the first batch.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Adversarial-set cache (default: $XRAY_AUDIT_CACHE or ~/.cache/xray-audit).",
)
@click.option(
    "--style-backend",
    type=click.Choice(["randconv", "adain-stats", "ghiasi"]),
    default="randconv",
    show_default=True,
    help="STM style network (ghiasi needs --stm-checkpoint).",
)
@click.option("--stm-checkpoint", type=click.Path(), help="Folder with checkpoint_transformer.pth (+ embeddings).")
@click.option("--style-image", type=click.Path(dir_okay=False), help="Style image for the blend attack.")
@click.option(
    "--ray-address",
    help="Spread attack batches and the evaluation of every condition over Ray: 'local' "
    "or a cluster address ('auto'); --cache-dir and the data must be on a shared file system.",
)
@click.option(
    "--workers", type=click.IntRange(1), help="Ray workers per adversarial set or condition (default: available CPUs)."
)
@click.option(
    "--n-boot",
    type=click.IntRange(0, MAX_BOOTSTRAP),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for CIs.",
)
@common_run_options
@sign_options
def scan_command(
    model,
    data,
    data_format,
    images_dir,
    label_map,
    out,
    attacks,
    eps,
    surrogate,
    defenses,
    bpda,
    bpda_attacks,
    caveats,
    detector,
    compare,
    formats,
    fail_under,
    min_transfer,
    strict,
    max_images,
    batch_size,
    attack_batch_size,
    precision,
    cache_dir,
    style_backend,
    stm_checkpoint,
    style_image,
    ray_address,
    workers,
    n_boot,
    seed,
    device,
    quiet,
    no_progress,
    allow_outside_root=False,
    **kw,
) -> None:
    """Audit MODEL (ONNX) on the images in --data; write results.json, samples.csv and reports to --out."""
    from auditor.data import parse_label_map

    signing = load_signing_from(kw)  # before the scan: a bad key fails in a second, not after the attacks
    attack_names = _parse_attacks(attacks, surrogate)
    exit_code = run_scan(
        model,
        data,
        out,
        compare=compare,
        formats=formats,
        fail_under=fail_under,
        min_transfer=min_transfer,
        strict=strict,
        quiet=quiet,
        progress=False if no_progress else None,
        overrides=contract_overrides(kw),
        sidecar=kw.get("sidecar"),
        command=" ".join(shlex.quote(a) for a in ["xray-audit", *sys.argv[1:]]),
        attacks=attack_names,
        epsilons=parse_epsilons(eps),
        surrogate=surrogate,
        defenses=defenses,
        bpda=bpda,
        bpda_attacks=_parse_bpda_attacks(bpda_attacks, bpda, attack_names),
        caveats=tuple(c.strip() for c in caveats if c.strip()),
        detector=detector,
        seed=seed,
        batch_size=batch_size,
        attack_batch_size=attack_batch_size,
        max_images=max_images,
        n_boot=n_boot,
        device=device,
        precision=precision,
        cache_dir=cache_dir or default_cache_dir(),
        style_backend=style_backend,
        stm_checkpoint=stm_checkpoint,
        style_image=style_image,
        label_map=parse_label_map(label_map),
        data_format=data_format,
        images_dir=images_dir,
        allow_outside_root=allow_outside_root,
        ray_address=ray_address,
        workers=workers,
        debug=bool((click.get_current_context().find_root().obj or {}).get("debug")),
        signing=signing,
    )
    if exit_code:
        click.get_current_context().exit(exit_code)
