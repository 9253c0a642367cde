"""mypy (``[tool.mypy]`` of pyproject.toml) reports no error in the type-checked part of ``auditor/``.

The checked part is every module of ``auditor/`` (:data:`NOT_YET_CHECKED` is empty since the typed records
of issue 27 landed; a future large refactor may list a folder there for its duration). ``make test`` also runs
mypy over ``auditor/`` before the suite.

The run keeps mypy's incremental cache in ``.mypy_cache`` at the repository root: a first run checks every
module and the stubs of torch and numpy (about a minute on 2 shared cores, ~1 GB of memory: hence ``heavy``),
later runs only what changed (2 s); a mypy run before the suite fills it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: files and folders of auditor/ whose errors are not counted (none: the whole package is held to zero errors)
NOT_YET_CHECKED: tuple[str, ...] = ()

#: ``path:line: error: message  [code]`` as mypy prints it (paths relative to the repository root)
_ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+: error: ")


def checked_files() -> list[str]:
    """The modules of ``auditor/`` the test holds to zero errors, relative to the repository root."""
    files = (p.relative_to(ROOT).as_posix() for p in (ROOT / "auditor").rglob("*.py"))
    return sorted(f for f in files if not f.startswith(NOT_YET_CHECKED))


def region_errors(report: str, files: list[str]) -> list[str]:
    """The error lines of a mypy ``report`` located in ``files``."""
    wanted = set(files)
    return [line for line in report.splitlines() if (m := _ERROR.match(line)) and m["path"] in wanted]


def test_region_errors_are_read_from_a_mypy_report():
    report = (
        "auditor/metrics.py:3: error: Incompatible types  [assignment]\n"
        "auditor/metrics.py:3: note: see here\n"
        "auditor/scan/attack.py:9: error: Item None  [union-attr]\n"
        "Found 2 errors in 2 files (checked 2 source files)\n"
    )
    files = ["auditor/metrics.py", "auditor/outcomes.py"]
    assert region_errors(report, files) == ["auditor/metrics.py:3: error: Incompatible types  [assignment]"]


@pytest.mark.heavy
def test_mypy_reports_no_error_in_the_checked_modules(monkeypatch):
    api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install -e '.[dev]')")
    monkeypatch.chdir(ROOT)  # mypy prints paths relative to the working directory
    files = checked_files()
    assert "auditor/cli/__init__.py" in files and "auditor/types.py" in files and "auditor/scan/attack.py" in files
    stdout, stderr, status = api.run(
        ["--config-file", "pyproject.toml", "--cache-dir", ".mypy_cache", "--no-error-summary", *files]
    )
    assert status in (0, 1) and not stderr.strip(), f"mypy did not run (exit {status}):\n{stderr[-3000:]}"
    errors = region_errors(stdout, files)
    assert not errors, f"{len(errors)} mypy error(s) in the checked modules:\n" + "\n".join(errors)
