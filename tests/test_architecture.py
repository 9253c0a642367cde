"""Layering rules of docs/architecture.md §2, enforced by walking the imports of every module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("package", ["auditor/report", "auditor/metrics.py", "auditor/types.py", "auditor/data"])
def test_report_metrics_types_data_never_import_torch(package):
    paths = [ROOT / package] if package.endswith(".py") else _modules(package)
    assert [p.name for p in paths if _uses(p, "torch")] == []


def test_types_imports_nothing_internal():
    assert not any(m.startswith("auditor") for m in _imports(ROOT / "auditor/types.py"))


def test_auditor_never_imports_training_except_cli():
    """The library never imports the training recipes; the CLI does, lazily, for `xray-audit train`."""
    offenders = [p.relative_to(ROOT).as_posix() for p in _modules("auditor")
                 if _uses(p, "auditor.training") and "/cli/" not in p.as_posix()
                 and not p.is_relative_to(ROOT / "auditor" / "training")]
    assert offenders == []


def test_report_does_not_import_attacks_or_models():
    offenders = [p.name for p in _modules("auditor/report")
                 if _uses(p, "auditor.attacks") or _uses(p, "auditor.models") or _uses(p, "auditor.defenses")]
    assert offenders == []


def test_help_does_not_import_torch():
    code = ("import sys; from click.testing import CliRunner; from auditor.cli import cli; "
            "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output; "
            "assert 'scan' in r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
