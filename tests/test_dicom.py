"""DICOM as hospitals send it, tested on the real files shipped inside the pydicom package.

pydicom bundles DICOM files written by DCMTK, GDCM and vendors in
``pydicom/data/test_files``; they are located at test time (nothing is copied into
the repository) and the tests skip with the reason when they are absent.

Each file of a supported transfer syntax must decode, and the grey image must
equal the one computed from pydicom's own default decoding of the same file
(``ds.pixel_array``) by the documented conversion. Lossless codecs must match
exactly. Lossy codecs may differ because the reference may come from another
decoder (libjpeg-turbo through Pillow or GDCM instead of pylibjpeg's libjpeg):
the stated tolerance is at most 2 LSB per pixel and 0.25 LSB on average
(measured: 2 and 0.12 on ``SC_rgb_dcmtk_+eb+cy+np.dcm``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from auditor.data import ImageReadError, load_images, open_dataset
from auditor.data.dicom import BT601, SUPPORTED_TRANSFER_SYNTAXES, read_dicom

pydicom = pytest.importorskip("pydicom", reason="pydicom is not installed")

IMPL_LE, EXPL_LE, DEFL_LE, EXPL_BE = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
)
RLE, JPEG_BASE, JPEG_EXT, JPEG_LL, JPEG_SV1 = (
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
)
JLS_LL, JLS_NEAR, J2K_LL, J2K = (
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
)

#: (file in pydicom/data/test_files, transfer syntax, lossy?) -- every bundled single-frame
#: image of a supported syntax that is an X-ray-like picture (no dose grids, no masks)
BUNDLED = [
    ("MR_small_implicit.dcm", IMPL_LE, False),
    ("SC_rgb_jpeg_dcmd.dcm", IMPL_LE, False),
    ("MR_small.dcm", EXPL_LE, False),
    ("CT_small.dcm", EXPL_LE, False),
    ("MR_small_padded.dcm", EXPL_LE, False),
    ("examples_overlay.dcm", EXPL_LE, False),
    ("examples_palette.dcm", EXPL_LE, False),
    ("examples_rgb_color.dcm", EXPL_LE, False),
    ("SC_rgb_small_odd.dcm", EXPL_LE, False),
    ("SC_ybr_full_422_uncompressed.dcm", EXPL_LE, False),
    ("image_dfl.dcm", DEFL_LE, False),
    ("MR_small_bigendian.dcm", EXPL_BE, False),
    ("MR_small_expb.dcm", EXPL_BE, False),
    ("ExplVR_BigEnd.dcm", EXPL_BE, False),
    ("SC_rgb_small_odd_big_endian.dcm", EXPL_BE, False),
    ("MR_small_RLE.dcm", RLE, False),
    ("SC_rgb_rle.dcm", RLE, False),
    ("SC_rgb_rle_16bit.dcm", RLE, False),
    ("SC_rgb_rle_32bit.dcm", RLE, False),
    ("SC_rgb_jpeg.dcm", JPEG_BASE, True),
    ("SC_rgb_jpeg_dcmtk.dcm", JPEG_BASE, True),
    ("SC_rgb_jpeg_lossy_gdcm.dcm", JPEG_BASE, True),
    ("SC_rgb_jpeg_app14_dcmd.dcm", JPEG_BASE, True),
    ("SC_jpeg_no_color_transform.dcm", JPEG_BASE, True),
    ("SC_jpeg_no_color_transform_2.dcm", JPEG_BASE, True),
    ("SC_rgb_dcmtk_+eb+cr.dcm", JPEG_BASE, True),
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", JPEG_BASE, True),
    ("SC_rgb_dcmtk_+eb+cy+n2.dcm", JPEG_BASE, True),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", JPEG_BASE, True),
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", JPEG_BASE, True),
    ("SC_rgb_dcmtk_+eb+cy+s4.dcm", JPEG_BASE, True),
    ("SC_rgb_small_odd_jpeg.dcm", JPEG_BASE, True),
    ("JPGExtended.dcm", JPEG_EXT, True),
    ("SC_rgb_jpeg_gdcm.dcm", JPEG_SV1, False),
    ("MR_small_jpeg_ls_lossless.dcm", JLS_LL, False),
    ("JPEGLSNearLossless_08.dcm", JLS_NEAR, True),
    ("JPEGLSNearLossless_16.dcm", JLS_NEAR, True),
    ("SC_rgb_jls_lossy_line.dcm", JLS_NEAR, True),
    ("SC_rgb_jls_lossy_sample.dcm", JLS_NEAR, True),
    ("MR_small_jp2klossless.dcm", J2K_LL, False),
    ("J2K_pixelrep_mismatch.dcm", J2K_LL, False),
    ("GDCMJ2K_TextGBR.dcm", J2K_LL, False),
    ("examples_jpeg2k.dcm", J2K_LL, False),
    ("JPEG2000.dcm", J2K, True),
    ("693_J2KI.dcm", J2K, True),
    ("SC_rgb_gdcm_KY.dcm", J2K, True),
]

#: bundled files that are damaged on purpose (pydicom's test_files/README.txt says why)
CORRUPT = {
    "MR_truncated.dcm": "8130 vs 8192 bytes",  # pixel data cut short
    "JPEG-lossy.dcm": "scan start must be zero",  # invalid SOS; JPGExtended.dcm is its fixed version
    "JPEG2000-embedded-sequence-delimiter.dcm": "J2K",  # 4 codestream bytes overwritten
}

#: multi-frame image objects bundled with pydicom
MULTI_FRAME = ["SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit_2frame.dcm", "examples_ybr_color.dcm"]


@pytest.fixture(scope="module")
def test_files() -> Path:
    from pydicom.data import get_testdata_file

    found = get_testdata_file("MR_small.dcm", download=False)
    if not found:
        pytest.skip("pydicom's bundled test files (pydicom/data/test_files) are not installed")
    return Path(found).parent


def _bundled(test_files: Path, name: str) -> Path:
    p = test_files / name
    if not p.is_file():
        pytest.skip(f"{name} is not shipped with this pydicom version")
    return p


def _expected_grey(ds) -> tuple[np.ndarray, float]:
    """The documented conversion applied to pydicom's default decoding; returns (grey, 1 LSB in grey units)."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    arr = ds.pixel_array
    pi = str(ds.PhotometricInterpretation).upper()
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        img = apply_modality_lut(arr, ds).astype(np.float64)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            img = apply_voi_lut(img, ds).astype(np.float64)
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo)
        return (1.0 - img if pi == "MONOCHROME1" else img), 1.0 / (hi - lo)
    if pi == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        full = 255.0 if arr.dtype == np.uint8 else 65535.0
    else:
        full = 2.0 ** int(ds.BitsStored) - 1
    rgb = arr.astype(np.float64)
    return (BT601[0] * rgb[..., 0] + BT601[1] * rgb[..., 1] + BT601[2] * rgb[..., 2]) / full, 1.0 / full


def test_supported_list_covers_the_tested_syntaxes():
    assert {ts for _, ts, _ in BUNDLED} | {JPEG_LL} <= set(SUPPORTED_TRANSFER_SYNTAXES)


@pytest.mark.parametrize("name,ts,lossy", BUNDLED, ids=[b[0] for b in BUNDLED])
def test_bundled_file_decodes_like_pydicom(test_files, name, ts, lossy):
    path = _bundled(test_files, name)
    ds = pydicom.dcmread(str(path))
    assert ds.file_meta.TransferSyntaxUID == ts
    got = read_dicom(path)
    ref, lsb = _expected_grey(ds)
    assert got.image.dtype == np.float32 and got.image.shape == (int(ds.Rows), int(ds.Columns))
    assert float(got.image.min()) >= 0.0 and float(got.image.max()) <= 1.0 and got.image.std() > 0
    diff = np.abs(got.image.astype(np.float64) - ref)
    if lossy:
        assert diff.max() <= 2 * lsb + 1e-6 and diff.mean() <= 0.25 * lsb + 1e-6
        assert abs(got.image.mean() - ref.mean()) <= 0.25 * lsb + 1e-6
        assert abs(got.image.std() - ref.std()) <= 0.25 * lsb + 1e-6
    else:
        assert diff.max() <= 1e-6
    colour = int(ds.SamplesPerPixel) == 3 or str(ds.PhotometricInterpretation) == "PALETTE COLOR"
    assert any("BT.601" in n for n in got.notes) == colour


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ],
)
def test_lossless_copies_equal_the_uncompressed_original(test_files, name):
    ref = read_dicom(_bundled(test_files, "MR_small.dcm")).image
    np.testing.assert_array_equal(read_dicom(_bundled(test_files, name)).image, ref)


def test_colour_notes_say_how_grey_was_made(test_files):
    notes = " | ".join(read_dicom(_bundled(test_files, "SC_rgb_dcmtk_+eb+cy+np.dcm")).notes)
    assert "stored as YBR_FULL_422, converted to RGB by pydicom" in notes
    assert "0.299 R + 0.587 G + 0.114 B" in notes and "lossy-compressed" in notes


@pytest.mark.parametrize("name", MULTI_FRAME)
def test_multi_frame_uses_the_documented_frame(test_files, name):
    path = _bundled(test_files, name)
    ds = pydicom.dcmread(str(path))
    n = int(ds.NumberOfFrames)
    got = read_dicom(path)
    assert f"frame 1 of {n} used" in " ".join(got.notes)
    ref = _expected_grey(ds)[0][0]
    lsb = 1.0 / (2.0 ** int(ds.BitsStored) - 1)
    assert np.abs(got.image - ref).max() <= 2 * lsb + 1e-6


def test_representative_frame_number_is_honoured(test_files, tmp_path):
    ds = pydicom.dcmread(str(_bundled(test_files, "SC_rgb_rle_2frame.dcm")))
    ds.RepresentativeFrameNumber = 2
    ds.save_as(str(tmp_path / "rep.dcm"))
    got = read_dicom(tmp_path / "rep.dcm")
    assert "multi-frame object: frame 2 of 2 used (its Representative Frame Number)" in got.notes
    second = _expected_grey(ds)[0][1]
    np.testing.assert_allclose(got.image, second, atol=1e-6)
    assert np.abs(second - _expected_grey(ds)[0][0]).max() > 0.1  # the two frames differ


@pytest.mark.parametrize("name,needle", sorted(CORRUPT.items()))
def test_corrupt_files_are_skipped_with_the_full_reason(test_files, name, needle):
    with pytest.raises(ImageReadError) as err:
        read_dicom(_bundled(test_files, name))
    reason = str(err.value)
    assert needle in reason and reason.endswith(".") and "\n" not in reason
    assert "corrupt or truncated" in reason


def test_truncated_reason_is_not_cut(test_files):
    with pytest.raises(ImageReadError) as err:
        read_dicom(_bundled(test_files, "MR_truncated.dcm"))
    # the whole of pydicom's explanation is kept (it was cut at 80 characters before)
    assert "or the transfer syntax may be incorrect)." in str(err.value)


def _write_rgb(path, rgb: np.ndarray, photometric: str = "RGB"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = rgb.astype(np.uint8).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_bt601_luma_of_primaries(tmp_path):
    rgb = np.zeros((8, 32, 3), np.uint8)
    rgb[:, :8, 0] = 255
    rgb[:, 8:16, 1] = 255
    rgb[:, 16:24, 2] = 255
    rgb[:, 24:] = 255
    _write_rgb(tmp_path / "rgb.dcm", rgb)
    img = read_dicom(tmp_path / "rgb.dcm").image
    np.testing.assert_allclose(img[0, [0, 8, 16, 24]], [0.299, 0.587, 0.114, 1.0], atol=1e-6)


def test_ybr_full_is_converted_to_rgb_before_luma(tmp_path):
    from pydicom.pixels import convert_color_space

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    _write_rgb(tmp_path / "rgb.dcm", rgb)
    _write_rgb(tmp_path / "ybr.dcm", convert_color_space(rgb, "RGB", "YBR_FULL"), "YBR_FULL")
    a, b = read_dicom(tmp_path / "rgb.dcm"), read_dicom(tmp_path / "ybr.dcm")
    assert np.abs(a.image - b.image).max() <= 2 / 255  # 8-bit YCbCr round trip
    assert "stored as YBR_FULL" in " ".join(b.notes)


# ------------------------------------------------------------------ syntaxes pydicom ships no file of
def _transcode(src: Path, dst: Path, syntax: str) -> Path:
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm (dev extra) is needed to transcode test files")
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return dst


@pytest.mark.parametrize("source", ["MR_small.dcm", "dicomdirtests/77654033/CR1/6154"])
@pytest.mark.parametrize(
    "syntax,uid",
    [
        ("JPEGLosslessProcess14", JPEG_LL),
        ("JPEGLosslessProcess14_1", JPEG_SV1),
        ("JPEGLSLossless", JLS_LL),
        ("JPEG2000Lossless", J2K_LL),
    ],
)
def test_grey_lossless_transcodes_match_the_original(test_files, tmp_path, source, syntax, uid):
    """16-bit MR and 12-bit MONOCHROME1 CR, re-encoded by GDCM: pixel-exact after decoding."""
    src = _bundled(test_files, source)
    dst = _transcode(src, tmp_path / "t.dcm", syntax)
    assert pydicom.dcmread(str(dst)).file_meta.TransferSyntaxUID == uid
    np.testing.assert_array_equal(read_dicom(dst).image, read_dicom(src).image)


# 12-bit extended JPEG is covered by the bundled JPGExtended.dcm (GDCM cannot encode it)
@pytest.mark.parametrize("syntax,uid", [("JPEGExtendedProcess2_4", JPEG_EXT), ("JPEGBaselineProcess1", JPEG_BASE)])
def test_grey_8bit_lossy_jpeg_transcodes_decode_close_to_the_original(test_files, tmp_path, syntax, uid):
    src = _bundled(test_files, "image_dfl.dcm")
    dst = _transcode(src, tmp_path / "t.dcm", syntax)
    ds = pydicom.dcmread(str(dst))
    assert ds.file_meta.TransferSyntaxUID == uid and int(ds.BitsStored) == 8
    got = read_dicom(dst)
    ref, lsb = _expected_grey(ds)
    diff = np.abs(got.image - ref)
    assert diff.max() <= 2 * lsb + 1e-6 and diff.mean() <= 0.25 * lsb + 1e-6
    assert np.abs(got.image - read_dicom(src).image).mean() < 0.02  # and it is still the same picture


# ------------------------------------------------------------------ a class-folder scan, as a user would
def scan_copy(test_files: Path, root: Path) -> Path:
    """Copy the radiograph-like bundled files (and the corrupt ones) into ``root/<class>/``."""
    names = [b[0] for b in BUNDLED] + MULTI_FRAME + sorted(CORRUPT)
    for i, name in enumerate(names):
        src = test_files / name
        if src.is_file():
            (root / ("normal", "pneumonia")[i % 2]).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / ("normal", "pneumonia")[i % 2] / name)
    return root


def test_class_folder_scan_skips_only_the_corrupt_files(test_files, tmp_path):
    root = scan_copy(test_files, tmp_path / "pacs")
    ds = open_dataset(root)
    notes: dict[str, list[str]] = {}
    x, kept, skipped = load_images(ds.samples, (32, 32), notes=notes)
    assert {Path(s.name).name for s in skipped} == {n for n in CORRUPT if (test_files / n).is_file()}
    for s in skipped:
        assert s.reason.endswith(".") and CORRUPT[Path(s.name).name] in s.reason
    assert len(kept) == len(ds.samples) - len(skipped) and x.shape[1:] == (1, 32, 32)
    colour = [k for k, v in notes.items() if any("BT.601" in n for n in v)]
    assert "normal/SC_rgb_jpeg_dcmtk.dcm" in colour or "pneumonia/SC_rgb_jpeg_dcmtk.dcm" in colour
    json.dumps(notes)  # JSON-ready for results.json


# ------------------------------------------------------------------ what happens to the rest
def test_fallback_plugin_is_recorded(test_files, monkeypatch):
    """When pylibjpeg fails, the next installed plugin decodes and the note names it and the failure."""
    from pydicom.pixels import get_decoder

    path = _bundled(test_files, "MR_small_RLE.dcm")
    decoder = get_decoder(RLE)
    if "pydicom" not in decoder.available_plugins:
        pytest.skip("pydicom's own RLE plugin is not available")
    real = type(decoder).as_array

    def failing(self, src, **kw):
        if kw.get("decoding_plugin") == "pylibjpeg":
            raise RuntimeError("simulated failure")
        return real(self, src, **kw)

    monkeypatch.setattr(type(decoder), "as_array", failing)
    got = read_dicom(path)
    assert "decoded by pydicom's 'pydicom' plugin after pylibjpeg: simulated failure" in got.notes
    np.testing.assert_array_equal(got.image, read_dicom(_bundled(test_files, "MR_small.dcm")).image)


def test_transfer_syntax_without_decoder_is_skipped_with_its_name(test_files, tmp_path):
    ds = pydicom.dcmread(str(_bundled(test_files, "MR_small_RLE.dcm")))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom has no decoder
    ds.save_as(str(tmp_path / "mpeg2.dcm"))
    with pytest.raises(ImageReadError) as err:
        read_dicom(tmp_path / "mpeg2.dcm")
    assert str(err.value) == (
        "Transfer syntax MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100) cannot be "
        "decoded: pydicom has no decoder for it."
    )


def test_unsupported_photometric_is_skipped_with_the_reason(tmp_path):
    _write_rgb(tmp_path / "hsv.dcm", np.zeros((8, 8, 3), np.uint8), "HSV")
    with pytest.raises(ImageReadError, match="photometric interpretation 'HSV' with 3 sample"):
        read_dicom(tmp_path / "hsv.dcm")


def test_oversized_dicom_is_refused_before_decoding(test_files, monkeypatch):
    import auditor.data.limits as limits

    monkeypatch.setattr(limits, "MAX_PIXELS", 100)
    with pytest.raises(ImageReadError, match="above the limit of 100 pixels"):
        read_dicom(_bundled(test_files, "MR_small.dcm"))
