"""Many skipped files: bounded stderr (``-q`` is quiet), bounded results.json that ``report`` reads back,
and memory that does not grow with the number of files listed; untrusted names never steer a terminal."""

from __future__ import annotations

import csv
import tracemalloc

import numpy as np
import pytest

from auditor.data import open_dataset
from auditor.data import skips as skips_mod
from auditor.data.skips import OTHER_REASONS, SkipLog
from auditor.types import Skipped
from tests.hostile.helpers import invoke, load_json, png_bytes, run_and_check, scan_args, stderr_lines


def _verbose(args):
    """Run a scan without ``-q`` (status lines on stderr): exit 0 and no traceback."""
    r = invoke(*[a for a in args if a != "-q"])
    assert r.exit_code == 0 and r.exception is None and "Traceback" not in r.stderr, r.stderr
    return r


N_MISSING = 3000


def _manifest(data, path, n_missing: int, name=lambda i: f"missing/{i:07d}.png"):
    """A CSV manifest listing the data folder's images and ``n_missing`` files that do not exist."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for p in sorted(data.rglob("*.png")):
            w.writerow([p.relative_to(data).as_posix(), p.parent.name])
        for i in range(n_missing):
            w.writerow([name(i), "normal"])
    return path


@pytest.fixture()
def big_manifest(data):
    return _manifest(data, data / "manifest.csv", N_MISSING)


def test_quiet_scan_with_thousands_of_skips_prints_one_summary_line(model, big_manifest, tmp_path, monkeypatch):
    monkeypatch.setattr(skips_mod, "MAX_SKIP_EXAMPLES", 100)
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, big_manifest, out), 0)
    skip_lines = [ln for ln in stderr_lines(r) if "skipped" in ln]
    assert len(skip_lines) == 1 and f"{N_MISSING} file(s) skipped" in skip_lines[0]
    assert "file listed in the manifest does not exist" in skip_lines[0]
    data_doc = load_json(out / "results.json")["data"]
    assert data_doc["skipped_total"] == N_MISSING
    assert data_doc["skipped_by_reason"] == {"file listed in the manifest does not exist": N_MISSING}
    assert len(data_doc["skipped"]) == 101 and f"{N_MISSING - 100} more" in data_doc["skipped"][-1]["name"]
    r2 = invoke("report", out / "results.json", "--out", tmp_path / "again", "--format", "json,csv,html")
    assert r2.exit_code == 0, r2.stderr


def test_verbose_scan_shows_the_first_skips_then_the_totals(model, big_manifest, tmp_path):
    out = tmp_path / "out"
    r = _verbose(scan_args(model, big_manifest, out))
    warn = [ln for ln in stderr_lines(r) if ln.startswith("warning:") and "skipped" in ln]
    assert len(warn) == skips_mod.MAX_SKIP_LINES + 1
    assert f"{N_MISSING} file(s) skipped, {skips_mod.MAX_SKIP_LINES} shown above" in warn[-1]


def test_skip_log_memory_is_bounded():
    log = SkipLog(limit=10)
    for i in range(50_000):
        log.append(Skipped(f"f{i}.png", f"image is {i}x{i}, too small", "image"))
    assert log.total == 50_000 and len(log) == 10 and log.omitted == 49_990
    assert len(log.by_reason) == skips_mod.MAX_SKIP_REASONS + 1 and OTHER_REASONS in log.by_reason
    merged = SkipLog(log, limit=10)
    merged.extend([Skipped("x", "y", "image")])
    assert merged.total == 50_001 and len(merged) == 10


def _indexing_peak(data, tmp_path, n: int) -> int:
    manifest = _manifest(data, tmp_path / f"m{n}.csv", n)
    tracemalloc.start()
    try:
        ds = open_dataset(manifest, images_dir=data)
        assert ds.skipped.total == n
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_indexing_memory_does_not_grow_with_the_missing_files(data, tmp_path):
    """Ten times more missing files listed: the indexing peak stays about the same (it grew linearly before)."""
    small, big = _indexing_peak(data, tmp_path, 2_000), _indexing_peak(data, tmp_path, 20_000)
    assert big < 1.5 * small + 200_000, (small, big)


# ------------------------------------------------------------------ untrusted text on a terminal and in a CSV
SPOOF = "\x1b[2J\x1b[1;1Hall gates passed\x07"


def test_ansi_and_line_breaks_in_file_names_never_reach_stderr_or_csv(model, data, tmp_path):
    (data / "normal" / f"{SPOOF}.png").write_bytes(b"not an image")  # skipped: its name goes to stderr
    (data / "pneumonia" / f"ok{SPOOF}.png").write_bytes(png_bytes(np.full((40, 40), 90, np.uint8)))
    (data / "normal" / "x.png\nall gates passed.png").write_bytes(b"junk")
    out = tmp_path / "out"
    r = _verbose(scan_args(model, data, out))
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert not any(ln.startswith("all gates passed") for ln in r.stderr.splitlines())
    assert "\\x1b[2J" in r.stderr  # shown, escaped
    csv_text = (out / "samples.csv").read_text(encoding="utf-8")
    assert "\x1b" not in csv_text and "\x07" not in csv_text and "ok\\x1b[2J" in csv_text
    doc = load_json(out / "results.json")
    assert all("\x1b" not in s["path"] for s in doc["samples"])
    assert all("\x1b" not in s["name"] for s in doc["data"]["skipped"])


def test_ansi_in_manifest_paths_and_labels_is_escaped(model, data, tmp_path):
    manifest = _manifest(data, data / "m.csv", 3, name=lambda i: f"{SPOOF}{i}.png")
    out = tmp_path / "out"
    r = _verbose(scan_args(model, manifest, out))
    assert "\x1b" not in r.stderr and "\\x1b" in r.stderr


def test_bidi_override_in_a_name_is_escaped(data):
    (data / "normal" / "scan\u202egnp.png").write_bytes(png_bytes(np.full((40, 40), 90, np.uint8)))
    names = list(open_dataset(data).samples.names)
    assert "normal/scan\\u202egnp.png" in names and not any("\u202e" in n for n in names)


def test_ansi_in_model_class_names_never_reaches_stderr_or_csv(data, tmp_path):
    from tests.hostile.helpers import tiny_model

    model = tiny_model(tmp_path / "m.onnx", class_names=("normal", "pneumonia", "pneumo\x1b[2Jthorax"))
    r = invoke("inspect", model)
    assert r.exit_code == 0 and "\x1b" not in r.output and "pneumo\\x1b[2Jthorax" in r.output
    out = tmp_path / "out"
    r = _verbose(scan_args(model, data, out, "--label-map", "pneumothorax=pneumo\\x1b[2Jthorax"))
    assert "\x1b" not in r.stderr and "\x1b" not in r.output
    csv_text = (out / "samples.csv").read_text(encoding="utf-8")
    assert "\x1b" not in csv_text and "pneumo\\x1b[2Jthorax" in csv_text
