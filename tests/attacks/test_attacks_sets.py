"""Adversarial sets: 8-bit quantisation, PNG cache, cache hits, resume after interruption, statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attack_nets import CountingNet
from auditor.attacks.cache import output_names
from auditor.attacks.perturbation import perturbation_stats
from auditor.attacks.quantize import budget_levels, quantize
from auditor.attacks.set_records import SetData, SetRun
from auditor.attacks.sets import batch_seed, build_adversarial_set
from auditor.models.surrogate import Surrogate

H = W = 32


def _surrogate() -> Surrogate:
    return Surrogate(CountingNet(), ("a", "b", "c"), {"kind": "checkpoint", "sha256": ["0" * 64]}, "transfer")


def _data(n: int = 5):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (n, 1, H, W)).astype(np.float32)
    y = (np.arange(n) % 3).astype(np.int64)
    names = [f"{'abc'[i % 3]}/img{i}.png" for i in range(n)]
    return x, y, names


def test_quantize_rounds_and_keeps_the_budget():
    eps = 2 / 255
    # clean values on the 8-bit grid (as float32 k/255): the float budget holds exactly
    x = (np.array([128, 128, 10, 254, 0]) / 255).astype(np.float32)
    x_adv = np.array([128 + 2, 128 - 2, 10 + 2.3, 255, 0]) / 255
    k = quantize(x_adv, x, eps)
    assert k.tolist() == [130, 126, 12, 255, 0]
    assert np.abs(k / 255 - x.astype(np.float64)).max() <= eps + 1e-7
    assert quantize(np.array([12.6 / 255]), np.array([10 / 255], np.float32), eps)[0] == 12  # 13 is over budget
    assert quantize(np.array([11.4 / 255]), np.array([10 / 255], np.float32), eps)[0] == 11  # rounds, not floors
    # clean values off the grid (resized images): the levels within eps of the float value
    xo = np.array([10.3, 10.6, 127.5, 0.4]) / 255
    ko = quantize(np.array([12.6, 8.0, 129.5, 0.0]) / 255, xo, eps)
    assert ko.tolist() == [12, 9, 129, 0]  # [9, 12], [9, 12], [126, 129], [0, 2]
    assert np.abs(ko / 255 - xo).max() <= eps + 1e-12
    assert quantize(np.array([0.7]), np.array([0.7]), 0.1 / 255)[0] == round(0.7 * 255)  # E = 0: the clean level


def _budget_use(x: np.ndarray, eps: float) -> tuple[float, float, int, int]:
    """MI-FGSM on ``x`` (8-bit values as float32): mean |delta| before/after quantising (levels), max |k - g|, lost edges."""
    from auditor.attacks.mifgsm import MIFGSM

    y = torch.zeros(len(x), dtype=torch.long)
    x_adv = MIFGSM(CountingNet(), epsilon=eps, steps=5)(torch.from_numpy(x), y, seed=0).numpy()
    assert x_adv.dtype == np.float32
    k = quantize(x_adv, x, eps).astype(np.int32)
    g = np.rint(x.astype(np.float64) * 255).astype(np.int32)
    e = budget_levels(eps)
    before = np.abs(x_adv.astype(np.float64) - x) * 255
    on_edge = np.abs(before - e) < 1e-3
    lost = int((np.abs(k - g)[on_edge] != e).sum())
    return float(before.mean()), float(np.abs(k - g).mean()), int(np.abs(k - g).max()), lost


@pytest.mark.parametrize("eps_levels", [4, 8])
def test_quantize_uses_the_whole_budget_on_8bit_float32_images(eps_levels):
    rng = np.random.default_rng(1)
    x = (rng.integers(0, 256, (3, 1, 48, 48)) / 255).astype(np.float32)  # 8-bit grid, float32 like load_images
    before, after, worst, lost = _budget_use(x, eps_levels / 255)
    assert worst == eps_levels  # max |delta| = eps * 255 levels exactly
    assert lost == 0  # every pixel the attack put on the edge stays there
    assert after == pytest.approx(before, rel=0.01)


@pytest.mark.shared_data
def test_quantize_uses_the_whole_budget_on_real_chest_xrays(shared_cxr):
    from auditor.data import load_images, open_dataset

    samples = list(open_dataset(shared_cxr).samples)[::200][:4]
    size = (256, 256)  # the images' own size: no resize, 8-bit PNGs as float32
    x, kept, skipped = load_images(samples, size)
    if len(kept) < 2 or not np.allclose(x * 255, np.rint(x * 255), atol=1e-3):
        pytest.skip(f"{shared_cxr} has no readable 8-bit {size[0]}x{size[1]} images to test with")
    assert x.dtype == np.float32
    for e in (4, 8):
        before, after, worst, lost = _budget_use(x, e / 255)
        assert worst == e and lost == 0
        assert after == pytest.approx(before, rel=0.01)


def test_output_names_keep_sources():
    assert output_names(["normal/a.png", "pneumonia/a.jpg", "../b.dcm"]) == ["normal/a.png", "pneumonia/a.png", "b.png"]


def test_build_then_cache_hit(tmp_path):
    x, y, names = _data()
    sur = _surrogate()
    params = {"epsilon": 8 / 255, "steps": 2}
    s1 = build_adversarial_set("mifgsm", params, sur, SetData(x, y, names, "m" * 64), SetRun(tmp_path, 3, batch_size=2))
    assert not s1.cache_hit and s1.batches_computed == 3 and s1.label == "MI-FGSM"
    # x is off the 8-bit grid: every stored level stays within eps of the float clean value
    measured = float(np.abs(s1.images.astype(np.float64) - x).max())
    assert measured <= 8 / 255 + 1e-6 and s1.linf_max == pytest.approx(measured, abs=1e-9)
    assert np.allclose(s1.images * 255, np.rint(s1.images * 255), atol=1e-4)
    index = json.loads((s1.dir / "index.json").read_text())
    assert index["key"] == s1.key and len(index["files"]) == 5
    assert (s1.dir / "mifgsm_eps8" / "a" / "img0.png").is_file()
    rows = sur.module.rows
    s2 = build_adversarial_set("mifgsm", params, sur, SetData(x, y, names, "m" * 64), SetRun(tmp_path, 3, batch_size=2))
    assert s2.cache_hit and s2.key == s1.key and sur.module.rows == rows
    np.testing.assert_array_equal(s2.images, s1.images)
    s3 = build_adversarial_set("mifgsm", params, sur, SetData(x, y, names, "m" * 64), SetRun(tmp_path, 4, batch_size=2))
    assert s3.key != s1.key and not s3.cache_hit


def test_resume_after_interruption_computes_only_missing_batches(tmp_path):
    x, y, names = _data(5)
    params = {"epsilon": 4 / 255, "steps": 2, "mask_pool": x, "mask_pool_labels": y}
    full = build_adversarial_set(
        "usmm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path / "a", 1, batch_size=2)
    )

    calls = []

    def stop_after_first(n):
        calls.append(n)
        raise KeyboardInterrupt

    sur = _surrogate()
    with pytest.raises(KeyboardInterrupt):
        build_adversarial_set(
            "usmm",
            params,
            sur,
            SetData(x, y, names, "m"),
            SetRun(tmp_path / "b", 1, batch_size=2),
            progress=stop_after_first,
        )
    assert calls == [2] and sur.module.rows == 2 * 15 * 2
    assert not (tmp_path / "b" / full.key / "index.json").exists()
    sur2 = _surrogate()
    seen = []
    resumed = build_adversarial_set(
        "usmm", params, sur2, SetData(x, y, names, "m"), SetRun(tmp_path / "b", 1, batch_size=2), progress=seen.append
    )
    assert resumed.key == full.key and not resumed.cache_hit
    assert resumed.batches_loaded == 1 and resumed.batches_computed == 2
    assert sur2.module.rows == 3 * 15 * 2  # images 2..4 only, 15 copies, 2 steps
    assert seen == [2, 2, 1]
    np.testing.assert_array_equal(resumed.images, full.images)
    assert not list((tmp_path / "b").rglob(".tmp-*"))


def test_batch_seeds_differ_and_are_stable():
    assert batch_seed(0, 0) == batch_seed(0, 0) != batch_seed(0, 1) != batch_seed(1, 1)


def test_perturbation_stats_by_hand():
    x = np.zeros((2, 1, 8, 8), np.float32) + 0.5
    xa = x.copy()
    xa[0, 0, 0, 0] += 0.1
    st = perturbation_stats(x, xa)
    assert st["linf_max"] == pytest.approx(0.1, abs=1e-6)
    assert st["linf_mean"] == pytest.approx(0.05, abs=1e-6)
    assert st["l2_mean"] == pytest.approx(0.05, abs=1e-6)
    assert st["psnr_mean"] == pytest.approx((10 * np.log10(64 / 0.01) + 100) / 2, rel=1e-4)
    assert 0 < st["ssim_mean"] < 1
    assert perturbation_stats(x, x)["ssim_mean"] == pytest.approx(1.0)


def _poison(path, value: int = 255) -> None:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), np.full_like(img, value))


@pytest.mark.parametrize("complete", [True, False])
def test_poisoned_cache_png_is_recomputed_with_a_warning(tmp_path, complete):
    x, y, names = _data(5)
    x = (np.rint(x * 255) / 255).astype(np.float32)
    params = {"epsilon": 8 / 255, "steps": 2}
    ref = build_adversarial_set(
        "mifgsm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path / "ref", 3, batch_size=2)
    )
    s1 = build_adversarial_set(
        "mifgsm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path, 3, batch_size=2)
    )
    _poison(s1.dir / s1.files[3])  # a white image, far outside the budget, in batch 1
    if not complete:
        (s1.dir / "index.json").unlink()  # an interrupted set resumes through the same check
    s2 = build_adversarial_set(
        "mifgsm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path, 3, batch_size=2)
    )
    np.testing.assert_array_equal(s2.images, ref.images)
    assert not s2.cache_hit and s2.batches_computed == 1 and s2.batches_loaded == 2
    assert len(s2.warnings) == 1 and "batch 1" in s2.warnings[0] and "SHA-256" in s2.warnings[0]
    assert s2.linf_max <= 8 / 255 + 1e-6
    s3 = build_adversarial_set(
        "mifgsm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path, 3, batch_size=2)
    )
    assert s3.cache_hit and not s3.warnings  # the repaired set is trusted again


def test_cached_batch_outside_the_budget_is_refused_even_with_matching_hashes(tmp_path):
    x, y, names = _data(4)
    x = (np.rint(x * 255) / 255).astype(np.float32)
    params = {"epsilon": 4 / 255, "steps": 2}
    s1 = build_adversarial_set(
        "mifgsm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path, 0, batch_size=2)
    )
    png = s1.dir / s1.files[0]
    _poison(png, 0)
    marker = s1.dir / "batches" / "00000.json"
    doc = json.loads(marker.read_text())
    import hashlib

    doc["png_sha256"][0] = hashlib.sha256(png.read_bytes()).hexdigest()  # a writer that also forged the hash
    marker.write_text(json.dumps(doc))
    s2 = build_adversarial_set(
        "mifgsm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path, 0, batch_size=2)
    )
    assert len(s2.warnings) == 1 and "budget" in s2.warnings[0]
    assert np.abs(np.rint(s2.images * 255) - np.rint(x * 255)).max() <= 4


def test_each_batch_gets_its_own_random_draws(tmp_path, monkeypatch):
    """Two batches holding the same images come out different: each batch is attacked with its own seed
    (batch_seed(seed, b)), here STM's random convolutions. One seed for every batch (the fault below) makes
    them identical, which only the golden snapshot caught before."""
    import auditor.attacks.sets as sets_mod

    x2, y2, _ = _data(2)
    x, y = np.concatenate([x2, x2]), np.concatenate([y2, y2])
    names = [f"{'abc'[i % 3]}/twin{i}.png" for i in range(4)]
    params = {"epsilon": 8 / 255, "steps": 2, "style_backend": "randconv"}

    def build(folder):
        return build_adversarial_set(
            "stm", params, _surrogate(), SetData(x, y, names, "m"), SetRun(tmp_path / folder, 7, batch_size=2)
        ).images

    per_batch = build("a")
    assert not np.array_equal(per_batch[:2], per_batch[2:])
    np.testing.assert_array_equal(build("b"), per_batch)  # seeded: the same draws again
    monkeypatch.setattr(sets_mod, "batch_seed", lambda seed, batch: seed)  # the fault: one seed for all
    one_seed = build("c")
    np.testing.assert_array_equal(one_seed[:2], one_seed[2:])
