"""``xray-audit report results.json``: re-render reports without recomputing."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from auditor.cli.options import split_list
from auditor.cli.sign_options import load_signing_from, sign_options


@click.command("report")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: beside results.json).")
@click.option("--format", "formats", default="html,pdf", show_default=True, help="json,csv,html,pdf,junit")
@click.option("--fail-under", help="Gates to (re-)evaluate, e.g. accuracy=0.8,robust_accuracy=0.5.")
@click.option("--min-transfer", type=float, help="Robustness gates fail below this transfer efficiency (see README).")
@click.option("--strict", is_flag=True, help="Skipped items make the exit code 1.")
@sign_options
def report_command(
    results: str,
    out: str | None,
    formats: str,
    fail_under: str | None,
    min_transfer: float | None,
    strict: bool,
    **sign: str | None,
) -> None:
    """Render RESULTS (a results.json written by scan) into the chosen formats."""
    from auditor.capture import capture_library_output
    from auditor.cli.scan_cmd import _check_dir_flag, check_gate_classes
    from auditor.report.base import parse_formats
    from auditor.report.console import print_summary
    from auditor.report.gates import check_min_transfer, evaluate_gates, exit_status, parse_gates, skipped_items
    from auditor.report.io import load_results
    from auditor.report.render import FILE_FORMATS, render_all
    from auditor.report.staging import StagedOutput

    fmts = split_list(formats)
    parse_formats(fmts)
    gates = parse_gates(fail_under) if fail_under else ()
    min_transfer = check_min_transfer(min_transfer, gates)
    _check_dir_flag(out, "--out")
    signing = load_signing_from(sign)
    result = load_results(results)
    check_gate_classes(gates, result.class_names, where=results)
    if gates:
        result = replace(result, gates=tuple(evaluate_gates(result, gates, min_transfer)))
    out_dir = Path(out) if out else Path(results).parent
    # beside the results.json it renders, the other files belong to the same run: keep them
    same_run = out_dir.absolute() == Path(results).absolute().parent
    debug = bool((click.get_current_context().find_root().obj or {}).get("debug"))
    with StagedOutput(out_dir, managed=FILE_FORMATS.values()) as stage:
        with capture_library_output(show=debug):
            render_all(result, stage.path, fmts, signing=signing)
        written = stage.commit(stale="keep" if same_run else "remove")
    print_summary(result, stream=sys.stdout)
    kinds = {name: fmt.value for fmt, name in FILE_FORMATS.items()}
    for name, path in written.items():
        click.echo(f"wrote {kinds.get(name, name)}: {path}", err=True)
    code, message = exit_status([g.name for g in result.gates if not g.passed], skipped_items(result), strict)
    if message:
        click.echo(message, err=True)
    if code:
        click.get_current_context().exit(code)
