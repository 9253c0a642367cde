"""The fast decode path (:mod:`auditor.data.fast_decode`) is pixel-identical to the Pillow reference path.

A corpus is generated here covering the raster forms the tool accepts: 8- and 16-bit grey PNG, RGB PNG,
baseline / progressive / optimised / restart-marker JPEG in grey and RGB (4:2:0 and 4:4:4), grey images
stored as RGB JPEG, CMYK JPEG, EXIF orientation, palette / alpha / transparency PNGs, BMP and TIFF, trailing
bytes after the JPEG end marker, truncated and corrupt files. Every file is read by the scan's reader
(:func:`~auditor.data.decode._read_raster_noted`) and by the reference (:func:`~auditor.data.decode._read_pillow`):
both must give the same float32 pixels bit for bit and the same notes, or both refuse the file with the same
reason. The forms the fast path claims are checked to be taken by it (so the test fails without it), the forms
it must leave to Pillow to be refused by it. The real radiographs of ``../shared/data`` are compared too
when present.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from auditor.data import decode
from auditor.data.fast_decode import read_fast
from auditor.data.limits import ImageReadError
from auditor.data.stream import SampleImages, stream_digest
from auditor.hashing import array_sha256

SHARED = Path(os.environ.get("XRAY_AUDIT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data"


def _grey(h: int, w: int, seed: int) -> np.ndarray:
    """A radiograph-like 8-bit grey image: a gradient, a disc and noise (so JPEG has detail to quantise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 40 + 150 * xx / max(w - 1, 1) + 50 * (((yy - h / 2) ** 2 + (xx - w / 3) ** 2) < (min(h, w) / 3) ** 2)
    return np.clip(img + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)


def _colour(h: int, w: int, seed: int) -> np.ndarray:
    """An 8-bit RGB image with real chroma (tinted channels and colour noise)."""
    rng = np.random.default_rng(seed)
    g = _grey(h, w, seed).astype(np.int16)
    tint = rng.integers(-60, 60, (h, w, 3))
    return np.clip(g[..., None] + tint, 0, 255).astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _corpus() -> dict[str, tuple[bytes, bool]]:
    """``{name: (file bytes, read by the fast path)}``."""
    g, c = Image.fromarray(_grey(61, 47, 0)), Image.fromarray(_colour(64, 80, 1))
    big = Image.fromarray(_grey(200, 160, 2))
    grey_as_rgb = Image.fromarray(_grey(48, 64, 3)).convert("RGB")
    g16 = (_grey(40, 36, 4).astype(np.uint16) * 257 + np.arange(36, dtype=np.uint16)).astype(np.uint16)
    low16 = (_grey(40, 36, 5) // 2).astype(np.uint16)  # 16-bit file whose values all lie below 256
    jpeg_grey = _save(g, "JPEG", quality=85)
    jpeg_rgb = _save(c, "JPEG", quality=85, progressive=True)
    sos = jpeg_rgb.find(b"\xff\xda")
    png_grey = _save(g, "PNG")
    out = {
        "png-grey8": (png_grey, True),
        "png-grey8-cv2": (cv2.imencode(".png", _grey(33, 70, 6))[1].tobytes(), True),
        "png-grey16": (cv2.imencode(".png", g16)[1].tobytes(), True),
        "png-grey16-low-values": (cv2.imencode(".png", low16)[1].tobytes(), True),
        "png-rgb8": (_save(c, "PNG"), True),
        "png-grey-as-rgb": (_save(grey_as_rgb, "PNG"), True),
        "jpeg-grey-baseline": (jpeg_grey, True),
        "jpeg-grey-progressive": (_save(big, "JPEG", quality=70, progressive=True), True),
        "jpeg-grey-optimised": (_save(big, "JPEG", quality=95, optimize=True), True),
        "jpeg-grey-restart-markers": (_save(big, "JPEG", quality=80, restart_marker_blocks=3), True),
        "jpeg-rgb-420": (_save(c, "JPEG", quality=75, subsampling=2), True),
        "jpeg-rgb-444": (_save(c, "JPEG", quality=90, subsampling=0), True),
        "jpeg-rgb-progressive": (_save(c, "JPEG", quality=60, progressive=True), True),
        "jpeg-grey-stored-as-rgb": (_save(grey_as_rgb, "JPEG", quality=85), True),
        "jpeg-trailing-bytes": (jpeg_grey + b"xray-audit-scale-copy-7", True),
        "jpeg-cv2-encoded": (cv2.imencode(".jpg", _colour(50, 50, 7)[..., ::-1])[1].tobytes(), True),
        # complete structure, damaged data: libjpeg warns and both decoders fill in the same way
        "jpeg-data-cut-before-end-marker": (jpeg_rgb[: sos + 60] + b"\xff\xd9", True),
        "jpeg-data-zeroed": (jpeg_rgb[: sos + 30] + bytes(170) + jpeg_rgb[sos + 200 :], True),
        # left to Pillow
        "jpeg-cmyk": (_save(c.convert("CMYK"), "JPEG", quality=90), False),
        "jpeg-exif-rotated": (_save(c, "JPEG", quality=90, exif=_exif(6)), False),
        "jpeg-exif-upright": (_save(g, "JPEG", quality=90, exif=_exif(1)), False),
        "jpeg-truncated": (jpeg_grey[: len(jpeg_grey) * 2 // 3], False),
        "jpeg-truncated-header": (jpeg_grey[:120], False),
        "jpeg-no-end-marker": (jpeg_grey[:-2], False),
        "jpeg-garbage-after-start": (b"\xff\xd8" + bytes(range(256)) * 4, False),
        "png-truncated": (png_grey[: len(png_grey) // 2], False),
        "png-no-iend": (png_grey[:-12], False),
        "png-palette": (_save(c.convert("P"), "PNG"), False),
        "png-grey-alpha": (_save(g.convert("LA"), "PNG"), False),
        "png-rgba": (_save(c.convert("RGBA"), "PNG"), False),
        "png-transparency": (_save(g, "PNG", transparency=7), False),
        "png-exif-rotated": (_save(g, "PNG", exif=_exif(8)), False),
        "png-bad-crc": (png_grey[:40] + bytes([png_grey[40] ^ 0xFF]) + png_grey[41:], False),
        "png-too-small": (_save(Image.fromarray(_grey(6, 6, 8)), "PNG"), False),
        "bmp-grey": (_save(g, "BMP"), False),
        "tiff-grey16": (_save(Image.fromarray(g16), "TIFF"), False),
        "not-an-image": (b"hello, not an image at all", False),
    }
    return out


CORPUS = _corpus()


def _both(path: Path):
    """(scan reader's result, reference result): each ``(pixels, notes)`` or the refusal's message."""

    def run(fn):
        try:
            return fn(path)
        except ImageReadError as exc:
            return str(exc)

    return run(decode._read_raster_noted), run(decode._read_pillow)


def _assert_same(got, want, name: str) -> None:
    if isinstance(want, str) or isinstance(got, str):
        assert got == want, f"{name}: {got!r} != {want!r}"
        return
    (a, na), (b, nb) = got, want
    assert na == nb, name
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, name
    assert np.array_equal(a, b), f"{name}: {int((a != b).sum())} pixels differ"


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_scan_reader_equals_the_pillow_reference(name, tmp_path):
    data, fast = CORPUS[name]
    path = tmp_path / f"{name}.img"
    path.write_bytes(data)
    got, want = _both(path)
    _assert_same(got, want, name)
    # the fast path takes exactly the forms it claims (so this test checks it, not only Pillow twice)
    assert (read_fast(data) is not None) is fast, name


def test_the_corpus_covers_real_colour_and_refusals(tmp_path):
    """The generated corpus is what it claims: colour JPEGs with real chroma, truncated files refused by both."""
    arr = cv2.imdecode(np.frombuffer(CORPUS["jpeg-rgb-420"][0], np.uint8), cv2.IMREAD_COLOR)
    assert not np.array_equal(arr[..., 0], arr[..., 2])
    for name in ("jpeg-truncated", "png-truncated"):
        path = tmp_path / name
        path.write_bytes(CORPUS[name][0])
        got, want = _both(path)
        assert isinstance(want, str) and "truncated" in want and got == want


def test_the_set_cache_key_digest_is_unchanged_by_the_fast_path(tmp_path):
    """The set-cache key hashes the decoded clean images: the same digest as the reference decode."""
    paths = []
    for name in ("jpeg-rgb-420", "jpeg-grey-baseline", "png-grey16", "png-rgb8", "jpeg-grey-progressive"):
        p = tmp_path / f"{name}.img"
        p.write_bytes(CORPUS[name][0])
        paths.append(p)
    size = (40, 40)
    reference = np.stack([decode._fit(decode._read_pillow(p)[0], size) for p in paths])[:, None]
    assert stream_digest(SampleImages(paths, size)) == array_sha256(reference)


def _shared_files() -> list[Path]:
    files = sorted((SHARED / "kermany").rglob("*.jpeg"))[::7] + sorted((SHARED / "cxr").rglob("*.png"))[::3]
    return files


@pytest.mark.shared_data
def test_real_radiographs_decode_identically():
    """Every 7th Kermany JPEG (RGB baseline) and every 3rd NIH PNG of ``../shared/data``."""
    files = _shared_files()
    if not files:
        pytest.skip(f"no radiographs at {SHARED} (kermany/*.jpeg, cxr/*.png)")
    for path in files:
        got, want = _both(path)
        _assert_same(got, want, str(path))
