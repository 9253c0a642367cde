"""The JPEG marker walk shared by the fast decoder and the DICOM codestream check."""

from __future__ import annotations

import cv2
import numpy as np

from auditor.data.jpeg_markers import EOI, SOF, SOI, SOS, entropy_end, segment_at


def _jpeg(progressive: bool = False) -> bytes:
    img = np.random.default_rng(0).integers(0, 256, (24, 40), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf.tobytes()


def _walk(data: bytes) -> list[int]:
    markers, pos = [], 0
    while (seg := segment_at(data, pos)) is not None:
        markers.append(seg.marker)
        if seg.marker == EOI:
            break
        pos = entropy_end(data, seg.end) if seg.marker == SOS else seg.end
        if pos is None:
            break
    return markers


def test_walk_of_an_encoded_jpeg_reaches_its_end_and_finds_its_frame_header():
    for progressive in (False, True):
        data = _jpeg(progressive)
        markers = _walk(data)
        assert markers[0] == SOI and markers[-1] == EOI
        frames = [m for m in markers if m in SOF]
        assert frames == [0xC2 if progressive else 0xC0]
        assert (markers.count(SOS) > 1) if progressive else (markers.count(SOS) == 1)  # progressive: one scan per pass
        sof = next(segment_at(data, p) for p in range(len(data)) if data[p : p + 2] == bytes([0xFF, frames[0]]))
        h, w = (
            int.from_bytes(data[sof.body + 1 : sof.body + 3], "big"),
            int.from_bytes(data[sof.body + 3 : sof.body + 5], "big"),
        )
        assert (h, w) == (24, 40)


def test_fill_bytes_are_skipped_and_a_cut_length_is_refused():
    seg = segment_at(b"\xff\xff\xff\xe0\x00\x04ab", 0)
    assert (seg.marker, seg.start, seg.end, seg.complete) == (0xE0, 2, 8, True)
    assert segment_at(b"\xff\xe0\x00", 0) is None  # length field cut off
    over = segment_at(b"\xff\xe0\x00\x10ab", 0)
    assert over is not None and not over.complete  # declared length runs past the data
    assert segment_at(b"\x00\xe0\x00\x04", 0) is None  # no marker here


def test_entropy_data_keep_stuffed_bytes_and_restart_markers():
    data = b"\x12\xff\x00\x34\xff\xd3\x56\xff\xff\xd9"
    assert entropy_end(data, 0) == 8  # the FF before D9; FF 00 and RST3 belong to the data, FF FF is fill
    assert entropy_end(b"\x12\xff\x00\x34", 0) is None  # truncated: no marker after the data
