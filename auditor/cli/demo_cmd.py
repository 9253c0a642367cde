"""``xray-audit demo --out DIR``: SYNTHETIC phantoms -> small reference model -> ONNX -> scan -> reports."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--out",
    default="demo-out",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the phantoms, the models and the report.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the phantoms and the training.")
@click.option("--quick", is_flag=True, help="Seconds-long smoke run (tiny data, 2 epochs): the numbers mean nothing.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary.")
@click.option("--no-progress", is_flag=True, help="No progress bars even on a terminal.")
@click.pass_context
def demo_command(ctx: click.Context, out: str, seed: int, quick: bool, quiet: bool, no_progress: bool) -> None:
    """Run the built-in demo on SYNTHETIC chest X-ray phantoms (no patient data, no medical meaning)."""
    from auditor.training.demo import prepare_demo

    click.echo("xray-audit demo: everything below uses SYNTHETIC procedural phantoms, not radiographs.")
    paths = prepare_demo(out, seed=seed, quick=quick, quiet=quiet, progress=False if no_progress else None)
    m = paths["metrics"]
    click.echo(
        f"target model (SYNTHETIC): {paths['model']} - clean test accuracy {m['accuracy']:.3f} on {m['n']} phantoms"
    )
    click.echo(f"model card:               {paths['card']}")
    if paths.get("surrogate"):
        click.echo(f"surrogate checkpoint:     {paths['surrogate']}")
    click.echo(f"training took {paths['seconds']:.0f}s")
    try:
        from auditor.cli.scan_cmd import run_scan_from_demo
    except ImportError:
        click.echo(
            "scan skipped: the scan command is not available in this build; the model above is ready for "
            f"`xray-audit scan {paths['model']} --data {paths['scan_data_dir']}`"
        )
        return
    report_dir = Path(out) / "report"
    code = run_scan_from_demo(
        paths["model"], paths["scan_data_dir"], str(report_dir), paths.get("surrogate"), quiet=quiet
    )
    html = report_dir / "report.html"
    click.echo(f"report (SYNTHETIC demo): {html if html.exists() else report_dir}")
    ctx.exit(code)
