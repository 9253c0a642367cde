"""DICOM header and codestream checks made before any pixel is decoded, and the frame to use.

:func:`_read_dataset` parses the file, :func:`_transfer_syntax` reads its syntax, :func:`_check_shape`
refuses pixel-less objects and sizes or frame counts above the limits, :func:`_frame_index` picks the
frame (Representative Frame Number (0028,6010), else the first) and :func:`_check_codestream` compares
an encapsulated frame's own header (JPEG SOF, JPEG 2000 SIZ) with the DICOM header. Decoding and grey
conversion are in :mod:`auditor.data.dicom`.
"""

from __future__ import annotations

from pathlib import Path

from auditor.data import limits
from auditor.data.jpeg_markers import EOI, SOF, SOS, segment_at
from auditor.data.limits import ImageReadError

#: multi-frame objects with more frames than this are refused from the header
MAX_FRAMES = 10_000


def _one_line(text: object) -> str:
    """Collapse a multi-line library message into one line, without cutting it."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _read_dataset(path: Path):
    import pydicom

    try:
        return pydicom.dcmread(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a reason to skip
        raise ImageReadError(
            _sentence(f"Unreadable DICOM file: pydicom cannot parse it ({type(exc).__name__}: {_one_line(exc)})")
        ) from None


def _transfer_syntax(ds):
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if not ts:
        raise ImageReadError(
            "DICOM file has no Transfer Syntax UID (0002,0010) in its file meta "
            "information, so its pixel data cannot be interpreted."
        )
    return ts


def _ts_name(ts) -> str:
    name = getattr(ts, "name", "") or ""
    return f"{name} ({ts})" if name and name != str(ts) else f"unknown transfer syntax {ts}"


def _check_shape(ds) -> int:
    """Number of frames; refuses pixel-less objects and frames above ``limits.MAX_PIXELS``."""
    if "PixelData" not in ds:
        kind = getattr(ds.get("SOPClassUID"), "name", "") or ds.get("Modality", "") or "unknown kind"
        raise ImageReadError(f"DICOM object holds no pixel data (SOP class: {kind}).")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ImageReadError(
            _sentence(f"DICOM image attributes are invalid ({type(exc).__name__}: {_one_line(exc)})")
        ) from None
    if rows < 1 or cols < 1 or frames < 0:
        raise ImageReadError(f"DICOM image attributes are invalid: {cols}x{rows} pixels, {frames} frame(s).")
    if rows * cols > limits.MAX_PIXELS:
        raise ImageReadError(f"DICOM image is {cols}x{rows}, above the limit of {limits.MAX_PIXELS} pixels.")
    if frames > MAX_FRAMES:
        raise ImageReadError(f"DICOM object declares {frames} frames, above the limit of {MAX_FRAMES}.")
    return max(frames, 1)


def _frame_index(ds, frames: int) -> tuple[int, str | None]:
    """0-based frame to use and the note saying so (None for single-frame objects)."""
    if frames == 1:
        return 0, None
    rep = ds.get("RepresentativeFrameNumber")
    if rep is not None:
        try:
            k = int(rep)
        except (TypeError, ValueError):
            k = 0
        if 1 <= k <= frames:
            return k - 1, f"multi-frame object: frame {k} of {frames} used (its Representative Frame Number)"
    return 0, f"multi-frame object: frame 1 of {frames} used (no valid Representative Frame Number)"


#: start-of-frame markers whose header gives the size: JPEG's SOF0-SOF15 and JPEG-LS's SOF55 (F7)
_SOF = SOF | {0xF7}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first start-of-frame segment of a JPEG / JPEG-LS codestream (ITU-T T.81
    B.2.2), walking the marker segments up to it; None when there is none before the scan data."""
    pos = 2
    while (seg := segment_at(data, pos)) is not None:
        if seg.marker in (SOS, EOI):  # start of scan or end of image before any frame header
            return None
        if seg.marker in _SOF:
            if seg.start + 9 > len(data):
                return None
            return int.from_bytes(data[seg.start + 7 : seg.start + 9], "big"), int.from_bytes(
                data[seg.start + 5 : seg.start + 7], "big"
            )
        pos = seg.end
    return None


def _j2k_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of the image area from the SIZ segment of a JPEG 2000 codestream (ITU-T T.800 A.5.1)."""
    at = data.find(b"\xff\x4f\xff\x51")
    if at < 0 or at + 22 > len(data):
        return None
    xsiz, ysiz, x0, y0 = (int.from_bytes(data[at + 8 + 4 * k : at + 12 + 4 * k], "big") for k in range(4))
    return xsiz - x0, ysiz - y0


def _check_codestream(ds, ts, index: int, frames: int) -> None:
    """Before decoding an encapsulated frame: its codestream's own frame header (JPEG SOF, JPEG 2000 SIZ)
    must declare at most ``limits.MAX_PIXELS`` and the Rows x Columns of the DICOM header, and a JPEG
    codestream must end with its end-of-image marker (a cut fragment decodes to a plausible-looking image)."""
    if not getattr(ts, "is_encapsulated", False):
        return
    from pydicom.encaps import get_frame

    try:
        data = bytes(get_frame(ds.PixelData, index, number_of_frames=frames))
    except Exception as exc:  # noqa: BLE001 - a broken fragment table is a reason to skip
        raise ImageReadError(
            _sentence(f"Encapsulated pixel data cannot be split into frames ({type(exc).__name__}: {_one_line(exc)})")
        ) from None
    if data.startswith(b"\xff\xd8"):  # JPEG and JPEG-LS
        size, what = _jpeg_size(data), "JPEG frame header (SOF)"
        if b"\xff\xd9" not in data[-16:]:  # EOI, then at most a few padding bytes
            raise ImageReadError("JPEG frame has no end-of-image marker: the compressed pixel data are truncated.")
    elif b"\xff\x4f\xff\x51" in data[:256]:
        size, what = _j2k_size(data), "JPEG 2000 (J2K) image header (SIZ)"
    else:
        return  # RLE and others: the decoder works from Rows and Columns
    if size is None:
        return
    w, h = size
    rows, cols = int(ds.Rows), int(ds.Columns)
    if (h and (w, h) != (cols, rows)) or (not h and w != cols):  # h = 0: height given later (DNL)
        raise ImageReadError(
            f"Pixel data are probably corrupt or truncated: the {what} declares {w}x{h}, "
            f"the DICOM header {cols}x{rows} (not decoded)."
        )
    if w * h > limits.MAX_PIXELS:
        raise ImageReadError(f"The {what} declares {w}x{h}, above the limit of {limits.MAX_PIXELS} pixels.")
