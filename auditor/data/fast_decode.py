"""A fast raster decoder (OpenCV's ``cv2.imdecode``) for the files it decodes exactly as the reference path does.

The reference reader (:func:`auditor.data.decode._read_raster_noted`) opens every raster with Pillow,
applies its EXIF orientation and converts colour with ``Image.convert("L")``. Pillow's open, EXIF
and mode bookkeeping cost more than the decode itself for a 224 px radiograph (issue 28: 1.26 ms per
JPEG against 0.14 ms for ``cv2.imdecode``). :func:`read_fast` decodes a file with OpenCV *only* when a
cheap walk over its header says it is one of the forms proven pixel-identical to the reference path
(``tests/test_fast_decode.py`` decodes a corpus both ways and compares every pixel):

* JPEG: baseline, extended or progressive (SOF0/1/2), 8-bit, one (grey) or three (YCbCr) components,
  no Adobe (APP14, CMYK or RGB transforms) and no Exif (APP1) segment, and complete: the marker walk
  reaches the end-of-image marker (a truncated file goes to Pillow, which refuses it);
* PNG: 8-bit grey or 8-bit RGB, or 16-bit grey, without transparency (``tRNS``), EXIF (``eXIf``)
  or gamma/colour chunks that a decoder may apply, every chunk present up to ``IEND``.

Everything else (BMP, TIFF, palettes, CMYK, EXIF orientation, 12-bit JPEG, odd or truncated files, sizes
outside the limits of :mod:`auditor.data.limits`) returns None and is read by Pillow as before, with its
error messages. Colour is made grey with Pillow's own integer rule (ITU-R 601-2 luma, ``L = (19595 R +
38470 G + 7471 B + 2**15) >> 16``, libImaging ``Convert.c``), so the result is the reference's, bit for bit.
"""

from __future__ import annotations

import struct

import numpy as np

from auditor.data import limits
from auditor.data.jpeg_markers import EOI, SOF, SOI, SOS, STANDALONE, entropy_end, segment_at

#: JPEG start-of-frame markers accepted (baseline, extended sequential, progressive; Huffman coded)
_JPEG_SOF = {0xC0, 0xC1, 0xC2}
#: PNG chunks whose presence sends a file to Pillow (transparency, EXIF, colour management a decoder may apply)
_PNG_REFUSED = {b"tRNS", b"eXIf", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"PLTE"}
#: accepted PNG (bit depth, colour type): 8-bit grey, 16-bit grey, 8-bit RGB
_PNG_FORMS = {(8, 0), (16, 0), (8, 2)}


def _size_ok(w: int, h: int) -> bool:
    """The reference path's size limits (outside them Pillow reports the reason)."""
    return 8 <= w and 8 <= h and w * h <= limits.MAX_PIXELS


def _jpeg_form(data: bytes) -> tuple[int, int] | None:
    """``(components, precision)`` of a complete JPEG the fast path may decode, else None.

    Walks the marker segments (ITU-T T.81, B.1): every segment's length, the frame header, and after each
    start-of-scan the entropy-coded data up to the next marker (``FF`` followed by ``00`` or a restart
    marker belongs to the data), until the end-of-image marker. Anything unexpected returns None.
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] != SOI:
        return None
    pos, form = 2, None
    while (seg := segment_at(data, pos)) is not None:
        if seg.marker == EOI:
            return form
        if seg.marker in STANDALONE or not seg.complete:
            return None
        if seg.marker == 0xE1 and data[seg.body : seg.body + 6] == b"Exif\x00\x00":
            return None  # orientation: the reference applies it with Pillow
        if seg.marker == 0xEE:  # Adobe: CMYK / RGB transforms
            return None
        if seg.marker in SOF:
            if seg.marker not in _JPEG_SOF or form is not None or seg.end - seg.start < 10:
                return None
            precision, h, w, comps = struct.unpack_from(">BHHB", data, seg.body)
            if precision != 8 or comps not in (1, 3) or not _size_ok(w, h):
                return None
            form = (comps, precision)
        if seg.marker == SOS:  # the entropy-coded data follow the scan header
            if form is None:
                return None
            nxt = entropy_end(data, seg.end)
            if nxt is None:
                return None  # truncated: no marker after the data
            pos = nxt
            continue
        pos = seg.end
    return None


def _png_form(data: bytes) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` of a complete PNG the fast path may decode, else None (walks every chunk)."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if (depth, ctype) not in _PNG_FORMS or interlace not in (0, 1) or not _size_ok(w, h):
        return None
    pos, n = 8, len(data)
    while pos + 12 <= n:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if pos > n:
            return None
        if kind in _PNG_REFUSED:
            return None
        if kind == b"IEND":
            return depth, ctype
    return None


def _grey_from_bgr(bgr: np.ndarray) -> np.ndarray:
    """Pillow's ``convert("L")`` of 8-bit colour ``(H, W, 3)`` in OpenCV's channel order (B, G, R), exactly."""
    import cv2

    b, g, r = cv2.split(bgr)
    if not cv2.countNonZero(cv2.absdiff(b, g)) and not cv2.countNonZero(cv2.absdiff(g, r)):
        return r  # R = G = B = v gives (65536 v + 2**15) >> 16 = v
    luma = r.astype(np.uint32) * 19595 + g.astype(np.uint32) * 38470 + b.astype(np.uint32) * 7471 + 0x8000
    return (luma >> 16).astype(np.uint8)


def read_fast(data: bytes) -> np.ndarray | None:
    """Grey float32 ``(H, W)`` in ``[0, 1]`` of raster file bytes ``data``, exactly as the Pillow reference
    path reads it, or None when the file is not one of the forms above (read it with Pillow)."""
    import cv2

    if data[:2] == b"\xff\xd8":
        form = _jpeg_form(data)
        if form is None:
            return None
        flag = (cv2.IMREAD_GRAYSCALE if form[0] == 1 else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    elif data[:4] == b"\x89PNG":
        form = _png_form(data)
        if form is None:
            return None
        flag = cv2.IMREAD_UNCHANGED
    else:
        return None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None:
        return None  # Pillow reads it (or gives the reason it cannot)
    if img.ndim == 3:
        if img.shape[2] != 3 or img.dtype != np.uint8:
            return None
        img = _grey_from_bgr(img)
    if img.ndim != 2:
        return None
    if img.dtype == np.uint16:
        return np.clip(img.astype(np.float64) / 65535.0, 0, 1).astype(np.float32)
    if img.dtype != np.uint8:
        return None
    return np.divide(img, np.float32(255.0), dtype=np.float32)  # the bits of ``img.astype(np.float32) / 255.0``
