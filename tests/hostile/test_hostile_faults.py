"""Faults: Ctrl-C and kill -9 during the attack stage, a full disk on --out and on the cache, a failing renderer."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostile.helpers import (
    assert_outcome,
    invoke,
    load_json,
    previous_outputs,
    run_and_check,
    scan_args,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[2]


def _default_sigint() -> None:
    """In the child: SIGINT back to its default, so Ctrl-C semantics hold even when the test runner itself
    was started with SIGINT ignored (a shell's background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def attack_setup(scan_setup):
    s = scan_setup("faults", n_per_class=3, size=40, channels=3)
    return {"root": s.root, "model": s.target, "data": s.data, "surrogate": s.surrogate, "setup": s}


def _attack_args(s, out: Path, cache: Path) -> list[str]:
    extra = ["--attacks", "mifgsm", "--eps", "8", "--attack-batch-size", "1", "--no-detector", "--no-progress"]
    return s["setup"].args(out, *extra, cache=cache, formats="json,csv")


def _comparable(doc: dict) -> list:
    return [(c["name"], c["metrics"], c["predictions"]) for c in doc["conditions"]]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "XRAY_AUDIT_CACHE": "/nonexistent"}


@pytest.fixture(scope="module")
def reference_run(attack_setup):
    """The uninterrupted scan (in-process) the resumed runs must reproduce exactly."""
    out = attack_setup["root"] / "ref_out"
    r = invoke(*_attack_args(attack_setup, out, attack_setup["root"] / "ref_cache"))
    assert r.exit_code == 0, r.stderr
    return load_json(out / "results.json")


@pytest.mark.heavy
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "kill-9"])
def test_interrupted_attack_resumes_with_identical_results(sig, attack_setup, reference_run, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    before = previous_outputs(out)
    args = [sys.executable, "-m", "auditor", *_attack_args(attack_setup, out, cache)[1:]]
    args.insert(3, "scan")
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any(cache.glob("*/batches/*.json")):
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        proc.communicate()
        pytest.skip("the attack stage finished before the signal could be sent (machine too fast for this set)")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("interrupted:") and "Traceback" not in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert snapshot(out) == before, "an interrupted run changed the earlier outputs"
    assert not any((cache).glob("*/index.json")), "the set was finished before the signal"
    # resume (in-process): identical figures, earlier outputs replaced in one piece
    r = invoke(*_attack_args(attack_setup, out, cache))
    assert_outcome(r, 0)
    resumed = load_json(out / "results.json")
    assert _comparable(resumed) == _comparable(reference_run)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".xray-audit-partial-")] == []


# --------------------------------------------------------------------------- full disk (tmpfs)


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A 2 MB tmpfs, mounted for the test; skipped (with the reason) where mounting is not allowed."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8); not available here")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()[:120]}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path, leave: int = 0) -> None:
    """Fill the file system of ``folder`` until at most ``leave`` bytes remain."""
    with open(folder / "filler.bin", "wb") as fh:
        try:
            while True:
                st = os.statvfs(folder)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                fh.write(b"\0" * min(65536, max(1, free - leave)))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.mark.parametrize("where", ["out_beside", "out_is_mount"])
def test_full_disk_on_out_is_exit_4_and_keeps_earlier_outputs(where, small_tmpfs, hostile_base, tmp_path):
    out = small_tmpfs / "out" if where == "out_beside" else small_tmpfs
    before = previous_outputs(out)
    _fill(small_tmpfs, leave=4096)
    before = snapshot(out)
    r = invoke(*scan_args(hostile_base["model"], hostile_base["data"], out, "--format", "json,csv,html"))
    assert_outcome(r, 4)
    assert snapshot(out) == before
    assert not [p for p in small_tmpfs.rglob(".xray-audit-partial-*")]


def test_full_disk_on_cache_is_exit_4(small_tmpfs, attack_setup, tmp_path):
    _fill(small_tmpfs)
    out = tmp_path / "out"
    run_and_check(out, _attack_args(attack_setup, out, small_tmpfs / "cache"), 4)


# --------------------------------------------------------------------------- failures while writing


def test_renderer_failure_keeps_earlier_outputs_and_never_mixes(hostile_base, tmp_path, monkeypatch):
    """The HTML renderer fails after results.json and samples.csv were rendered: nothing of the run lands."""
    from auditor.report import html as html_mod

    def disk_full(self, result):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(html_mod.HtmlRenderer, "render", disk_full)
    out = tmp_path / "out"
    run_and_check(out, scan_args(hostile_base["model"], hostile_base["data"], out, "--format", "json,csv,html"), 4)


def test_successful_run_replaces_the_whole_set(hostile_base, tmp_path):
    """A run writing only json removes the earlier run's CSV and HTML: no mix of two runs."""
    out = tmp_path / "out"
    run_and_check(out, scan_args(hostile_base["model"], hostile_base["data"], out, "--format", "json"), 0)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "results.json"]


def test_leftover_staging_folder_of_a_dead_run_is_removed(hostile_base, tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".xray-audit-partial-out-{dead.pid}-abc"
    stale.mkdir()
    (stale / "results.json").write_text("half")
    run_and_check(out, scan_args(hostile_base["model"], hostile_base["data"], out), 0)
    assert not stale.exists()


def test_interrupt_while_writing_keeps_earlier_outputs(hostile_base, tmp_path, monkeypatch):
    from auditor.report import csvfmt

    def interrupted(self, result):
        raise KeyboardInterrupt

    monkeypatch.setattr(csvfmt.CsvRenderer, "render", interrupted)
    out = tmp_path / "out"
    before = previous_outputs(out)
    r = invoke(*scan_args(hostile_base["model"], hostile_base["data"], out))
    assert r.exit_code == 130 and "Traceback" not in r.stderr
    assert snapshot(out) == before


def test_console_only_run_leaves_earlier_files_alone(hostile_base, tmp_path):
    out = tmp_path / "out"
    before = previous_outputs(out)
    assert_outcome(invoke(*scan_args(hostile_base["model"], hostile_base["data"], out, "--format", "console")), 0)
    assert snapshot(out) == before
