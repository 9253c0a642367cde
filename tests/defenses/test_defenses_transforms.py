"""JPEG, bit-depth and median preprocessors: exact hand-made cases, bounds and parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import median_filter

from auditor.defenses.transforms import BitDepthReduction, JpegCompression, MedianSmoothing
from auditor.errors import DataError, UsageError


def smooth_batch(n: int = 4, size: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth grey images: a few low-frequency cosines, scaled into [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        img = sum(
            np.cos(2 * np.pi * (rng.uniform(0, 2) * xx + rng.uniform(0, 2) * yy) + rng.uniform(0, 6)) for _ in range(3)
        )
        img = (img - img.min()) / (img.max() - img.min())
        out[i, 0] = 0.1 + 0.8 * img
    return out


def test_median_3x3_exact_reflect_border():
    x = (np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)) / 10
    # reflect border (edge pixel repeated for k=3): corner (0,0) window = 1,1,2,1,1,2,4,4,5 -> 2
    expected = np.array([[2, 3, 3], [4, 5, 6], [7, 7, 8]], np.float32).reshape(1, 1, 3, 3) / 10
    np.testing.assert_allclose(MedianSmoothing(3)(x), expected, atol=1e-7)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_median_matches_scipy_reflect(k):
    x = np.random.default_rng(1).random((2, 1, 17, 13)).astype(np.float32)
    np.testing.assert_array_equal(MedianSmoothing(k)(x), median_filter(x, size=(1, 1, k, k), mode="reflect"))


@pytest.mark.parametrize("k", [1, 2, 4, 0, -3, 3.0, True])
def test_median_rejects_bad_kernel(k):
    with pytest.raises(UsageError, match="median kernel"):
        MedianSmoothing(k)


def test_bitdepth_exact_values():
    x = np.array([0.0, 0.1, 0.2, 0.5, 0.9, 1.0], np.float32).reshape(1, 1, 1, 6)
    # 2 bits -> 4 levels {0, 1/3, 2/3, 1}; x*3 = 0, .3, .6, 1.5, 2.7, 3 -> round half to even -> 0,0,1,2,3,3
    np.testing.assert_allclose(BitDepthReduction(2)(x).ravel(), np.array([0, 0, 1, 2, 3, 3]) / 3, atol=1e-7)
    np.testing.assert_array_equal(BitDepthReduction(1)(x).ravel(), [0, 0, 0, 0, 1, 1])
    y8 = BitDepthReduction(8)(x).ravel()
    np.testing.assert_allclose(y8 * 255, np.rint(y8 * 255), atol=1e-4)
    assert BitDepthReduction(4).levels == 16 and BitDepthReduction(4).name == "bitdepth:4"


@pytest.mark.parametrize("b", [0, 9, -1])
def test_bitdepth_rejects_bad_bits(b):
    with pytest.raises(UsageError, match="bitdepth"):
        BitDepthReduction(b)


def test_jpeg_round_trip_bounds():
    x = smooth_batch()
    y95, y30 = JpegCompression(95)(x), JpegCompression(30)(x)
    for y in (y95, y30):
        assert y.shape == x.shape and y.dtype == np.float32
        assert y.min() >= 0.0 and y.max() <= 1.0
    err95, err30 = np.abs(y95 - x), np.abs(y30 - x)
    assert err95.max() < 0.03
    assert err30.mean() > err95.mean()
    assert err30.max() > err95.max()
    np.testing.assert_array_equal(y95 * 255, np.rint(y95 * 255))  # decoded 8-bit values


@pytest.mark.parametrize("q", [0, 101, -5, "75", 75.0])
def test_jpeg_rejects_bad_quality(q):
    with pytest.raises(UsageError, match="jpeg quality") as err:
        JpegCompression(q)
    assert "\n" not in str(err.value)


def test_preprocessor_contract_and_cost():
    pre = JpegCompression(75)
    with pytest.raises(DataError, match=r"\(N, 1, H, W\)"):
        pre(np.zeros((2, 3, 8, 8), np.float32))
    empty = pre(np.zeros((0, 1, 8, 8), np.float32))
    assert empty.shape == (0, 1, 8, 8)
    x = smooth_batch(2, 32)
    cost = pre.measure_cost(x, repeats=2)
    assert cost == pre.cost_ms_per_image and cost > 0
    g = np.ones_like(x)
    assert pre.estimate_gradient(x, g) is g
    d = pre.to_dict()
    assert d["name"] == "jpeg:75" and d["params"]["quality"] == 75 and d["gradient"] == "straight-through"


def test_outputs_stay_in_unit_range_for_out_of_range_input():
    x = np.linspace(-0.5, 1.5, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    for pre in (JpegCompression(50), BitDepthReduction(3), MedianSmoothing(3)):
        y = pre(x)
        assert y.min() >= 0.0 and y.max() <= 1.0 and y.dtype == np.float32


def test_jpeg_that_opencv_cannot_decode_is_a_data_error(monkeypatch):
    """``cv2.imdecode`` returns None for bytes it cannot decode: a one-line DataError naming the image (it used
    to be an AttributeError on None, an internal error)."""
    import cv2

    monkeypatch.setattr(cv2, "imdecode", lambda buf, flags: None)
    with pytest.raises(DataError, match="could not decode its JPEG of image 0"):
        JpegCompression(75)(smooth_batch(2))
