"""Documented exit codes through the real command line: 4 (out of memory, CUDA absent),
5 (a bug), 130 (Ctrl-C during work, finished batches kept) and ``--debug`` (traceback, same code).

Exit 4 and 5 are provoked by injecting a fault into one function of an otherwise normal scan;
the out-of-memory fault is torch's own allocator failure (an impossible allocation, which fails
at once without using memory). 130 and --debug run ``python -m auditor`` as a real process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import auditor.scan.evaluate
from auditor.cli import cli
from onnx_factory import write_image_folder
from tests.conftest import ScanSetup

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Ctrl-C semantics hold even when the test runner itself
    was started with SIGINT ignored (a shell's background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def setup(scan_setup):
    s = scan_setup("exits", classes=CLASSES)
    return s.root, s.data, s.target, s.surrogate


def _scan_args(root, data, target, sur, out, *extra):
    attack = ["--attacks", "mifgsm", "--eps", "8", "--no-detector"]
    return ScanSetup(root, data, target, sur, tuple(CLASSES)).args(
        out, *attack, *extra, cache=root / out / "cache", n_boot=0
    )


def _torch_oom(*args, **kwargs):
    torch.empty(2**62, dtype=torch.uint8)  # the CPU allocator refuses at once: RuntimeError "can't allocate memory"


def _cuda_oom(*args, **kwargs):
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _numpy_oom(*args, **kwargs):
    np.empty(2**62, dtype=np.uint8)  # numpy's MemoryError subclass


@pytest.mark.parametrize("fault", [_torch_oom, _cuda_oom, _numpy_oom], ids=["torch-cpu", "torch-cuda", "numpy"])
def test_out_of_memory_exits_4(setup, monkeypatch, fault):
    root, data, target, sur = setup
    monkeypatch.setattr("auditor.attacks.base.GradientAttack.surrogate_grad", fault)
    r = CliRunner().invoke(cli, _scan_args(root, data, target, sur, f"oom-{fault.__name__}"))
    assert r.exit_code == 4, r.output
    assert r.output.strip().splitlines()[-1].startswith("error: out of memory")
    assert "Traceback" not in r.output


def test_cuda_requested_but_absent_exits_4(setup, monkeypatch):
    root, data, target, sur = setup
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = CliRunner().invoke(cli, _scan_args(root, data, target, sur, "nocuda", "--device", "cuda"))
    assert r.exit_code == 4 and "cuda" in r.output.lower(), r.output


def test_internal_bug_exits_5_with_one_line(setup, monkeypatch):
    root, data, target, sur = setup

    def bug(*args, **kwargs):
        return {}["no such key"]

    monkeypatch.setattr(auditor.scan.evaluate, "compute_attack_rates", bug)
    r = CliRunner().invoke(cli, _scan_args(root, data, target, sur, "bug"))
    assert r.exit_code == 5, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("internal error: KeyError") and "--debug" in last and "Traceback" not in r.output


# ----------------------------------------------------------------------------- real processes
def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "XRAY_AUDIT_CACHE": "/nonexistent"}


#: runs the CLI after replacing one function by a bug (the process is otherwise the real console entry)
BUGGY_MAIN = (
    "import sys, auditor.scan.evaluate\n"
    "def bug(*a, **k):\n    return {}['no such key']\n"
    "auditor.scan.evaluate.compute_attack_rates = bug\n"
    "from auditor.cli import main\nsys.argv[0] = 'xray-audit'\nmain()\n"
)


def test_debug_shows_the_traceback_and_keeps_the_exit_code(setup):
    root, data, target, sur = setup
    debug = subprocess.run(
        [sys.executable, "-c", BUGGY_MAIN, "--debug", *_scan_args(root, data, target, sur, "dbg1")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert debug.returncode == 5, debug.stderr
    assert "Traceback (most recent call last)" in debug.stderr and "in bug" in debug.stderr
    assert "KeyError: 'no such key'" in debug.stderr


def test_debug_on_an_audit_error_keeps_its_code(setup):
    root, data, target, sur = setup
    args = ["scan", str(target), "--data", str(root / "nowhere"), "--out", str(root / "dbg2"), "-q"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 3 and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["--debug", *args])
    assert r.exit_code == 3, r.output  # not 1 ("a gate failed"), as an escaping exception would give
    assert "Traceback (most recent call last)" in r.output and "DataError" in r.output


def test_sigint_during_the_attack_exits_130_and_keeps_finished_batches(setup, tmp_path):
    root, _, target, sur = setup
    data = write_image_folder(tmp_path / "data", n_per_class=20, size=32)
    cache = tmp_path / "cache"
    args = [
        sys.executable,
        "-m",
        "auditor",
        "scan",
        str(target),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "out"),
        "--surrogate",
        str(sur),
        "--attacks",
        "usmm,stm",
        "--eps",
        "4,8,16",
        "--attack-batch-size",
        "1",
        "--no-detector",
        "--cache-dir",
        str(cache),
        "--n-boot",
        "0",
        "-q",
        "--format",
        "json",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), preexec_fn=_default_sigint
    )
    try:
        deadline = time.monotonic() + 240
        while not list(cache.glob("*/batches/*.json")):  # wait until real work has been done
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no attack batch finished within 240 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.json").exists()  # no half report
    markers = list(cache.glob("*/batches/*.json"))
    assert markers and not list(cache.glob("**/.tmp-*"))  # finished batches kept, no half-written file
    for m in markers:  # every kept batch has its PNGs
        import json

        files = json.loads(m.read_text())["files"]
        assert all((m.parent.parent / f).is_file() for f in files)
