"""``xray-audit report results.json``: re-render reports without recomputing."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from auditor.cli.options import split_list


@click.command("report")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: beside results.json).")
@click.option("--format", "formats", default="html,pdf", show_default=True, help="json,csv,html,pdf,junit")
@click.option("--fail-under", help="Gates to (re-)evaluate, e.g. accuracy=0.8,robust_accuracy=0.5.")
@click.option("--strict", is_flag=True, help="Skipped items make the exit code 1.")
def report_command(results: str, out: str | None, formats: str, fail_under: str | None, strict: bool) -> None:
    """Render RESULTS (a results.json written by scan) into the chosen formats."""
    from auditor.report.console import print_summary
    from auditor.report.gates import evaluate_gates, exit_status, parse_gates, skipped_items
    from auditor.report.io import load_results
    from auditor.report.render import render_all

    result = load_results(results)
    if fail_under:
        result = replace(result, gates=tuple(evaluate_gates(result, parse_gates(fail_under))))
    out_dir = Path(out) if out else Path(results).parent
    written = render_all(result, out_dir, split_list(formats))
    print_summary(result, stream=sys.stdout)
    for fmt, path in written.items():
        click.echo(f"wrote {fmt}: {path}", err=True)
    code, message = exit_status([g.name for g in result.gates if not g.passed], skipped_items(result), strict)
    if message:
        click.echo(message, err=True)
    if code:
        click.get_current_context().exit(code)
