"""DICOM files a real archive holds, broken in the ways archives break them: each is a per-file skip with
its reason (never a scan abort), pixel limits come from the headers before decoding, and a decoded frame
that cannot be a radiograph is refused rather than scored. Ends with a Hypothesis strategy over
photometric interpretations, lookup tables, windows, bit depths and transfer syntaxes."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.data import ImageReadError
from auditor.data import dicom as dicom_mod
from auditor.data.dicom_header import MAX_FRAMES
from tests.hostile import dicom_factory as dcm
from tests.hostile.helpers import load_json, run_and_check, scan_args

pytest.importorskip("pydicom", reason="pydicom is not installed")

RNG = np.random.default_rng(25)
GREY8 = RNG.integers(0, 256, (40, 40)).astype(np.uint8)
GREY12 = RNG.integers(0, 4096, (40, 40)).astype(np.uint16)


def _window(width):
    ds = dcm.dataset(GREY12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2048, width
    return ds


#: name -> (dataset builder, words the skip reason must hold)
BROKEN = {
    "palette_0_bits": (lambda: dcm.palette(dcm.dataset(GREY8, "PALETTE COLOR"), bits=0), "0 bits"),
    "palette_no_green": (lambda: dcm.palette(dcm.dataset(GREY8, "PALETTE COLOR"), drop="Green"), "no Green"),
    "palette_too_short": (lambda: dcm.palette(dcm.dataset(GREY8, "PALETTE COLOR"), short="Blue"), "10 entries"),
    "window_width_0": (lambda: _window(0), "Window Width"),
    "window_width_negative": (lambda: _window(-5), "Window Width"),
    "constant_jpeg": (lambda: dcm.jpeg(np.zeros((40, 40), np.uint8)), "constant"),
    "jpeg_sof_60000": (lambda: dcm.jpeg(GREY8, sof_size=(60000, 60000)), "60000x60000"),
    "jpeg_cut": (lambda: dcm.jpeg(GREY8, cut=True), "truncated"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_dicom_is_refused_with_its_reason(case, tmp_path):
    make, needle = BROKEN[case]
    path = dcm.write(make(), tmp_path / f"{case}.dcm")
    with pytest.raises(ImageReadError) as err:
        dicom_mod.read_dicom(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_jpeg_frame_header_is_checked_before_decoding(tmp_path, monkeypatch):
    """60000 x 60000 in the SOF of a 40 x 40 DICOM: refused without calling any decoder."""

    def no_decoding(*a, **k):
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(dicom_mod, "_decode", no_decoding)
    path = dcm.write(dcm.jpeg(GREY8, sof_size=(60000, 60000)), tmp_path / "bomb.dcm")
    with pytest.raises(ImageReadError, match="SOF"):
        dicom_mod.read_dicom(path)


def test_jpeg_frame_header_above_the_pixel_limit(tmp_path, monkeypatch):
    """A frame header agreeing with the DICOM header is still held to the pixel limit, before decoding."""
    import auditor.data.limits as limits

    monkeypatch.setattr(limits, "MAX_PIXELS", 1000)
    monkeypatch.setattr(dicom_mod, "_check_shape", lambda ds: 1)  # as if Rows/Columns were under the limit
    with pytest.raises(ImageReadError, match="above the limit of 1000 pixels"):
        dicom_mod.read_dicom(dcm.write(dcm.jpeg(GREY8), tmp_path / "big.dcm"))


def test_frame_count_limit_comes_from_the_header(tmp_path):
    ds = dcm.dataset(GREY8)
    ds.NumberOfFrames = MAX_FRAMES + 1
    with pytest.raises(ImageReadError, match="frames, above the limit"):
        dicom_mod.read_dicom(dcm.write(ds, tmp_path / "frames.dcm"))


def test_constant_uncompressed_frame_is_flagged_not_scored_silently(tmp_path):
    """Stored uncompressed, a constant frame is what the file holds: kept, with a note in data.conversions."""
    got = dicom_mod.read_dicom(dcm.write(dcm.dataset(np.zeros((40, 40), np.uint8)), tmp_path / "black.dcm"))
    assert any(n.startswith("IMPLAUSIBLE") and "constant" in n for n in got.notes)
    windowed = _window(1)
    windowed.WindowCenter = -10_000  # every pixel above the window: one value after it
    got = dicom_mod.read_dicom(dcm.write(windowed, tmp_path / "windowed.dcm"))
    assert any(n.startswith("IMPLAUSIBLE") and "window" in n for n in got.notes)


def test_good_palette_and_jpeg_still_decode(tmp_path):
    for name, ds in {"pal": dcm.palette(dcm.dataset(GREY8, "PALETTE COLOR")), "jpg": dcm.jpeg(GREY8)}.items():
        img = dicom_mod.read_dicom(dcm.write(ds, tmp_path / f"{name}.dcm")).image
        assert img.shape == (40, 40) and img.max() > img.min()


def test_every_broken_dicom_in_one_archive_is_a_skip(model, data, tmp_path):
    """All the broken files beside good images: the scan finishes (exit 0) and lists each with its reason."""
    for case, (make, _) in BROKEN.items():
        dcm.write(make(), data / "normal" / f"{case}.dcm")
    dcm.write(dcm.jpeg(GREY8), data / "pneumonia" / "good.dcm")
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 0)
    doc = load_json(out / "results.json")
    skipped = {s["name"]: s["reason"] for s in doc["data"]["skipped"]}
    for case, (_, needle) in BROKEN.items():
        assert needle in skipped[f"normal/{case}.dcm"]
    assert any(s["path"].endswith("good.dcm") for s in doc["samples"])


# ------------------------------------------------------------------ property-based
hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

PHOTOMETRIC = ["MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB", "YBR_FULL", "YBR_FULL_422", "HSV"]
SYNTAXES = [dcm.EXPLICIT_LE, dcm.IMPLICIT_LE, dcm.EXPLICIT_BE, dcm.RLE, dcm.JPEG_BASELINE]


@st.composite
def dicom_datasets(draw):
    """A small DICOM dataset with a random photometric interpretation, bit depth, palette lookup tables,
    VOI window, rescale and transfer syntax; many are broken on purpose."""
    pi = draw(st.sampled_from(PHOTOMETRIC))
    colour = pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "HSV")
    wide = not colour and pi != "PALETTE COLOR" and draw(st.booleans())
    dtype = np.uint16 if wide else np.uint8
    bits = draw(st.integers(1, 16 if wide else 8))
    h, w = draw(st.integers(8, 20)), draw(st.integers(8, 20))
    shape = (h, w, 3) if colour else (h, w)
    seed = draw(st.integers(0, 2**16))
    if draw(st.integers(0, 5)) == 0:
        arr = np.full(shape, draw(st.integers(0, 2**bits - 1)), dtype)
    else:
        arr = np.random.default_rng(seed).integers(0, 2**bits, shape).astype(dtype)
    ds = dcm.dataset(arr, pi, bits)
    if pi == "PALETTE COLOR" or draw(st.integers(0, 9)) == 0:
        dcm.palette(
            ds,
            entries=draw(st.sampled_from([1, 10, 256, 65536])),
            bits=draw(st.sampled_from([0, 7, 8, 16])),
            drop=draw(st.sampled_from([None, None, "Red", "Green", "Blue"])),
            short=draw(st.sampled_from([None, None, "Red", "Blue"])),
        )
    if draw(st.booleans()):
        ds.WindowCenter = draw(st.sampled_from(["0", "128", "2048", "-1e9", "1e30"]))
        ds.WindowWidth = draw(st.sampled_from(["0", "-5", "0.5", "1", "400", "1e30"]))
    if draw(st.integers(0, 3)) == 0:
        ds.RescaleSlope = draw(st.sampled_from(["0", "1", "-1", "1e-30", "1e30"]))
        ds.RescaleIntercept = draw(st.sampled_from(["0", "-1024", "1e30"]))
    syntax = draw(st.sampled_from(SYNTAXES))
    if syntax == dcm.JPEG_BASELINE:
        if arr.ndim != 2 or dtype != np.uint8:
            syntax = dcm.EXPLICIT_LE
        else:
            kept = ds
            ds = dcm.jpeg(arr, cut=draw(st.integers(0, 4)) == 0)
            for key in ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept"):
                if key in kept:
                    setattr(ds, key, kept.get(key))
            ds.PhotometricInterpretation = pi if pi.startswith("MONOCHROME") else "MONOCHROME2"
            return ds
    try:
        return dcm.with_syntax(ds, syntax)
    except Exception:  # noqa: BLE001 - pydicom cannot encode this one in RLE: keep it uncompressed
        ds.file_meta.TransferSyntaxUID = dcm.EXPLICIT_LE
        return ds


DICOM_SETTINGS = dict(
    deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@settings(max_examples=80, **DICOM_SETTINGS)
@given(ds=dicom_datasets())
def test_random_dicom_decodes_or_is_refused_with_a_reason(ds, tmp_path_factory):
    """Whatever the header says: a finite grey image in [0, 1], or ImageReadError; never another exception."""
    from auditor.data.decode import load_image_noted

    path = dcm.write(ds, tmp_path_factory.mktemp("dcm") / "x.dcm")
    try:
        img, notes = load_image_noted(path, (16, 16))
    except ImageReadError as exc:
        assert str(exc).strip() and "\n" not in str(exc)
        return
    assert img.shape == (16, 16) and np.isfinite(img).all() and img.min() >= 0 and img.max() <= 1


@settings(max_examples=4, **DICOM_SETTINGS)
@given(batch=st.lists(dicom_datasets(), min_size=3, max_size=3))
def test_random_dicom_archive_scan_exits_0_with_per_file_skips(batch, hostile_base, tmp_path_factory):
    """Random DICOM files among good images: exit 0, each file either scored or listed with its reason."""
    import shutil

    root = tmp_path_factory.mktemp("dcmscan")
    data = shutil.copytree(hostile_base["data"], root / "data")
    for i, ds in enumerate(batch):
        dcm.write(ds, data / "normal" / f"random{i}.dcm")
    out = root / "out"
    run_and_check(out, scan_args(hostile_base["model"], data, out), 0)
    doc = load_json(out / "results.json")
    seen = {s["path"] for s in doc["samples"]} | {s["name"] for s in doc["data"]["skipped"]}
    for i in range(len(batch)):
        assert any(f"random{i}.dcm" in p for p in seen)
