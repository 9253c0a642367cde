"""Layering rules of docs/architecture.md §2, enforced by walking the imports of every module.

The import graph counts every import, top-level or inside a function (a lazy import still ties the
modules together). ``from package import name`` is an edge to ``package.name`` when that is a module,
else to the package. Cycles are found with networkx (strongly connected components and their simple
cycles), and must equal the documented allow-list :data:`ALLOWED_CYCLES` exactly: a new cycle fails,
and a removed one fails too until the list shrinks.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: docs/architecture.md §2: the group of every module (by its dotted name), and the groups each may import
FOUNDATION = {
    "types",
    "condition_ids",
    "outcomes",
    "result_records",
    "detector_records",
    "errors",
    "hashing",
    "progress",
    "atomic",
    "capture",
    "allocator",
    "attack_eta",
    "attack_specs",
    "templates",
}
SCAN = {"scan", "examples", "distributed", "evaluation", "distributed_eval"}
MEASURES = {"metrics", "transfer", "strength", "strength_probes"}
MAY_IMPORT = {
    "foundation": set(),
    "reference_models": {"foundation"},
    "models": {"foundation", "reference_models"},
    "data": {"foundation"},
    "measures": {"foundation"},
    "attacks": {"foundation", "reference_models", "models", "data", "measures"},
    "defenses": {"foundation", "reference_models", "models", "data", "measures"},
    "scan": {"foundation", "reference_models", "models", "data", "measures", "attacks", "defenses"},
    "report": {"foundation", "measures"},
    "training": {"foundation", "reference_models", "models", "data", "measures", "attacks", "defenses"},
    "cli": {
        "foundation",
        "reference_models",
        "models",
        "data",
        "measures",
        "attacks",
        "defenses",
        "scan",
        "report",
        "training",
    },
}

#: import cycles that exist on purpose for now, each with its reason (docs/architecture.md §8.1)
ALLOWED_CYCLES: set[frozenset[str]] = set()  # none: every former cycle is gone (docs/architecture.md §8.1)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _uses(path: Path, prefix: str) -> bool:
    return any(m == prefix or m.startswith(prefix + ".") for m in _imports(path))


def test_only_onnx_adapter_imports_onnxruntime():
    offenders = [p for p in _modules("auditor") if _uses(p, "onnxruntime")]
    assert [p.relative_to(ROOT).as_posix() for p in offenders] == ["auditor/models/onnx.py"]


@pytest.mark.parametrize(
    "package",
    [
        "auditor/report",
        "auditor/metrics.py",
        "auditor/types.py",
        "auditor/outcomes.py",
        "auditor/result_records.py",
        "auditor/detector_records.py",
        "auditor/data",
    ],
)
def test_report_metrics_types_data_never_import_torch(package):
    paths = [ROOT / package] if package.endswith(".py") else _modules(package)
    assert [p.name for p in paths if _uses(p, "torch")] == []


def test_types_imports_nothing_internal_but_the_outcome_columns():
    """types.py is a leaf but for outcomes.py (the per-image columns its results hold), result_records.py (the typed
    records of a condition's extras and of the sets) and detector_records.py, which are leaves themselves."""
    leaves = ("outcomes", "result_records", "detector_records")
    assert {m for m in _imports(ROOT / "auditor/types.py") if m.startswith("auditor")} <= {
        f"auditor.{m}" for m in leaves
    }
    for leaf in leaves:
        assert not any(m.startswith("auditor") for m in _imports(ROOT / f"auditor/{leaf}.py")), leaf


def test_auditor_never_imports_training_except_cli():
    """The library never imports the training recipes; the CLI does, lazily, for `xray-audit train`."""
    offenders = [
        p.relative_to(ROOT).as_posix()
        for p in _modules("auditor")
        if _uses(p, "auditor.training")
        and "/cli/" not in p.as_posix()
        and not p.is_relative_to(ROOT / "auditor" / "training")
    ]
    assert offenders == []


def test_report_does_not_import_attacks_or_models():
    offenders = [
        p.name
        for p in _modules("auditor/report")
        if _uses(p, "auditor.attacks") or _uses(p, "auditor.models") or _uses(p, "auditor.defenses")
    ]
    assert offenders == []


def test_help_does_not_import_torch():
    code = (
        "import sys; from click.testing import CliRunner; from auditor.cli import cli; "
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'scan' in r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- the import graph


def _module_names() -> dict[str, Path]:
    out = {}
    for p in _modules("auditor"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _targets(node: ast.AST, module: str, path: Path, names: dict[str, Path]) -> list[str]:
    """Project modules an ``import`` / ``from ... import`` statement loads (relative imports resolved)."""
    if isinstance(node, ast.Import):
        out = []
        for alias in node.names:
            name = alias.name
            while name and name not in names:
                name = name.rpartition(".")[0]
            if name:
                out.append(name)
        return out
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        base = f"{base}.{node.module}" if node.module else base
    else:
        base = node.module or ""
    if base.split(".")[0] != "auditor":
        return []
    return [
        f"{base}.{a.name}" if f"{base}.{a.name}" in names else base
        for a in node.names
        if f"{base}.{a.name}" in names or base in names
    ]


def import_graph() -> nx.DiGraph:
    """Directed graph module -> imported project module, over every import statement of ``auditor/``."""
    names = _module_names()
    graph = nx.DiGraph()
    for module, path in names.items():
        graph.add_node(module)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in _targets(node, module, path, names):
                if target != module:
                    graph.add_edge(module, target)
    return graph


def import_cycles(graph: nx.DiGraph) -> set[frozenset[str]]:
    """Every simple cycle of the graph, as the set of its modules."""
    return {frozenset(c) for c in nx.simple_cycles(graph)}


def group(module: str) -> str:
    """The layer group (docs/architecture.md §2) of a dotted module name."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in FOUNDATION:
        return "foundation"
    if parts[1] in MEASURES:
        return "measures"
    if parts[1] in SCAN:
        return "scan"
    if parts[1] == "__main__":
        return "cli"
    return parts[1]


def test_every_module_has_a_layer():
    unknown = sorted(m for m in import_graph() if group(m) not in MAY_IMPORT)
    assert unknown == [], "add these modules to a layer of docs/architecture.md §2 and MAY_IMPORT"


def test_layer_order():
    """No module imports a group its layer may not import (lazy imports included)."""
    graph = import_graph()
    bad = sorted(f"{a} -> {b}" for a, b in graph.edges if group(a) != group(b) and group(b) not in MAY_IMPORT[group(a)])
    assert bad == []


def test_attacks_and_defenses_do_not_import_each_other():
    graph = import_graph()
    assert sorted(f"{a} -> {b}" for a, b in graph.edges if {group(a), group(b)} == {"attacks", "defenses"}) == []


def test_import_cycles_are_exactly_the_documented_ones():
    found = import_cycles(import_graph())
    assert sorted(sorted(c) for c in found - ALLOWED_CYCLES) == [], "new import cycle(s)"
    assert sorted(sorted(c) for c in ALLOWED_CYCLES - found) == [], (
        "cycle(s) gone: shrink ALLOWED_CYCLES and docs/architecture.md §8.1"
    )


def test_scan_stages_never_import_the_orchestrator():
    """The stages of auditor/scan/ are functions of the ScanContext: only the CLI imports the pipeline."""
    graph = import_graph()
    assert "auditor.scan.pipeline" in graph
    importers = sorted(a for a, b in graph.edges if b == "auditor.scan.pipeline")
    assert [m for m in importers if not m.startswith("auditor.cli")] == []


def test_cycle_finder_sees_lazy_and_relative_imports(tmp_path):
    """The graph walker is not vacuous: a lazy import and a relative one close a cycle it reports."""
    pkg = tmp_path / "auditor"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from auditor.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import a\n")
    names = {
        "auditor": pkg / "__init__.py",
        "auditor.sub": pkg / "sub" / "__init__.py",
        "auditor.sub.a": pkg / "sub" / "a.py",
        "auditor.sub.b": pkg / "sub" / "b.py",
    }
    graph = nx.DiGraph()
    for module, path in names.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for target in _targets(node, module, path, names):
                graph.add_edge(module, target)
    assert import_cycles(graph) == {frozenset({"auditor.sub.a", "auditor.sub.b"})}
