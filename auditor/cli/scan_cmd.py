"""``xray-audit scan MODEL --data DIR``: the audit."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from auditor.cli.options import (
    check_outside_data,
    check_writable,
    common_run_options,
    contract_overrides,
    parse_epsilons,
    split_list,
)
from auditor.cli.scan_flags import (
    _check_dir_flag,
    _parse_attacks,
    _parse_bpda_attacks,
    check_gate_classes,
    check_max_clean_drop,
    check_scan_flags,
    parse_attack_params,
    parse_whitebox,
    with_max_clean_drop,
)
from auditor.cli.scan_options import DEFAULT_FORMATS, scan_options
from auditor.cli.sign_options import load_signing_from, sign_options
from auditor.errors import UsageError
from auditor.scan.options import default_cache_dir


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
    allow_transfer_only: bool = False,
    gate_on: str = "point",
    max_clean_drop: float | None = None,
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
    from auditor.report.gate_specs import GatePolicy, check_min_transfer, parse_gates
    from auditor.report.render import FILE_FORMATS
    from auditor.report.staging import StagedOutput

    fmts = split_list(formats)
    parse_formats(fmts)
    gates = parse_gates(fail_under) if fail_under else []
    min_transfer = check_min_transfer(min_transfer, gates)
    policy = GatePolicy(gate_on=gate_on, allow_transfer_only=allow_transfer_only, min_transfer=min_transfer)
    max_clean_drop = check_max_clean_drop(max_clean_drop)
    check_scan_flags(options, gates)
    _check_dir_flag(out, "--out")
    fmt = options.get("data_format", "auto")
    check_outside_data(data, out, "--out", fmt)
    if options.get("attacks") or options.get("bpda"):
        check_outside_data(data, options.get("cache_dir"), "--cache-dir", fmt)
    check_writable(out, "--out", staged_beside=True)
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
            policy=policy,
            max_clean_drop=max_clean_drop,
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
    policy=None,
    max_clean_drop=None,
    signing=None,
    **options,
) -> int:
    from dataclasses import replace

    from auditor.capture import capture_library_output
    from auditor.data.labels import check_label_targets
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.spec import read_spec
    from auditor.models.spec_graph import INFERRED_NOTE
    from auditor.progress import Reporter
    from auditor.report.contract import strict_contract_status
    from auditor.report.gate_view import exit_status, gate_notes, skipped_items
    from auditor.report.gates import apply_gates
    from auditor.report.render import FILE_FORMATS, render_all
    from auditor.scan.options import ScanOptions
    from auditor.scan.pipeline import Auditor
    from auditor.scan.plan import PlanOnly
    from auditor.strength import strength_checks

    reporter = Reporter(quiet=quiet, progress=progress)
    with capture_library_output(show=debug) as notes:
        spec = read_spec(model, sidecar=sidecar, overrides=overrides or {})
        check_gate_classes(gates, spec.class_names)
        check_label_targets(options.get("label_map"), spec.class_names)
        for w in spec.warnings:  # how the scaling was read from the graph is a note, the rest warnings
            (reporter.info if w.startswith(INFERRED_NOTE) else reporter.warn)(w)
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
        try:
            result = Auditor(target, opts, reporter, command=command).run(data, compare=others)
        except PlanOnly:
            return 0  # --plan: the plan was printed; nothing attacked, no reports
    if notes:
        result = replace(result, extras={**result.extras, "notes": list(notes)})
    result = with_max_clean_drop(result, max_clean_drop)
    result = replace(result, extras={**result.extras, "strength_checks": strength_checks(result)})
    result = apply_gates(result, gates, policy)
    with capture_library_output(show=debug):
        render_all(result, stage.path, fmts, signing=signing)
    written = stage.commit()
    from auditor.report.console import print_summary

    print_summary(result, stream=sys.stdout)
    kinds = {name: fmt.value for fmt, name in FILE_FORMATS.items()}
    for name, path in written.items():
        reporter.info(f"wrote {kinds.get(name, name)}: {path}")
    code, message = exit_status([g.name for g in result.gates if not g.passed], skipped_items(result), strict)
    code, message = strict_contract_status(result, strict, code, message)
    for line in ([message] if message else []) + gate_notes(result):
        click.echo(line, err=True)
    return code


def run_scan_from_demo(
    model_path: str, data_dir: str, out_dir: str, surrogate_path: str | None, quiet: bool = False, **extra
) -> int:
    """The demo's scan: clean + the default transfer attacks (if a surrogate is given) + JPEG defense + detector."""
    from auditor.attacks.registry import default_attacks

    attacks = default_attacks() if surrogate_path else ()
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
@scan_options
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
    whitebox,
    queries,
    attack_param,
    surrogate,
    defenses,
    bpda,
    bpda_attacks,
    caveats,
    plan,
    budget_minutes,
    probes,
    detector,
    compare,
    formats,
    fail_under,
    min_transfer,
    allow_transfer_only,
    gate_on,
    max_clean_drop,
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
    whitebox_names = parse_whitebox(whitebox, attack_names, surrogate)
    attack_params = parse_attack_params(attack_param, attack_names + whitebox_names, queries)
    exit_code = run_scan(
        model,
        data,
        out,
        compare=compare,
        formats=formats,
        fail_under=fail_under,
        min_transfer=min_transfer,
        allow_transfer_only=allow_transfer_only,
        gate_on=gate_on,
        max_clean_drop=max_clean_drop,
        strict=strict,
        quiet=quiet,
        progress=False if no_progress else None,
        overrides=contract_overrides(kw),
        sidecar=kw.get("sidecar"),
        command=" ".join(shlex.quote(a) for a in ["xray-audit", *sys.argv[1:]]),
        attacks=attack_names,
        whitebox_attacks=whitebox_names,
        attack_params=attack_params,
        epsilons=parse_epsilons(eps),
        surrogate=surrogate,
        defenses=defenses,
        bpda=bpda,
        bpda_attacks=_parse_bpda_attacks(bpda_attacks, bpda, attack_names),
        caveats=tuple(c.strip() for c in caveats if c.strip()),
        detector=detector,
        strength_probes=probes,
        plan=plan,
        budget_minutes=budget_minutes,
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
