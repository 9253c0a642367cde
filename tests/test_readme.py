"""README examples are tests: every ``xray-audit ...`` line in a fenced code block goes through the CLI.

Each line is (1) parsed by click exactly as the real command would be (options, choices, types,
required options; the command's body is not run), (2) invoked through CliRunner with ``--help``
appended (exit 0), and (3) the cheap ones (``inspect``, ``report`` and clean ``scan``s) are run for
real on a tiny model and data set written under the names the README uses. So a flag renamed or
removed in the CLI, or a README line with a typo, fails here.
"""

from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from onnx_factory import make_classifier, write_image_folder

README = Path(__file__).resolve().parents[1] / "README.md"
PROGRAMS = ("xray-audit", ".venv/bin/xray-audit")


def readme_commands(text: str) -> list[list[str]]:
    """Argument lists (program name removed) of the ``xray-audit`` lines in fenced code blocks.

    Backslash continuations are joined and ``# comments`` dropped.
    """
    commands: list[list[str]] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in PROGRAMS:
                commands.append(words[1:])
    return commands


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))
IDS = [" ".join(c)[:60] for c in COMMANDS]


def test_readme_has_examples():
    assert len(COMMANDS) >= 5, COMMANDS
    assert {c[0] for c in COMMANDS} >= {"inspect", "scan", "report", "attack", "train", "demo"}


def _rest(ctx: click.Context) -> list[str]:
    """Tokens a group left for its sub-command."""
    with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 needs it
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*ctx.protected_args, *ctx.args]


def _parse(args: list[str]) -> click.Context:
    """Parse ``args`` down to the leaf command (raises click.UsageError/BadParameter like the CLI)."""
    ctx = cli.make_context("xray-audit", list(args))
    cmd = cli
    while isinstance(cmd, click.Group):
        name, cmd, rest = cmd.resolve_command(ctx, _rest(ctx))
        ctx = cmd.make_context(name, rest, parent=ctx)
    return ctx


@pytest.mark.parametrize("args", COMMANDS, ids=IDS)
def test_readme_line_parses(args):
    if "--help" not in args:
        ctx = _parse(args)
        assert args[0] in (ctx.command.name, ctx.parent.command.name)
    r = CliRunner().invoke(cli, [*args, "--help"] if "--help" not in args else args)
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def test_parser_catches_a_drifted_line():
    with pytest.raises(click.UsageError, match="no-such-flag"):
        _parse(["scan", "model.onnx", "--data", "cxr/", "--no-such-flag"])
    with pytest.raises(click.BadParameter):
        _parse(["scan", "model.onnx", "--data", "cxr/", "--precision", "fp8"])


def _cheap(args: list[str]) -> bool:
    if args[0] == "report" and "--merge" in args:  # needs two scans of one model (tests/report/test_report_merge.py)
        return False
    if args[0] in ("inspect", "report"):
        return True
    return args[0] == "scan" and not any(a in args for a in ("--surrogate", "--compare", "--defenses"))


@pytest.mark.heavy  # PDF rendering: about a minute on a busy 2-core host
def test_cheap_readme_lines_run_on_tiny_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_classifier(tmp_path / "model.onnx", class_names=["normal", "pneumonia", "pneumothorax"])
    write_image_folder(tmp_path / "cxr", n_per_class=2)
    ran = []
    for args in (a for a in COMMANDS if _cheap(a)):
        r = CliRunner().invoke(cli, [*args, *(["--n-boot", "20"] if args[0] == "scan" else [])])
        assert r.exit_code == 0, f"{' '.join(args)}\n{r.output}"
        ran.append(args[0])
    assert {"inspect", "scan", "report"} <= set(ran)
