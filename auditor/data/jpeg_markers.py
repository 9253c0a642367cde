"""The marker segments of a JPEG codestream (ITU-T T.81, Annex B), walked without decoding anything.

Two header checks walk them: the fast decoder's test of whether a file is a form it may decode
(:mod:`auditor.data.fast_decode`) and the DICOM check of an encapsulated frame's own size
(:mod:`auditor.data.dicom_header`). A segment is ``FF``, a marker byte and, except for the markers that
stand alone (start and end of image, TEM, RSTn), a two-byte big-endian length that counts itself.
``FF`` bytes before a marker are fill bytes (B.1.1.2).
"""

from __future__ import annotations

from dataclasses import dataclass

SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
#: markers without a length field: TEM, RST0-RST7, SOI, EOI (T.81 Table B.1)
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), SOI, EOI})
#: start-of-frame markers: SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC)
SOF = frozenset(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))


@dataclass(frozen=True)
class Segment:
    """One marker segment: its marker, the index of its ``FF`` and the index just past it (``end`` may lie past
    the data when the declared length overruns it: see :attr:`complete`)."""

    marker: int
    start: int
    end: int
    complete: bool

    @property
    def body(self) -> int:
        """Index of the first byte after the length field (the segment's parameters)."""
        return self.start + 4


def segment_at(data: bytes, pos: int) -> Segment | None:
    """The segment whose marker is at ``pos`` (fill bytes skipped), or None when no marker is there or its
    length field is cut off."""
    n = len(data)
    while pos + 1 < n and data[pos] == 0xFF and data[pos + 1] == 0xFF:
        pos += 1
    if pos + 2 > n or data[pos] != 0xFF:
        return None
    marker = data[pos + 1]
    if marker in STANDALONE:
        return Segment(marker, pos, pos + 2, True)
    if pos + 4 > n:
        return None
    length = int.from_bytes(data[pos + 2 : pos + 4], "big")
    end = pos + 2 + length
    return Segment(marker, pos, end, length >= 2 and end <= n)


def entropy_end(data: bytes, pos: int) -> int | None:
    """Index of the first marker after the entropy-coded data that start at ``pos`` (after a start-of-scan
    segment); ``FF 00`` (a stuffed byte), ``FF`` fill bytes and restart markers belong to the data (B.1.1.5,
    B.1.1.2). None when the data run to the end without a marker (a truncated file)."""
    n = len(data)
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return None
        nxt = data[pos + 1]
        if nxt == 0xFF:
            pos += 1
        elif nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
            pos += 2
        else:
            return pos
