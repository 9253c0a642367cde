"""The lint and format rules of pyproject.toml ``[tool.ruff]`` hold for the whole tree (``make test`` runs the same checks)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    try:
        import ruff  # noqa: F401  (the PyPI package ships the binary)
    except ImportError:
        exe = shutil.which("ruff")
        if exe is None:
            pytest.skip("ruff is not installed (pip install -e '.[dev]')")
        return [exe]
    return [sys.executable, "-m", "ruff"]


def test_ruff_check_passes():
    out = subprocess.run(
        [*_ruff(), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_ruff_format_is_applied():
    """The tree is formatted as ``ruff format`` (pyproject ``[tool.ruff.format]``) would write it."""
    out = subprocess.run([*_ruff(), "format", "--no-cache", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def _ruff_on(text: str, filename: str) -> str:
    """Ruff's findings for ``text`` linted as if it were the repository file ``filename`` (its per-file rules)."""
    out = subprocess.run(
        [*_ruff(), "check", "--no-cache", "--output-format", "concise", "--stdin-filename", filename, "-"],
        input=text,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout + out.stderr


def test_public_definitions_of_the_package_need_a_docstring():
    """D100-D104 are on for auditor/: a public module, class, method, function or package without a docstring fails."""
    probe = "def public():\n    return 1\n\n\nclass Thing:\n    def method(self):\n        return 2\n"
    found = _ruff_on(probe, "auditor/probe.py")
    assert {"D100", "D101", "D102", "D103"} <= set(re.findall(r"\bD10\d\b", found)), found
    assert "D104" in _ruff_on("", "auditor/probe_package/__init__.py")
    documented = (
        '"""A module."""\n\n\ndef public():\n    """Return one."""\n    return 1\n\n\ndef _private():\n    return 2\n'
    )
    assert not re.findall(r"\bD1\d\d\b", _ruff_on(documented, "auditor/probe.py"))
