"""The clean-image digest of a set's cache key is stored with the cache and checked against the pixels (issue 28),
the set builder's perturbation statistics equal a separate pass, and one module owns the cache layout.

The sets are built on lazy images (PNG files read through :class:`~auditor.data.stream.SampleImages`, as in a
scan) with a tiny surrogate, two images per batch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import auditor.attacks.clean_digest as clean_digest
from auditor.attacks.cache_layout import DIGESTS_DIR
from auditor.attacks.perturbation import perturbation_stats
from auditor.attacks.set_records import SetData, SetRun
from auditor.attacks.sets import build_adversarial_set
from auditor.data.stream import SampleImages, content_sha256
from auditor.hashing import array_sha256, sha256_file
from auditor.models.surrogate import load_surrogate
from tests.conftest import ScanSetup

CLASSES = ["normal", "pneumonia", "pneumothorax"]
N, SIZE = 5, 16
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("digest")
    path = ScanSetup.write_surrogate(root / "sur.pt", CLASSES, size=SIZE)
    surrogate = load_surrogate(str(path), None, None, "cpu")
    rng = np.random.default_rng(0)
    files = []
    for i in range(N):
        f = root / "data" / f"img{i}.png"
        f.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(f), rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8))
        files.append(f)
    return root, surrogate, files


def _images(files) -> SampleImages:
    """A fresh lazy set (no memo), identified by its files' SHA-256s as the data stage identifies them."""
    digests = np.stack([np.frombuffer(bytes.fromhex(sha256_file(f)), np.uint8) for f in files])
    return SampleImages([str(f) for f in files], (SIZE, SIZE), content_sha256(digests))


def _build(env, images, cache: str = "cache", only_batches=None):
    root, surrogate, files = env
    return build_adversarial_set(
        "mifgsm",
        {"epsilon": 8 / 255, "steps": 2},
        surrogate,
        SetData(images, np.array([0, 1, 2, 0, 1]), [f.name for f in files], "m" * 64),
        SetRun(root / cache, seed=0, batch_size=2, precision="fp32"),
        only_batches=only_batches,
    )


def _records(env, cache: str = "cache") -> list[Path]:
    return sorted((env[0] / cache / DIGESTS_DIR).glob("*.json"))


def test_the_digest_is_stored_and_a_later_build_needs_no_decode_for_it(env, monkeypatch):
    first = _build(env, _images(env[2]), "c1")
    (record,) = _records(env, "c1")
    want = array_sha256(np.asarray(_images(env[2])))
    assert json.loads(record.read_text())["images_sha256"] == want
    assert json.loads((first.dir / "request.json").read_text())["images_sha256"] == want

    def no_decode(images, batch_size=64):
        raise AssertionError("the clean images were decoded for the digest again")

    monkeypatch.setattr(clean_digest, "stream_digest", no_decode)
    again = _build(env, _images(env[2]), "c1")
    assert again.key == first.key and again.cache_hit and not again.warnings


def test_a_wrong_stored_digest_is_caught_by_the_pixels_and_replaced(env):
    good = _build(env, _images(env[2]), "c2")
    (record,) = _records(env, "c2")
    doc = json.loads(record.read_text())
    doc["images_sha256"] = "0" * 64  # edited by hand, or the files changed since it was stored
    record.write_text(json.dumps(doc))
    images = _images(env[2])
    again = _build(env, images, "c2")
    assert again.key == good.key  # looked up under the images' own key, never under the stored one
    assert any("stored digest of the clean images did not match" in w for w in again.warnings)
    assert (
        json.loads(record.read_text())["images_sha256"]
        == json.loads(good.dir.joinpath("request.json").read_text())["images_sha256"]
    )
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(good.images))


def test_a_record_of_other_files_is_not_used(env, tmp_path):
    """Changed file content changes the record's source: the digest is computed from the new pixels."""
    files = []
    for i, f in enumerate(env[2]):
        g = tmp_path / f.name
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        img[0, 0] = (int(img[0, 0]) + 1 + i) % 256
        cv2.imwrite(str(g), img)
        files.append(g)
    images = _images(files)
    _, _, unchecked = _key(env, images, "c1")  # c1 holds the record of the original files
    assert images._stream_sha256 == array_sha256(np.asarray(_images(files))) and not unchecked


def _key(env, images, cache):
    from auditor.attacks.cache import cache_request
    from auditor.attacks.registry import make_attack

    root, surrogate, files = env
    atk = make_attack("mifgsm", surrogate, epsilon=8 / 255)
    return cache_request(atk, {}, surrogate, images, np.zeros(N, np.int64), [], "m" * 64, 0, 2, True, root / cache)


def test_the_builder_statistics_equal_a_separate_pass(env):
    images = _images(env[2])
    aset = _build(env, images, "c3")
    assert aset.perturbation == perturbation_stats(_images(env[2]), aset.images)
    shard = _build(env, _images(env[2]), "c4", only_batches={0})
    assert shard.perturbation is None  # a shard has no whole-set statistics


def test_one_module_owns_the_cache_layout():
    """No module but :mod:`auditor.attacks.cache_layout` joins the cache's folder and file names."""
    pattern = re.compile(r'/ "(batches|digests|precision)"|"(request|index|perturbation)\.json"')
    owners = []
    for path in sorted((ROOT / "auditor").rglob("*.py")):
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "``")))
        code = re.sub(r'"""(.|\n)*?"""', "", code)  # docstrings may describe the layout
        if pattern.search(code):
            owners.append(str(path.relative_to(ROOT)))
    assert owners == ["auditor/attacks/cache_layout.py"]


def test_a_cached_set_takes_its_ssim_from_the_record_bound_to_its_pixels(env, monkeypatch):
    import skimage.metrics

    first = _build(env, _images(env[2]), "c5")
    record = first.dir / "perturbation.json"
    doc = json.loads(record.read_text())
    assert doc["stats"] == first.perturbation

    def no_ssim(*a, **k):
        raise AssertionError("SSIM computed again for a cached set with a valid record")

    monkeypatch.setattr(skimage.metrics, "structural_similarity", no_ssim)
    again = _build(env, _images(env[2]), "c5")
    assert again.cache_hit and again.perturbation == first.perturbation
    monkeypatch.undo()

    for field, value in (("linf_max", 0.5), ("binding", "0" * 64)):  # disagrees with the pixels: not used
        bad = json.loads(json.dumps(doc))
        if field == "binding":
            bad["binding"] = value
        else:
            bad["stats"][field] = value
        bad["stats"]["ssim_mean"] = 0.123
        record.write_text(json.dumps(bad))
        third = _build(env, _images(env[2]), "c5")
        assert third.perturbation == first.perturbation, field
        assert json.loads(record.read_text()) == doc  # rewritten from the pixels
