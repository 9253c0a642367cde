"""EXIF orientation: an image is audited the way every viewer shows it, and the turn is recorded."""

from __future__ import annotations

import io

import numpy as np
import pytest

from auditor.data.decode import load_image_noted
from tests.hostile.helpers import load_json, run_and_check, scan_args

#: EXIF Orientation -> the numpy operation a viewer applies to the stored pixels (EXIF 2.32, 4.6.4 A)
UPRIGHT = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.T,
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).T,
    8: lambda a: np.rot90(a, 1),
}


def _stored(orientation: int, fmt: str = "PNG") -> tuple[bytes, np.ndarray]:
    from PIL import Image

    arr = (np.arange(12 * 20, dtype=np.uint32).reshape(12, 20) % 251).astype(np.uint8)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format=fmt, exif=exif.tobytes())
    return buf.getvalue(), arr


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_exif_orientation_is_applied_as_viewers_do(orientation, tmp_path):
    data, stored = _stored(orientation)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    img, notes = load_image_noted(path)
    np.testing.assert_array_equal(np.rint(img * 255).astype(np.uint8), UPRIGHT[orientation](stored))
    assert (orientation == 1) == (not notes)
    if orientation != 1:
        assert f"EXIF orientation {orientation} applied" in notes[0]


def test_rotated_image_in_a_scan_is_recorded_in_data_conversions(model, data, tmp_path):
    jpeg, _ = _stored(6, "JPEG")
    (data / "normal" / "turned.jpg").write_bytes(jpeg)
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out), 0)
    conversions = {c["name"]: c["notes"] for c in load_json(out / "results.json")["data"]["conversions"]}
    assert any("EXIF orientation 6 applied" in n for n in conversions["normal/turned.jpg"])


def test_invalid_orientation_is_noted_not_applied(tmp_path):
    data, stored = _stored(9)
    (tmp_path / "x.png").write_bytes(data)
    img, notes = load_image_noted(tmp_path / "x.png")
    np.testing.assert_array_equal(np.rint(img * 255).astype(np.uint8), stored)
    assert "not a valid value" in notes[0]
