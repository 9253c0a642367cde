"""jemalloc re-exec of the CLI: when it happens, when it must not, and that results.json records it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.allocator import DEFAULT_MALLOC_CONF, OPT_OUT, TRIED, find_jemalloc, reexec_plan

ROOT = Path(__file__).resolve().parents[1]
LIB = "/usr/lib/libjemalloc.so.2"


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "m.onnx", "--data", "d"],
        ["--debug", "attack", "--data", "d"],
        ["train", "reference", "--data", "d", "--out", "o"],
        ["demo"],
    ],
)
def test_torch_commands_reexec_with_jemalloc(args):
    env = reexec_plan(args, {"PATH": "/bin"}, LIB, loaded=False)
    assert env is not None and env["LD_PRELOAD"] == LIB and env[TRIED] == "1" and env["PATH"] == "/bin"
    assert env["MALLOC_CONF"] == DEFAULT_MALLOC_CONF


def test_user_malloc_conf_wins():
    assert reexec_plan(["scan"], {"MALLOC_CONF": "narenas:1"}, LIB, loaded=False)["MALLOC_CONF"] == "narenas:1"


def test_existing_preload_is_kept():
    env = reexec_plan(["scan"], {"LD_PRELOAD": "/x/libfoo.so"}, LIB, loaded=False)
    assert env["LD_PRELOAD"] == f"{LIB}:/x/libfoo.so"


@pytest.mark.parametrize(
    "args,environ,lib,loaded",
    [
        (["--help"], {}, LIB, False),
        (["scan", "--help"], {}, LIB, False),
        (["--version"], {}, LIB, False),
        ([], {}, LIB, False),
        (["inspect", "m.onnx"], {}, LIB, False),  # no torch work
        (["report", "results.json"], {}, LIB, False),
        (["scan", "m.onnx"], {}, None, False),  # not installed
        (["scan", "m.onnx"], {}, LIB, True),  # already loaded
        (["scan", "m.onnx"], {OPT_OUT: "0"}, LIB, False),  # opted out
        (["scan", "m.onnx"], {TRIED: "1"}, LIB, False),  # never loops
    ],
)
def test_no_reexec(args, environ, lib, loaded):
    assert reexec_plan(args, environ, lib, loaded) is None


def _scan_env(tmp_path, extra_env):
    from onnx_factory import make_classifier, write_image_folder

    data = write_image_folder(tmp_path / "data", n_per_class=2, size=16)
    model = make_classifier(
        tmp_path / "m.onnx", channels=1, size=16, class_names=["normal", "pneumonia", "pneumothorax"]
    )
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", TRIED, OPT_OUT)}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", **extra_env)
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "auditor",
            "scan",
            str(model),
            "--data",
            str(data),
            "--out",
            str(out),
            "--format",
            "json",
            "--n-boot",
            "10",
            "-q",
        ],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads((out / "results.json").read_text())["environment"]["allocator"]


@pytest.mark.skipif(find_jemalloc() is None, reason="libjemalloc.so.2 is not installed (apt-get install libjemalloc2)")
def test_scan_runs_under_jemalloc_and_records_it(tmp_path):
    assert _scan_env(tmp_path, {}) == f"jemalloc (MALLOC_CONF={DEFAULT_MALLOC_CONF})"


def test_opt_out_records_the_system_allocator(tmp_path):
    assert _scan_env(tmp_path, {OPT_OUT: "0"}) == "system malloc"
