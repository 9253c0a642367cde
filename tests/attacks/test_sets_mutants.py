"""Quantisation, cache integrity and set bookkeeping (auditor/attacks/sets.py, auditor/attacks/cache.py), rule by rule.

Written to kill mutation survivors (``make mutation``, docs/mutation.md): each test pins one rule
of the 8-bit budget arithmetic, of the cache's integrity checks (a cached batch that does not prove
itself is recomputed, with a warning), or of what a finished set reports.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from attack_nets import CountingNet
from auditor.attacks import cache
from auditor.attacks.cache import _canonical, _decode_png, _digest, _surrogate_sha256, _write_png, output_names
from auditor.attacks.perturbation import perturbation_stats
from auditor.attacks.quantize import allowed_levels, budget_levels, check_levels, quantize
from auditor.attacks.set_records import SetData, SetRun
from auditor.attacks.sets import batch_seed, build_adversarial_set, eps_label
from auditor.errors import AuditError, DataError, UsageError
from auditor.models.surrogate import Surrogate

S = 8  # image side


def _surrogate() -> Surrogate:
    return Surrogate(CountingNet(), ("a", "b", "c"), {"kind": "checkpoint", "sha256": ["0" * 64]}, "transfer")


def _data(n: int = 5, grid: bool = True):
    x = np.random.default_rng(0).uniform(0.1, 0.9, (n, 1, S, S)).astype(np.float32)
    if grid:
        x = (np.rint(x * 255) / 255).astype(np.float32)
    return x, (np.arange(n) % 3).astype(np.int64), [f"{'abc'[i % 3]}/img{i}.png" for i in range(n)]


def _build(tmp_path, x, y, names, **kw):
    args = {"params": {"epsilon": 4 / 255, "steps": 1}, "seed": 3, "batch_size": 2}
    args.update(kw)
    params = args.pop("params")
    run = SetRun(
        tmp_path, args.pop("seed"), **{k: args.pop(k) for k in ("batch_size", "device", "precision") if k in args}
    )
    return build_adversarial_set("mifgsm", params, _surrogate(), SetData(x, y, names, "m" * 64), run, **args)


# --------------------------------------------------------------------------- budget arithmetic
def test_budget_levels():
    assert budget_levels(8 / 255) == 8
    assert budget_levels(8 / 255 + 1e-12) == 8 and budget_levels(8 / 255 - 1e-12) == 8  # one ulp either way
    assert budget_levels(8.5 / 255) == 8 and budget_levels(7.9 / 255) == 7
    assert budget_levels(0.1 / 255) == 0 and budget_levels(1.0) == 255


def test_allowed_levels_on_and_off_the_grid():
    eps = 2 / 255
    v = np.array([10.0, 10.00005, 10.0002, 10.5, 1.0, 254.0, 0.3, 10.3])
    lo, hi = allowed_levels(v / 255, eps)
    assert lo.dtype == np.int32 and hi.dtype == np.int32
    # on the grid (within 1e-4 levels): [g-2, g+2]; off it: [ceil(v-2), floor(v+2)]; clipped to [0, 255]
    assert lo.tolist() == [8, 8, 9, 9, 0, 252, 0, 9]
    assert hi.tolist() == [12, 12, 12, 12, 3, 255, 2, 12]
    lo0, hi0 = allowed_levels(np.array([10.3, 10.7, 10.0]) / 255, 0.2 / 255)  # E = 0: the nearest level
    assert lo0.tolist() == hi0.tolist() == [10, 11, 10]


def test_check_levels_returns_the_float_linf_and_counts_violations():
    x = np.array([[[[10.0, 20.0, 30.0]]]]) / 255
    k = np.array([[[[12, 19, 30]]]], np.uint8)
    assert check_levels(k, x, 2 / 255) == pytest.approx(2 / 255, rel=1e-6)
    with pytest.raises(DataError, match=r"^2 pixel\(s\) lie outside .*\(1 grey level"):
        check_levels(np.array([[[[12, 18, 30]]]], np.uint8), x, 1 / 255)


def test_black_pixels_with_a_sub_level_budget_stay_black():
    assert quantize(np.array([1 / 255, 0.9 / 255]), np.array([0.0, 0.0]), 0.5 / 255).tolist() == [0, 0]
    lo, hi = allowed_levels(np.array([0.0, 1.0]), 0.5 / 255)
    assert lo.tolist() == [0, 255] and hi.tolist() == [0, 255]


def test_quantize_is_rint_clamped_into_the_allowed_levels():
    x = np.array([100.0, 100.0, 100.0, 0.0, 255.0]) / 255
    xa = np.array([103.6, 96.4, 101.5, -3.0, 260.0]) / 255
    assert quantize(xa, x, 3 / 255).tolist() == [103, 97, 102, 0, 255]
    assert quantize(xa, x, 3 / 255).dtype == np.uint8


def test_batch_seed_derivation_is_pinned():
    """Resumed sets rely on it: numpy SeedSequence of (seed mod 2**32, batch), first 32-bit word."""
    assert batch_seed(5, 3) == int(np.random.SeedSequence([5, 3]).generate_state(1)[0])
    assert batch_seed(2**32 + 5, 3) == batch_seed(5, 3)
    assert batch_seed(2**31 + 5, 3) != batch_seed(5, 3)
    assert batch_seed(5, 3) != batch_seed(5, 4)


def test_eps_label():
    assert eps_label(8 / 255) == "8" and eps_label(16 / 255) == "16"
    assert eps_label(8.5 / 255) == "8.50" and eps_label(0.1) == "25.50"


# --------------------------------------------------------------------------- keys and names
def test_digest_covers_dtype_shape_and_bytes():
    a = np.arange(6, dtype=np.int32)
    assert _digest(a) == _digest(a.copy()) == _digest(np.repeat(a, 2)[::2])  # a strided view: same bytes
    assert _digest(a) != _digest(a.reshape(2, 3))
    assert _digest(a) != _digest(a.astype(np.uint32))
    assert _digest(a) != _digest(a[::-1])


def test_canonical_forms():
    arr = np.ones((2, 3), np.float32)
    assert _canonical(arr) == {"array_sha256": _digest(arr), "shape": [2, 3]}
    assert _canonical(torch.ones(2, 3)) == {"array_sha256": _digest(arr), "shape": [2, 3]}
    assert _canonical({"b": 1, "a": (1.5, "x")}) == {"a": [1.5, "x"], "b": 1}
    assert list(_canonical({"b": 1, "a": 2})) == ["a", "b"]
    assert _canonical(list(range(64))) == list(range(64))
    assert _canonical(list(range(65))) == {"array_sha256": _digest(np.arange(65)), "len": 65}
    assert _canonical(Path("/a/b")) == "/a/b"
    assert _canonical(np.int64(3)) == 3 and type(_canonical(np.float32(0.5))) is float
    assert _canonical(None) is None and _canonical(True) is True
    named = type("Backend", (), {"name": "randconv"})()
    assert _canonical(named) == "<Backend:randconv>"
    assert _canonical(object()) == "<object:>"


def test_surrogate_identity_is_its_checkpoint_sha_else_its_weights():
    assert _surrogate_sha256(_surrogate()) == ["0" * 64]
    a, b = CountingNet(), CountingNet()
    assert _surrogate_sha256(a) == _surrogate_sha256(b) and _surrogate_sha256(a)[0].startswith("weights:")
    with torch.no_grad():
        b.fc.bias[0] += 1e-6
    assert _surrogate_sha256(a) != _surrogate_sha256(b)
    bn = torch.nn.BatchNorm2d(2)
    bn2 = torch.nn.BatchNorm2d(2)
    bn2.num_batches_tracked += 1  # an integer buffer counts too
    assert _surrogate_sha256(bn) != _surrogate_sha256(bn2)


def test_output_names_are_safe_relative_and_unique():
    got = output_names(
        [
            "normal/a.dcm",
            "../../etc/x.png",
            "/abs/p.jpg",
            "C:\\scans\\f.png",
            "",
            "noext",
            "dir/A.png",
            "dir/a.png",
            ".",
        ]
    )
    assert got == [
        "normal/a.png",
        "etc/x.png",
        "abs/p.png",
        "C_/scans/f.png",
        "image_00004.png",
        "noext.png",
        "dir/A.png",
        "dir/a__7.png",
        "image_00008.png",
    ]


# --------------------------------------------------------------------------- files
def test_png_write_and_decode(tmp_path):
    img = np.arange(64, dtype=np.uint8).reshape(8, 8)
    digest = _write_png(tmp_path / "sub" / "a.png", img)
    data = (tmp_path / "sub" / "a.png").read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    np.testing.assert_array_equal(_decode_png(data), img)
    assert _decode_png(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()) is None  # colour
    assert _decode_png(cv2.imencode(".png", np.zeros((4, 4), np.uint16))[1].tobytes()) is None  # 16 bit
    assert _decode_png(b"not a png") is None


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path):
    target = tmp_path / "d"
    (target / "x").mkdir(parents=True)  # a non-empty directory cannot be replaced by a file
    with pytest.raises(AuditError, match="cannot write"):  # the one atomic writer maps OSError to its exit code
        cache._atomic_write_json(target, {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    cache._atomic_write_json(tmp_path / "ok.json", {"b": [1], "a": 2})
    assert (tmp_path / "ok.json").read_text() == '{\n "a": 2,\n "b": [\n  1\n ]\n}\n'


# --------------------------------------------------------------------------- building sets
def test_build_checks_its_inputs(tmp_path):
    x, y, names = _data(3)
    bad = [
        dict(x=x[:, 0]),
        dict(x=np.repeat(x, 3, 1)),
        dict(y=y[:2]),
        dict(names=names[:2]),
        dict(y=np.append(y, 0)),
        dict(names=names + ["extra.png"]),
        dict(y=y[:, None]),
        dict(batch_size=0),
        dict(batch_size=2.0),
    ]
    for change in bad:
        args = {"x": x, "y": y, "names": names}
        kw = {k: change.pop(k) for k in list(change) if k == "batch_size"}
        args.update(change)
        with pytest.raises(UsageError):
            _build(tmp_path, args["x"], args["y"], args["names"], **kw)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_a_fresh_set_records_what_it_is(tmp_path):
    x, y, names = _data(5)
    calls, timed = [], []
    s = _build(tmp_path, x, y, names, progress=calls.append, on_batch=lambda n, sec: timed.append((n, sec >= 0)))
    assert calls == [2, 2, 1] and timed == [(2, True), (2, True), (1, True)]
    assert (s.batches_computed, s.batches_loaded, s.cache_hit, s.attack, s.epsilon) == (3, 0, False, "mifgsm", 4 / 255)
    assert s.surrogate_rows == 5 and s.precision == "fp32" and s.device == "cpu" and s.backend is None
    assert s.files == tuple(f"mifgsm_eps4/{n}" for n in names) and not s.warnings
    assert s.linf_max == pytest.approx(4 / 255, abs=1e-6) and s.per_image is None and not s.partial
    from auditor.attacks.perturbation import perturbation_stats

    # the statistics computed on the walk are those of a separate pass over both sets
    assert s.perturbation == perturbation_stats(x, s.images)
    assert np.abs(s.images - x).max() <= 4 / 255 + 1e-6
    np.testing.assert_allclose(s.images * 255, np.rint(s.images * 255), atol=1e-4)
    request = json.loads((s.dir / "request.json").read_text())
    assert request["seed"] == 3 and request["batch_size"] == 2 and request["resolution"] == [S, S]
    assert request["params"] == {"epsilon": 4 / 255, "steps": 1, "precision": "fp32"}
    marker = json.loads((s.dir / "batches" / "00001.json").read_text())
    assert marker["batch"] == 1 and marker["files"] == list(s.files[2:4]) and marker["epsilon_levels"] == 4
    assert marker["seconds"] == round(marker["seconds"], 3) >= 0
    assert marker["clean_sha256"] == _digest(x[2:4]) and marker["manifest_sha256"] == "m" * 64
    assert marker["linf_max"] == pytest.approx(float(np.abs(s.images[2:4].astype(np.float64) - x[2:4]).max()))
    for f, d in zip(marker["files"], marker["png_sha256"]):
        assert hashlib.sha256((s.dir / f).read_bytes()).hexdigest() == d
    index = json.loads((s.dir / "index.json").read_text())
    assert (index["n"], index["batches"], index["names"], index["epsilon"]) == (5, 3, names, 4 / 255)
    assert index["params"] == s.params and index["label"] == "MI-FGSM"
    assert index["seconds_last_run"] == round(index["seconds_last_run"], 3) >= 0  # wall time to the millisecond


def test_a_cache_hit_loads_everything_and_computes_nothing(tmp_path):
    x, y, names = _data(5)
    first = _build(tmp_path, x, y, names)
    calls, timed = [], []
    hit = _build(tmp_path, x, y, names, progress=calls.append, on_batch=lambda n, s: timed.append(n))
    assert hit.cache_hit and (hit.batches_computed, hit.batches_loaded, hit.surrogate_rows) == (0, 3, 0)
    assert calls == [2, 2, 1] and timed == []
    np.testing.assert_array_equal(hit.images, first.images)
    assert hit.params == first.params and hit.label == "MI-FGSM" and hit.linf_max == first.linf_max
    assert hit.files == first.files and hit.key == first.key


def test_an_index_of_another_set_is_not_a_cache_hit(tmp_path):
    x, y, names = _data(4)
    first = _build(tmp_path, x, y, names)
    index = json.loads((first.dir / "index.json").read_text())
    index["files"] = index["files"][::-1]
    (first.dir / "index.json").write_text(json.dumps(index))
    again = _build(tmp_path, x, y, names)
    assert not again.cache_hit and again.batches_loaded == 2 and again.batches_computed == 0
    assert json.loads((first.dir / "index.json").read_text())["files"] == list(first.files)  # rewritten
    for other in ("f" * 64, "0" * 64):  # an index of another key, same files
        index = json.loads((first.dir / "index.json").read_text())
        (first.dir / "index.json").write_text(json.dumps(dict(index, key=other)))
        assert not _build(tmp_path, x, y, names).cache_hit
    (first.dir / "index.json").write_text("{not json")
    assert not _build(tmp_path, x, y, names).cache_hit
    assert _build(tmp_path, x, y, names).cache_hit


def test_a_shard_computes_only_its_batches_and_writes_no_index(tmp_path):
    x, y, names = _data(5)
    part = _build(tmp_path, x, y, names, only_batches={1})
    assert part.partial is True and not part.cache_hit and part.batches_computed == 1
    assert not part.images[:2].any() and not part.images[4:].any() and part.images[2:4].any()
    assert not (part.dir / "index.json").exists()
    full = _build(tmp_path, x, y, names)
    assert full.batches_loaded == 1 and full.batches_computed == 2 and not full.cache_hit
    np.testing.assert_array_equal(full.images[2:4], part.images[2:4])
    again = _build(tmp_path, x, y, names, only_batches={0, 1, 2})
    assert not again.cache_hit and again.partial and again.batches_loaded == 3


def _tamper(s, batch: int, edit) -> None:
    marker = s.dir / "batches" / f"{batch:05d}.json"
    doc = json.loads(marker.read_text())
    edit(doc, s)
    marker.write_text(json.dumps(doc))


def _forge_png(s, i: int, img: np.ndarray) -> None:
    """Replace PNG ``i`` and also forge its recorded SHA-256 (a writer with full access)."""
    path = s.dir / s.files[i]
    path.write_bytes(cv2.imencode(".png", img)[1].tobytes())

    def edit(doc, s):
        doc["png_sha256"][i % 2] = hashlib.sha256(path.read_bytes()).hexdigest()

    _tamper(s, i // 2, edit)


@pytest.mark.parametrize(
    "damage,reason",
    [
        (lambda s: (s.dir / "batches" / "00001.json").write_text("{oops"), "done-marker unreadable"),
        (lambda s: (s.dir / "batches" / "00001.json").write_text("[1, 2]"), "lists other files"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(files=d["files"][::-1])), "lists other files"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(manifest_sha256="z")), "other clean images"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(manifest_sha256="0")), "other clean images"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(clean_sha256="z")), "other clean images"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(clean_sha256="0")), "other clean images"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(png_sha256=d["png_sha256"][:1])), "no SHA-256 recorded"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(png_sha256=d["png_sha256"] * 2)), "no SHA-256 recorded"),
        (lambda s: _tamper(s, 1, lambda d, s: d.update(png_sha256="ab")), "no SHA-256 recorded"),
        (lambda s: os.unlink(s.dir / s.files[3]), "missing"),
        (lambda s: (s.dir / s.files[3]).write_bytes(b"x"), "changed since it was written"),
        (lambda s: _forge_png(s, 3, np.zeros((S, S + 1), np.uint8)), "not an 8-bit grey image"),
        (lambda s: _forge_png(s, 3, np.zeros((S, S, 3), np.uint8)), "not an 8-bit grey image"),
        (lambda s: _forge_png(s, 3, np.zeros((S, S), np.uint8)), "outside the epsilon budget"),
    ],
)
def test_a_cached_batch_that_fails_a_check_is_recomputed_with_its_reason(tmp_path, damage, reason):
    x, y, names = _data(5)
    ref = _build(tmp_path / "ref", x, y, names)
    s = _build(tmp_path / "c", x, y, names)
    damage(s)
    again = _build(tmp_path / "c", x, y, names)
    assert not again.cache_hit and (again.batches_loaded, again.batches_computed) == (2, 1)
    assert len(again.warnings) == 1 and again.warnings[0].startswith("mifgsm_eps4 batch 1: ")
    assert reason in again.warnings[0] and again.warnings[0].endswith("; the batch was recomputed")
    np.testing.assert_array_equal(again.images, ref.images)
    assert _build(tmp_path / "c", x, y, names).cache_hit


def test_perturbation_stats_edges():
    x = np.full((2, 1, 8, 8), 0.5)
    st = perturbation_stats(x, x)
    assert st["psnr_mean"] == 100.0 and st["linf_max"] == 0.0 and st["l2_mean"] == 0.0
    empty = np.zeros((0, 1, 8, 8))
    assert perturbation_stats(empty, empty) == {
        "linf_mean": 0.0,
        "linf_max": 0.0,
        "l2_mean": 0.0,
        "ssim_mean": 1.0,
        "psnr_mean": 100.0,
    }
    xa = x.copy()
    xa[1] += 0.25  # mse 0.0625: PSNR 12.04 dB; image 0 unchanged: 100
    st = perturbation_stats(x, xa)
    assert st["psnr_mean"] == pytest.approx((10 * np.log10(16) + 100) / 2)
    assert st["l2_mean"] == pytest.approx(0.25 * 8 / 2) and st["linf_mean"] == pytest.approx(0.125)
    with pytest.raises(ValueError):
        perturbation_stats(x, xa[:1])
    with pytest.raises(ValueError):
        perturbation_stats(x[0], xa[0])
