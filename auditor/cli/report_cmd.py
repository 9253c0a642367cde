"""``xray-audit report results.json``: re-render reports without recomputing."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from auditor.cli.options import gate_policy_options, split_list
from auditor.cli.sign_options import load_signing_from, sign_options

if TYPE_CHECKING:
    from auditor.types import AuditResult


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--merge",
    is_flag=True,
    help="Combine several results.json of the same model and data (e.g. a transfer scan and a white-box "
    "scan) into one results.json and reports in --out; refused (exit 3) for another model, data or contract.",
)
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: beside results.json).")
@click.option("--format", "formats", default="html,pdf", show_default=True, help="json,csv,html,pdf,junit")
@click.option("--fail-under", help="Gates to (re-)evaluate, e.g. accuracy=0.8,robust_accuracy=0.5.")
@click.option("--min-transfer", type=float, help="Robustness gates fail below this transfer efficiency (see README).")
@gate_policy_options(None)
@click.option(
    "--max-clean-drop",
    type=float,
    help="Largest clean-accuracy drop a defense may cause and still be named best (default: the clean 95% CI).",
)
@click.option("--strict", is_flag=True, help="Skipped items make the exit code 1.")
@sign_options
def report_command(
    results: tuple[str, ...],
    out: str | None,
    formats: str,
    fail_under: str | None,
    min_transfer: float | None,
    allow_transfer_only: bool,
    gate_on: str | None,
    max_clean_drop: float | None,
    strict: bool,
    merge: bool = False,
    **sign: str | None,
) -> None:
    """Render RESULTS (a results.json written by scan) into the chosen formats.

    With --merge, RESULTS are two or more results.json of the same model and data, rendered as one.
    With --fail-under the gates are evaluated anew; without it, --allow-transfer-only or --gate-on
    re-evaluate the gates stored in RESULTS under that policy. Either way the transfer-only rule applies.
    """
    from auditor.capture import capture_library_output
    from auditor.cli.scan_flags import _check_dir_flag, check_gate_classes, check_max_clean_drop, with_max_clean_drop
    from auditor.report.base import parse_formats
    from auditor.report.console import print_summary
    from auditor.report.contract import strict_contract_status
    from auditor.report.gate_specs import GatePolicy, check_min_transfer, parse_gates, stored_gates
    from auditor.report.gate_view import exit_status, gate_notes, skipped_items
    from auditor.report.gates import apply_gates
    from auditor.report.render import FILE_FORMATS, render_all
    from auditor.report.staging import StagedOutput
    from auditor.strength import strength_checks

    fmts = split_list(formats)
    parse_formats(fmts)
    gates = parse_gates(fail_under) if fail_under else ()
    min_transfer = check_min_transfer(min_transfer, gates)
    max_clean_drop = check_max_clean_drop(max_clean_drop)
    _check_dir_flag(out, "--out")
    signing = load_signing_from(sign)
    result, rendered = _load(results, merge, out)
    result = with_max_clean_drop(result, max_clean_drop)
    check_gate_classes(gates, result.class_names, where=rendered)
    policy = GatePolicy(gate_on=gate_on or "point", allow_transfer_only=allow_transfer_only, min_transfer=min_transfer)
    result = replace(result, extras={**result.extras, "strength_checks": strength_checks(result)})
    if gates:
        result = apply_gates(result, gates, policy)
    elif allow_transfer_only or gate_on:  # the stored gates, under the policy given now
        result = apply_gates(result, stored_gates(result), policy)
    out_dir = Path(out) if out else Path(rendered).parent
    # beside the results.json it renders, the other files belong to the same run: keep them
    same_run = out_dir.absolute() == Path(rendered).absolute().parent
    if merge:  # a merged result is a new run: its results.json is always written, nothing stale kept
        fmts, same_run = (fmts if "json" in fmts else ["json", *fmts]), False
    debug = bool((click.get_current_context().find_root().obj or {}).get("debug"))
    with StagedOutput(out_dir, managed=FILE_FORMATS.values()) as stage:
        if stage.path is None:  # entering creates the staging folder or raises; None only before entry
            raise RuntimeError("StagedOutput entered without a staging folder")
        with capture_library_output(show=debug):
            render_all(result, stage.path, fmts, signing=signing)
        written = stage.commit(stale="keep" if same_run else "remove")
    print_summary(result, stream=sys.stdout)
    kinds = {name: fmt.value for fmt, name in FILE_FORMATS.items()}
    for name, path in written.items():
        click.echo(f"wrote {kinds.get(name, name)}: {path}", err=True)
    code, message = exit_status([g.name for g in result.gates if not g.passed], skipped_items(result), strict)
    code, message = strict_contract_status(result, strict, code, message)
    for line in ([message] if message else []) + gate_notes(result):
        click.echo(line, err=True)
    if code:
        click.get_current_context().exit(code)


def _load(paths: tuple[str, ...], merge: bool, out: str | None) -> tuple[AuditResult, str]:
    """``(result, name)``: the one results.json, or with ``--merge`` the merged result of all of them.

    The name is the file rendered (for messages, and whose folder is the default ``--out``); a
    merged result has no folder of its own, so ``--merge`` needs ``--out``.
    """
    from auditor.errors import UsageError
    from auditor.report.io import load_results

    if not merge:
        if len(paths) != 1:
            raise UsageError(f"report takes one results.json (got {len(paths)}); to combine scans give --merge")
        return load_results(paths[0]), paths[0]
    if len(paths) < 2:
        raise UsageError("--merge needs at least two results.json files")
    if not out:
        raise UsageError("--merge needs --out (the folder for the merged results.json and reports)")
    if len({str(Path(p).resolve()) for p in paths}) != len(paths):
        raise UsageError("--merge: the same results.json is given twice")
    from auditor.report.merge import merge_results

    command = "xray-audit report --merge " + " ".join(shlex.quote(p) for p in paths) + f" --out {shlex.quote(out)}"
    merged = merge_results([load_results(p) for p in paths], list(paths), command=command)
    return merged, str(Path(out) / "results.json")
