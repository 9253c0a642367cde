"""The built wheel works outside the checkout: its templates are found from the installed package.

The wheel is built from a copy of the sources (so the checkout gets no ``build/`` folder), installed
with ``--no-deps`` into a fresh venv outside the checkout whose only view of the dependencies is a
``.pth`` line to this interpreter's site-packages (no 5 GB torch copy; appended after the venv's own
site-packages, so the wheel's ``auditor`` wins over any editable install there). Then the venv's own
``xray-audit`` console script re-renders a results.json into report.html, with PYTHONPATH unset and
the working directory outside the checkout.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from auditor.report.render import render_all

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "auditor")

pytestmark = pytest.mark.heavy


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd[:4]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def _setuptools_ok() -> bool:
    try:
        return int(md.version("setuptools").split(".")[0]) >= 68
    except md.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The xray-audit wheel built from a copy of the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(p, src / name)
    dist = tmp_path_factory.mktemp("dist")
    # without build isolation when this environment already has a recent setuptools (no index needed)
    isolation = ["--no-build-isolation"] if _setuptools_ok() else []
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist), str(src)])
    wheels = list(dist.glob("xray_audit-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_report_templates(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("report.html.j2", "_macros.html.j2", "report.css"):
        assert any(n.endswith("/" + template) for n in names), f"{template} missing from {wheel.name}"
    # one top-level import namespace: nothing generic like `training` or `templates` at the top
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"auditor"}, tops


def test_installed_wheel_renders_the_html_report_outside_the_checkout(wheel, result, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    vpy = venv / "bin" / "python"
    site = _run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "zz_outer_deps.pth").write_text("\n".join(deps) + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    _run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], env=env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run([str(vpy), "-c", "import auditor, jinja2; print(auditor.__file__)"], cwd=work, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"auditor imported from {where}, not the wheel"

    render_all(result, work / "in", "json")
    out = work / "out"
    proc = subprocess.run(
        [
            str(venv / "bin" / "xray-audit"),
            "report",
            str(work / "in" / "results.json"),
            "--format",
            "html,csv",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: the fixture's failing gate
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<style" in html and result.model["sha256"][:12] in html
    assert json.loads((work / "in" / "results.json").read_text())["tool_version"] == result.tool_version
