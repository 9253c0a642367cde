"""Round 3 of bad flags: seeds, tiny budgets, Ray addresses, label maps and unwritable folders are refused
before any data is read (exit 2 for a bad value, exit 4 for a problem of this machine)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest

from auditor.cli import options as cli_options
from auditor.condition_ids import eps_name
from tests.hostile.helpers import assert_outcome, invoke, run_and_check, scan_args

EARLY_BAD_FLAGS = {
    "seed_negative": ["--seed", "-1"],
    "seed_huge": ["--seed", str(2**70)],
    "eps_below_half_level": ["--eps", "0.3/255"],
    "eps_denormal": ["--eps", "1e-300"],
    "eps_tiny_fraction": ["--eps", "0.001"],
    "ray_garbage": ["--ray-address", "garbage"],
    "ray_http": ["--ray-address", "http://127.0.0.1:8265"],
    "ray_bad_port": ["--ray-address", "127.0.0.1:99999"],
    "label_map_twice": ["--label-map", "normal=normal,NORMAL=pneumonia"],
    "label_map_unknown_target": ["--label-map", "normal=martian"],
    "label_map_not_utf8": ["--label-map", "caf\udce9=normal"],
}


@pytest.mark.parametrize("case", sorted(EARLY_BAD_FLAGS))
def test_bad_flag_is_refused_before_the_data_is_read(case, model, tmp_path):
    """The data path does not exist (that would be exit 3): exit 2 proves the flag was checked first."""
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, tmp_path / "no-data", out, *EARLY_BAD_FLAGS[case]), 2)
    assert "no-data" not in r.stderr


def test_bad_flag_on_real_data_is_still_exit_2(model, data, tmp_path):
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, data, out, "--label-map", "normal=martian"), 2)
    assert "martian" in r.stderr and "pneumothorax" in r.stderr


def test_label_map_to_drop_and_to_a_class_in_another_case_still_work(model, data, tmp_path):
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out, "--label-map", "normal=NORMAL,pneumothorax=-"), 0)


def test_half_a_grey_level_is_accepted_and_named_without_rounding_to_zero():
    assert cli_options.parse_epsilons("0.5/255") == (0.5 / 255,)
    assert eps_name(1e-300) != "0" and float(eps_name(1e-300)) > 0
    assert eps_name(0.3 / 255) == "0.30" and eps_name(0.001 / 255) == "0.001"


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


def test_unreachable_ray_address_is_exit_4_before_the_data(model, tmp_path):
    out = tmp_path / "out"
    r = run_and_check(
        out, scan_args(model, tmp_path / "no-data", out, "--ray-address", f"127.0.0.1:{_closed_port()}"), 4
    )
    assert "did not accept a Ray connection" in r.stderr


@contextlib.contextmanager
def _server(reply: bytes | None):
    """A local TCP server that accepts and then sends ``reply`` (None: stays silent, like a hung host)."""
    import socket
    import threading

    srv = socket.create_server(("127.0.0.1", 0))
    conns = []

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        conns.append(conn)
        if reply is not None:
            conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
        for c in conns:
            c.close()


def test_ray_address_that_never_answers_times_out(model, tmp_path, monkeypatch):
    """A host that accepts and then says nothing: bounded by the timeout (exit 4), never a hang."""
    monkeypatch.setattr(cli_options, "RAY_CONNECT_TIMEOUT", 0.3)
    out = tmp_path / "out"
    with _server(None) as port:
        r = run_and_check(out, scan_args(model, tmp_path / "no-data", out, "--ray-address", f"127.0.0.1:{port}"), 4)
    assert "within 0.3 s (timed out)" in r.stderr


def test_ray_address_of_another_service_is_exit_4(model, tmp_path):
    out = tmp_path / "out"
    with _server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        r = run_and_check(
            out, scan_args(model, tmp_path / "no-data", out, "--ray-address", f"ray://127.0.0.1:{port}"), 4
        )
    assert "not as a Ray cluster" in r.stderr


def test_ray_probe_accepts_a_grpc_server():
    """What a Ray GCS answers first (an HTTP/2 SETTINGS frame, as measured on Ray 2.x) passes the probe."""
    with _server(bytes.fromhex("000018040000000000")) as port:
        assert cli_options.check_ray_address(f"127.0.0.1:{port}", timeout=5) == f"127.0.0.1:{port}"


def test_ray_auto_without_a_cluster_is_exit_4(model, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, tmp_path / "no-data", out, "--ray-address", "auto"), 4)
    assert "no running Ray cluster" in r.stderr


def _read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in: chmod 555 for a normal user; root needs a read-only mount."""
    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    for candidate in (Path("/sys/kernel"), Path("/proc/sys")):
        try:
            with tempfile.TemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    pytest.skip("running as root without a read-only mount to write into")


@pytest.mark.parametrize("flag", ["--out", "--cache-dir"])
def test_unwritable_output_folder_is_exit_4_before_the_data(flag, model, tmp_path):
    ro = _read_only_folder(tmp_path)
    out = tmp_path / "out"
    args = scan_args(model, tmp_path / "no-data", out, "--attacks", "blend")
    args[args.index("--out") + 1] = ro / "out" if flag == "--out" else out
    if flag == "--cache-dir":
        args += ["--cache-dir", ro / "cache"]
    r = invoke(*args)
    assert_outcome(r, 4)
    assert flag in r.stderr and "no-data" not in r.stderr


@pytest.mark.parametrize("where", ["out_in_class", "out_is_root", "cache_in_class", "out_linked_into_data"])
def test_output_folders_inside_the_data_folder_are_refused(where, model, data, tmp_path):
    """A later scan would count the cached adversarial PNGs (or report plots) as clean images of that class."""
    out = tmp_path / "out"
    args = scan_args(model, data, out, "--attacks", "blend", "--cache-dir", tmp_path / "cache")
    if where == "out_in_class":
        args[args.index("--out") + 1] = data / "normal" / "audit"
    elif where == "out_is_root":
        args[args.index("--out") + 1] = data
    elif where == "cache_in_class":
        args[args.index("--cache-dir") + 1] = data / "pneumonia" / "cache"
    else:
        (tmp_path / "link").symlink_to(data / "normal")
        args[args.index("--out") + 1] = tmp_path / "link" / "out"
    before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
    r = invoke(*args)
    assert_outcome(r, 2)
    assert "inside the data folder" in r.stderr
    assert sorted(p.relative_to(data).as_posix() for p in data.rglob("*")) == before


def test_outputs_beside_a_csv_manifest_are_allowed(model, data, tmp_path):
    manifest = data / "manifest.csv"
    rows = [f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = data / "out"
    run_and_check(out, scan_args(model, manifest, out), 0)
