"""Clean stderr: library warnings, log records and C-level messages become notes in results.json."""

from __future__ import annotations

import logging
import os
import warnings

from auditor.capture import capture_library_output
from tests.hostile.helpers import assert_outcome, invoke, load_json, scan_args


def test_capture_collects_warnings_logs_and_fd2(capfd):
    with capture_library_output() as notes:
        warnings.warn("pixel data looks odd", UserWarning)
        logging.getLogger("pydicom").warning("invalid value for VR DS")
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
    captured = capfd.readouterr()
    assert "pixel data" not in captured.err and "libpng" not in captured.err and "VR DS" not in captured.err
    text = "\n".join(notes)
    assert "UserWarning: pixel data looks odd" in text
    assert "pydicom: invalid value for VR DS" in text
    assert "libpng warning: iCCP" in text


def test_capture_show_lets_everything_through(capfd):
    with capture_library_output(show=True) as notes:
        os.write(2, b"libpng warning: shown\n")
    assert notes == [] and "libpng warning: shown" in capfd.readouterr().err


def test_capture_restores_fd2_after_an_exception(capfd):
    try:
        with capture_library_output():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    os.write(2, b"after\n")
    assert "after" in capfd.readouterr().err


def _noisy_reader(monkeypatch):
    import auditor.data.decode as decode

    real = decode._read_raster

    def noisy(path):
        warnings.warn(f"Possibly corrupt EXIF data in {path.name}", UserWarning)
        os.write(2, b"libpng warning: bad adaptive filter value\n")
        return real(path)

    monkeypatch.setattr(decode, "_read_raster", noisy)


def test_scan_records_library_warnings_as_notes(hostile_base, tmp_path, monkeypatch, capfd):
    _noisy_reader(monkeypatch)
    out = tmp_path / "out"
    r = invoke(*scan_args(hostile_base["model"], hostile_base["data"], out))
    assert_outcome(r, 0)
    assert "EXIF" not in r.stderr and "libpng" not in r.stderr and "libpng" not in capfd.readouterr().err
    notes = load_json(out / "results.json")["extras"]["notes"]
    assert any("Possibly corrupt EXIF" in n for n in notes) and any("libpng warning" in n for n in notes)


def test_debug_shows_library_warnings(hostile_base, tmp_path, monkeypatch, capfd):
    _noisy_reader(monkeypatch)
    out = tmp_path / "out"
    r = invoke("--debug", *scan_args(hostile_base["model"], hostile_base["data"], out))
    assert r.exit_code == 0
    assert "libpng warning" in capfd.readouterr().err
    assert "notes" not in load_json(out / "results.json")["extras"]
