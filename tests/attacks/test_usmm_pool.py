"""The USMM mask pool is bounded: a seeded sample of at most ``mask_pool_size`` images, nothing more decoded."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from auditor.attacks.usmm import MASK_POOL_SIZE, USMM, bounded_mask_pool, mask_pool_indices
from auditor.data.stream import LazyImages
from tests.attacks.attack_nets import CountingNet


class CountingImages(LazyImages):
    """A lazy 8x8 image set whose image ``i`` is filled with ``i / n``; counts the images decoded."""

    def __init__(self, n: int) -> None:
        super().__init__(n, (8, 8))
        self.reads = 0

    def read(self, i: int) -> np.ndarray:
        self.reads += 1
        return np.full((8, 8), i / self._n, np.float32)


def _sha256_of_array(a: np.ndarray) -> str:
    """SHA-256 of dtype, shape and C-ordered bytes, the documented cache-key form, written out here with hashlib."""
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def test_pool_indices_bounded_seeded_and_uniform_over_the_stream():
    idx = mask_pool_indices(5000, 100, seed=3)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100 and np.all(np.diff(idx) > 0)
    assert idx.min() >= 0 and idx.max() < 5000
    assert np.array_equal(idx, mask_pool_indices(5000, 100, seed=3))  # deterministic under the seed
    assert not np.array_equal(idx, mask_pool_indices(5000, 100, seed=4))
    assert idx.max() > 2500  # drawn from the whole stream, not its head
    assert np.array_equal(mask_pool_indices(80, 100, seed=3), np.arange(80))  # n <= bound: every image, in order
    assert np.array_equal(mask_pool_indices(100, 100, seed=3), np.arange(100))
    with pytest.raises(ValueError):
        mask_pool_indices(10, 0)


def test_scan_pool_of_a_long_stream_decodes_only_the_sample():
    images, labels = CountingImages(3000), np.arange(3000) % 3
    cut = bounded_mask_pool(images, labels, size=50, seed=0)
    assert images.reads == 0 and len(cut["mask_pool"]) == 50 and len(cut["mask_pool_labels"]) == 50
    atk = USMM(CountingNet(), **cut)
    assert images.reads == 50 and tuple(atk._pool.shape) == (50, 1, 8, 8)
    want = mask_pool_indices(3000, 50, seed=0)
    assert np.allclose(atk._pool[:, 0, 0, 0].numpy(), want / 3000)
    assert np.array_equal(atk._pool_labels.numpy(), labels[want])


def test_pool_given_directly_is_cut_to_mask_pool_size():
    images, labels = CountingImages(400), np.arange(400) % 2
    atk = USMM(CountingNet(), mask_pool=images, mask_pool_labels=labels, mask_pool_size=40, mask_pool_seed=1)
    assert images.reads == 40 and atk._pool.shape[0] == 40
    again = USMM(
        CountingNet(), mask_pool=CountingImages(400), mask_pool_labels=labels, mask_pool_size=40, mask_pool_seed=1
    )
    assert atk.key_extras() == again.key_extras()


def test_small_pool_unchanged():
    """n <= MASK_POOL_SIZE: the pool is every image, and its digest (a cache-key part) is the old one."""
    rng = np.random.default_rng(0)
    x = rng.random((12, 1, 8, 8)).astype(np.float32)
    y = np.arange(12) % 3
    cut = bounded_mask_pool(x, y, seed=5)
    assert cut["mask_pool"] is x and cut["mask_pool_labels"] is y
    atk = USMM(CountingNet(), **cut)
    assert np.array_equal(atk._pool.numpy(), x)
    want = _sha256_of_array(x) + ":" + _sha256_of_array(y.astype(np.int64))
    assert atk.key_extras()["mask_pool_sha256"] == want
    assert MASK_POOL_SIZE >= 1000
