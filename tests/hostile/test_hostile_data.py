"""Hostile data sets: every case ends with its documented exit code, one clean line, nothing lost."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.helpers import load_json, png_bytes, run_and_check, scan_args

GOOD = np.full((40, 40), 128, np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` (a decompression bomb's header) and no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _cmyk_jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("CMYK", (40, 40), (10, 20, 30, 40)).save(buf, format="JPEG")
    return buf.getvalue()


def _palette_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (90, 120, 150)).convert("P", palette=Image.Palette.ADAPTIVE).save(buf, format="PNG")
    return buf.getvalue()


HOSTILE_FILES = {
    "corrupt": ("junk.png", lambda: b"this is not an image"),
    "truncated": ("cut.png", lambda: png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))[:120]),
    "zero_byte": ("empty.png", lambda: b""),
    "bomb_header": ("bomb.png", lambda: _png_header_only(100_000, 100_000)),
    "one_pixel": ("tiny.png", lambda: png_bytes(np.zeros((1, 1), np.uint8))),
    "malformed_dicom": ("scan.dcm", lambda: b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage"),
    "dicom_magic_no_suffix": ("noext", lambda: b"\x00" * 128 + b"DICM" + os.urandom(64)),
    "html_name": ("<img src=x onerror=alert(1)>.png", lambda: png_bytes(GOOD)),
    "unicode_name": ("r\u00f6ntgen \u2014 \u80f8\u90e8.png", lambda: png_bytes(GOOD)),
    "formula_name": ("=HYPERLINK(evil).png", lambda: png_bytes(GOOD)),
    "newline_name": ("line\nbreak.png", lambda: png_bytes(GOOD)),
    "sixteen_bit": ("deep.png", lambda: png_bytes(np.full((40, 40), 40000, np.uint16))),
    "rgba": ("alpha.png", lambda: png_bytes(np.full((40, 40, 4), 200, np.uint8), mode="RGBA")),
    "palette": ("pal.png", lambda: _palette_png()),
    "cmyk": ("cmyk.jpg", _cmyk_jpeg),
    "tiff_float": (
        "float.tif",
        lambda: png_bytes(np.linspace(0, 1, 1600, dtype=np.float32).reshape(40, 40), fmt="TIFF"),
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_hostile_file_beside_good_images(case, model, data, tmp_path):
    """One odd file among good images: exit 0, the file is read or listed as skipped, never a crash."""
    name, make = HOSTILE_FILES[case]
    (data / "normal" / name).write_bytes(make())
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 0)
    doc = load_json(out / "results.json")
    seen = {s["path"] for s in doc["samples"]} | {s["name"] for s in doc["data"]["skipped"]}
    assert any(name in p for p in seen), f"{name} neither scanned nor listed as skipped"


def test_only_unreadable_images_is_invalid_data(model, tmp_path):
    data = tmp_path / "bad"
    for c in ("normal", "pneumonia"):
        (data / c).mkdir(parents=True)
        (data / c / "x.png").write_bytes(b"junk")
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 3)


@pytest.mark.parametrize("layout", ["missing", "no_class_folders", "empty_class_folders", "file_not_folder"])
def test_unusable_data_paths(layout, model, tmp_path):
    data = tmp_path / "d"
    if layout == "no_class_folders":
        data.mkdir()
        (data / "a.png").write_bytes(png_bytes(GOOD))
    elif layout == "empty_class_folders":
        (data / "normal").mkdir(parents=True)
    elif layout == "file_not_folder":
        data.write_bytes(b"\x00\x01binary")
    out = tmp_path / "out"
    run_and_check(
        out, scan_args(model, data, out, "--data-format", "folder" if layout == "file_not_folder" else "auto"), 3
    )


def test_labels_matching_no_class(model, tmp_path):
    from onnx_factory import write_image_folder

    data = write_image_folder(tmp_path / "pets", classes=("cat", "dog", "bird"), n_per_class=1)
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 3)


def test_symlink_loop_is_skipped(model, data, tmp_path):
    (data / "normal" / "loop").symlink_to(data / "normal", target_is_directory=True)
    (data / "normal" / "self.png").symlink_to(data / "normal" / "self.png")
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 0)


def test_broken_symlink_is_skipped(model, data, tmp_path):
    (data / "pneumonia" / "gone.png").symlink_to(tmp_path / "does-not-exist.png")
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 0)


def _manifest(tmp_path, rows: list[str], header: str = "path,label,patient_id") -> Path:
    from onnx_factory import write_image_folder

    root = write_image_folder(tmp_path / "imgs", n_per_class=2)
    csv_path = root / "manifest.csv"
    csv_path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return csv_path


GOOD_ROWS = [
    "normal/img_000.png,normal,P1",
    "pneumonia/img_002.png,pneumonia,P2",
    "pneumothorax/img_004.png,pneumothorax,P3",
]


@pytest.mark.parametrize(
    "rows, header, code",
    [
        (GOOD_ROWS + ["../../../../etc/passwd,normal,P9"], "path,label,patient_id", 0),
        (GOOD_ROWS + ["/etc/hostname,normal,P9"], "path,label,patient_id", 0),
        (GOOD_ROWS + ["nowhere.png,normal,P9"], "path,label,patient_id", 0),
        (GOOD_ROWS + [",normal,P9", "normal/img_001.png,,P9"], "path,label,patient_id", 0),
        (GOOD_ROWS, "file,diagnosis", 3),
        ([], "path,label", 3),
        (GOOD_ROWS + ['"normal/img_001.png",normal,"=cmd|\' /C calc\'!A0"'], "path,label,patient_id", 0),
    ],
    ids=["traversal", "absolute", "missing-file", "empty-cells", "wrong-columns", "no-rows", "formula-patient-id"],
)
def test_hostile_manifests(rows, header, code, model, tmp_path):
    manifest = _manifest(tmp_path, rows, header)
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, manifest, out), code)


def test_manifest_not_utf8(model, tmp_path):
    manifest = _manifest(tmp_path, GOOD_ROWS)
    manifest.write_bytes(manifest.read_bytes() + b"\xff\xfe\xfa,normal,P1\n")
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, manifest, out), 3)


def test_samples_csv_neutralises_formulas(model, tmp_path):
    """OWASP CSV injection: a formula-like cell gets a leading apostrophe; numbers stay numbers."""
    import csv

    rows = [
        'normal/img_000.png,normal,=HYPERLINK("http://x")',
        "pneumonia/img_002.png,pneumonia,-1.5",
        "pneumothorax/img_004.png,pneumothorax,@SUM(A1)",
        "normal/img_001.png,normal,+cmd",
    ]
    manifest = _manifest(tmp_path, rows)
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, manifest, out), 0)
    cells = {r["patient_id"] for r in csv.DictReader((out / "samples.csv").open(encoding="utf-8"))}
    assert cells == {'\'=HYPERLINK("http://x")', "-1.5", "'@SUM(A1)", "'+cmd"}


@pytest.mark.parametrize("readable", [True, False])
def test_file_name_that_is_not_utf8(readable, model, data, tmp_path):
    """A file name whose bytes are not UTF-8 (Linux allows any bytes): the image is scored, or listed as
    skipped, under its name with ``\\xNN`` escapes, and every report is written (it was exit 5 when the
    manifest hash, then the CSV writer, met the undecodable name)."""
    raw = os.path.join(os.fsencode(data / "normal"), b"bad\xff\xfename.png")
    try:
        with open(raw, "wb") as fh:
            fh.write(png_bytes(GOOD) if readable else b"not an image")
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out, "--format", "json,csv,html"), 0)
    doc = load_json(out / "results.json")
    names = [s["path"] for s in doc["samples"]] if readable else [s["name"] for s in doc["data"]["skipped"]]
    assert any(n.endswith("bad\\xff\\xfename.png") for n in names), names
    assert "bad\\xff\\xfename.png" in (out / "samples.csv").read_text(encoding="utf-8") or not readable
