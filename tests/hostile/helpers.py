"""Shared pieces of the hostile-input suite: run the CLI, check the outcome, snapshot outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from auditor.cli import cli
from onnx_factory import make_classifier, write_image_folder

CLASSES = ("normal", "pneumonia", "pneumothorax")
#: prefixes a line of stderr may carry besides the one error line; "inconclusive gate(s)" is the notice of a gate
#: whose threshold lies inside the CI, which on these few images it often does since a rate of n/n has a Wilson
#: interval instead of a zero-width one (issue 24)
ALLOWED_NOISE = ("warning:", "gate(s) failed:", "--strict:", "wrote ", "inconclusive gate(s)")


def invoke(*args, input=None, env=None):
    """``xray-audit ARGS`` in-process (CliRunner keeps stdout and stderr apart)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env)


def stderr_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.strip()]


def assert_outcome(result, code: int) -> None:
    """The exact exit code, no traceback, and for a failure exactly one ``error:`` line on stderr."""
    where = f"exit {result.exit_code}, stderr:\n{result.stderr}\nexception: {result.exception!r}"
    assert result.exception is None or isinstance(result.exception, SystemExit), where
    assert result.exit_code == code, where
    assert "Traceback" not in result.output and "Traceback" not in result.stderr, where
    lines = stderr_lines(result)
    assert not any(ln.startswith("internal error") for ln in lines), where
    errors = [ln for ln in lines if ln.startswith("error:")]
    if code in (2, 3, 4, 5):
        assert len(errors) == 1 and lines[-1] == errors[0], where
        assert all(ln.startswith(ALLOWED_NOISE) for ln in lines[:-1]), where
    else:
        assert errors == [], where
        assert all(ln.startswith(ALLOWED_NOISE) for ln in lines), where


def snapshot(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder`` (hidden staging folders included)."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def previous_outputs(out: Path) -> dict[str, str]:
    """Fill ``out`` with the outputs of an 'earlier run' and return their snapshot."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text('{"earlier": "run"}\n')
    (out / "samples.csv").write_text("path,label\nold.png,normal\n")
    (out / "report.html").write_text("<html>earlier</html>\n")
    (out / "notes.txt").write_text("the user's own file\n")
    return snapshot(out)


def tiny_model(path: Path, **kw) -> Path:
    kw.setdefault("class_names", CLASSES)
    return make_classifier(path, **kw)


def tiny_data(root: Path, n_per_class: int = 3) -> Path:
    return write_image_folder(root, n_per_class=n_per_class)


def scan_args(model: Path, data: Path, out: Path, *extra) -> list:
    return [
        "scan",
        model,
        "--data",
        data,
        "--out",
        out,
        "--format",
        "json,csv",
        "--n-boot",
        "20",
        "-q",
        "--no-progress",
        *extra,
    ]


def png_bytes(arr: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def run_and_check(out: Path, args: list, code: int):
    """Run the CLI over an ``out`` that holds an earlier run; check the outcome and that nothing was lost.

    On failure every earlier file must be byte-identical; on success the user's own
    file stays, the reports are the new run's, and no staging folder is left behind.
    """
    before = previous_outputs(out)
    result = invoke(*args)
    assert_outcome(result, code)
    after = snapshot(out)
    if code not in (0, 1):
        assert after == before, "a failed run changed the earlier outputs"
    else:
        assert after.get("notes.txt") == before["notes.txt"]
        assert after.get("results.json") != before["results.json"]
        assert after.get("report.html") is None or after["report.html"] != before["report.html"]
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".xray-audit-partial-")]
    assert leftovers == [], leftovers
    return result
