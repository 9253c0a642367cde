"""``xray-audit inspect MODEL``: print the model's input/output contract."""

from __future__ import annotations

import json
from typing import Any

import click

from auditor.cli.options import contract_overrides, model_contract_options


@click.command("inspect")
@click.argument("model", type=click.Path(dir_okay=False))
@model_contract_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
def inspect_command(model: str, as_json: bool, **kw) -> None:
    """Print the input/output contract (ModelSpec) that xray-audit reads from MODEL."""
    from auditor.hashing import sha256_file
    from auditor.models.onnx_file import load_onnx_proto, producer_text
    from auditor.models.spec import read_spec
    from auditor.models.spec_graph import INFERRED_NOTE

    proto = load_onnx_proto(model)
    spec = read_spec(model, model=proto, sidecar=kw.get("sidecar"), overrides=contract_overrides(kw))
    doc: dict[str, Any] = {
        "path": model,
        "sha256": sha256_file(model),
        "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "producer": producer_text(proto),
        "spec": spec.to_dict(),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ModelSpec of {model}", show_lines=False)
    table.add_column("field")
    table.add_column("value")
    table.add_column("from")
    rows = [
        ("sha256", doc["sha256"], ""),
        ("opset / producer", f"{doc['opset']} / {doc['producer']}", ""),
        ("input", spec.input_name, spec.sources.get("input_name", "")),
        ("layout", spec.layout, spec.sources.get("layout", "")),
        ("channels", str(spec.channels), spec.sources.get("channels", "")),
        (
            "size (H x W)",
            f"{spec.height} x {spec.width}" + (" (dynamic)" if spec.dynamic_size else ""),
            spec.sources.get("height", ""),
        ),
        ("batch", "dynamic" if spec.dynamic_batch else "fixed", "graph"),
        ("dtype", spec.dtype, spec.sources.get("dtype", "")),
        ("scaling", f"{spec.scaling} (mean {list(spec.mean)}, std {list(spec.std)})", spec.sources.get("scaling", "")),
        ("output", f"{spec.output_name}: {spec.output_kind}", spec.sources.get("output_kind", "")),
        ("classes", ", ".join(spec.class_names), spec.sources.get("class_names", "")),
    ]
    for r in rows:
        table.add_row(*r)
    console = Console()
    console.print(table, markup=False)
    for w in spec.warnings:
        if w.startswith(INFERRED_NOTE):
            console.print(f"note: {w}", markup=False)
        else:
            console.print(f"warning: {w}", markup=False, style="yellow")
