"""The scan's spill of verified cached sets (issue 28): each cached PNG is decoded once per scan, the later passes
read the verified levels back, every spilled row is checked, and anything that does not match comes from the PNG."""

from __future__ import annotations

import json
import os
import pickle

import cv2
import numpy as np
import pytest

import auditor.attacks.cache as cache
import auditor.data.spill as spill
from auditor.data.spill import ScanScratch, SpilledImages
from auditor.data.stream import PngImages
from auditor.errors import DataError
from auditor.models.onnx import OnnxClassifier
from auditor.models.spec import read_spec
from auditor.scan.attack import build_sets
from auditor.scan.data import load_data
from auditor.scan.options import ScanOptions
from auditor.scan.pipeline import Auditor
from onnx_factory import make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _auditor(tmp_path, **kw) -> Auditor:
    model = tmp_path / "m.onnx"
    if not model.exists():
        make_classifier(model, channels=1, class_names=CLASSES)
    target = OnnxClassifier(model, spec=read_spec(model, overrides={"image_size": 32}))
    opts = dict(
        attacks=("mifgsm",),
        epsilons=(4 / 255, 8 / 255),
        surrogate="target",
        n_boot=0,
        detector=False,
        batch_size=4,
        attack_batch_size=4,
        cache_dir=str(tmp_path / "c"),
    )
    return Auditor(target, ScanOptions(**{**opts, **kw}), command="t")


def _data(tmp_path):
    d = tmp_path / "d"
    return d if d.exists() else write_image_folder(d, n_per_class=3)


def _sets(tmp_path):
    aud = _auditor(tmp_path)
    loaded = load_data(aud.context, str(_data(tmp_path)))
    return aud, loaded, list(build_sets(aud.context, loaded, aud.surrogates).sets)


def _png_path(adv: PngImages) -> np.ndarray:
    """The set read from its PNGs alone (each checked against its SHA-256), as before the spill."""
    return np.asarray(
        PngImages(
            adv.root, list(adv.files), adv.size, [bytes(adv._sha[32 * i : 32 * i + 32]).hex() for i in range(len(adv))]
        )
    )


def _outcomes(doc) -> list:
    return [(c.name, np.asarray(c.probabilities).tolist(), list(c.predictions), c.metrics) for c in doc.conditions]


def test_each_cached_png_is_decoded_once_per_scan_and_the_outcomes_are_unchanged(tmp_path, monkeypatch):
    data = str(_data(tmp_path))
    _auditor(tmp_path, defenses="jpeg:75").run(data)  # builds both sets
    walk, reads = [], []
    decode = cache._decode_png
    png_read = PngImages.read
    monkeypatch.setattr(cache, "_decode_png", lambda b: walk.append(1) or decode(b))
    monkeypatch.setattr(PngImages, "read", lambda self, i: reads.append(i) or png_read(self, i))
    cached = _auditor(tmp_path, defenses="jpeg:75").run(data)
    assert [s["cache_hit"] for s in cached.extras["adversarial_sets"]] == [True, True]
    stages = cached.environment["seconds_per_stage"]
    assert stages["attacked"]["images"] == 18 and stages["defended"]["images"] == 27  # the passes did run
    # 9 images per set: each PNG decoded by the set walk only; surrogate, attacked and defended passes read the spill
    assert (len(walk), len(reads)) == (18, 0)
    # the same scan without a spill (every pass on the PNGs) gives the same outcomes
    monkeypatch.setattr(ScanScratch, "spill", lambda self, n, size: None)
    plain = _auditor(tmp_path, defenses="jpeg:75").run(data)
    assert len(reads) >= 18 * 3  # surrogate, attacked, defended (and the examples)
    assert _outcomes(plain) == _outcomes(cached)
    assert [s["key"] for s in plain.extras["adversarial_sets"]] == [s["key"] for s in cached.extras["adversarial_sets"]]


def test_a_tampered_spill_row_is_read_from_its_png_and_a_tampered_png_is_still_refused(tmp_path):
    aud, loaded, sets = _sets(tmp_path)
    adv = sets[0].images
    assert isinstance(adv, SpilledImages) and adv.fallbacks == 0
    want = _png_path(adv)
    assert np.array_equal(np.asarray(adv), want) and adv.fallbacks == 0
    row = adv.spill.row
    fd = os.open(adv.spill.path, os.O_WRONLY)
    try:
        os.pwrite(fd, bytes(row), 4 * row)  # row 4 zeroed on disk after it was spilled
    finally:
        os.close(fd)
    assert np.array_equal(np.asarray(adv), want) and adv.fallbacks == 1
    assert np.array_equal(adv[3:6], want[3:6]) and adv.fallbacks == 2
    cv2.imwrite(str(adv.root / adv.files[4]), np.full((32, 32), 255, np.uint8))
    with pytest.raises(DataError, match="changed during the scan"):
        np.asarray(adv)
    np.asarray(adv[5:9])  # the other rows still come from the spill
    aud.context.scratch.close()


def test_a_png_changed_after_verification_is_never_scored(tmp_path):
    aud, loaded, sets = _sets(tmp_path)
    adv = sets[0].images
    want = _png_path(adv)
    cv2.imwrite(str(adv.root / adv.files[4]), np.full((32, 32), 255, np.uint8))
    assert np.array_equal(np.asarray(adv), want)  # the verified levels, from the spill
    aud.context.scratch.close()
    with pytest.raises(DataError, match="changed during the scan"):  # no spill: the PNG path refuses it
        np.asarray(adv)


def test_the_scan_folder_is_removed_and_later_reads_fall_back(tmp_path):
    aud, loaded, sets = _sets(tmp_path)
    folder = aud.context.scratch.path()
    adv = sets[1].images
    assert isinstance(adv, SpilledImages) and adv.spill.path.parent == folder
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    want = _png_path(adv)
    aud.context.scratch.close()
    assert not folder.exists()
    assert np.array_equal(np.asarray(adv), want) and adv.fallbacks == len(adv)


def test_a_copy_sent_to_another_process_reads_the_spill_checked_or_the_pngs(tmp_path, monkeypatch):
    aud, loaded, sets = _sets(tmp_path)
    adv = sets[0].images
    want = _png_path(adv)
    copy = pickle.loads(pickle.dumps(adv))
    reads = []
    png_read = PngImages.read
    monkeypatch.setattr(PngImages, "read", lambda self, i: reads.append(i) or png_read(self, i))
    assert np.array_equal(np.asarray(copy), want) and reads == []  # opened the driver's file by its path
    gone = pickle.loads(pickle.dumps(adv))
    gone.spill.path = tmp_path / "elsewhere.u8"  # e.g. a worker on another host
    assert np.array_equal(np.asarray(gone), want) and len(reads) == len(adv)
    aud.context.scratch.close()


def test_no_spill_without_room_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "FREE_MARGIN_BYTES", 1 << 62)
    aud, loaded, sets = _sets(tmp_path)
    assert all(type(s.images) is PngImages for s in sets)
    aud.context.scratch.close()


#: what differs between two runs of the same scan: times and stamps (paths are made equal by :func:`_same_paths`)
VARYING = {"created", "finished", "seconds", "seconds_per_image", "cost_ms_per_image", "seconds_total"}


def _comparable(value, out: str):
    """``value`` without :data:`VARYING` keys, the output folder's name replaced."""
    if isinstance(value, dict):
        return {k: _comparable(v, out) for k, v in value.items() if k not in VARYING and k != "seconds_per_stage"}
    if isinstance(value, list):
        return [_comparable(v, out) for v in value]
    return value.replace(out, "OUT") if isinstance(value, str) else value


def _cli_scan(tmp_path):
    """``scan(out)``: a CLI scan with 2 cached MI-FGSM sets and a JPEG defense into ``tmp_path / out``; returns its
    results.json with times, stamps and the output path removed."""
    from click.testing import CliRunner

    from auditor.cli import cli

    data = _data(tmp_path)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=CLASSES)
    common = ["--surrogate", "target", "--attacks", "mifgsm", "--eps", "4,8", "--defenses", "jpeg:75", "-q"]
    common += ["--format", "json", "--n-boot", "50", "--batch-size", "4", "--cache-dir", str(tmp_path / "c")]

    def scan(out):
        r = CliRunner().invoke(cli, ["scan", str(model), "--data", str(data), "--out", str(tmp_path / out), *common])
        assert r.exit_code in (0, 1), r.output
        return _comparable(json.loads((tmp_path / out / "results.json").read_text()), str(tmp_path / out))

    return scan


def test_results_json_equal_with_and_without_the_spill(tmp_path, monkeypatch):
    """The cached scan's results.json, times and stamps aside, is the same whether the passes read the spill."""
    scan = _cli_scan(tmp_path)
    scan("build")
    spilled = scan("a")
    assert spilled["environment"]["platform"] and len(spilled["conditions"]) == 1 + 2 + 3
    monkeypatch.setattr(ScanScratch, "spill", lambda self, n, size: None)
    assert scan("b") == spilled


def test_the_walk_forms_each_batch_differences_once(tmp_path, monkeypatch):
    """The ε check's float64 differences of a batch give both the set's ``linf_max`` term and its perturbation
    statistics: one pass per batch, and the statistics form none of their own."""
    import auditor.attacks.perturbation as perturbation
    import auditor.attacks.sets as sets

    _sets(tmp_path)[0].context.scratch.close()  # builds the sets
    calls, own = [], []
    diff, norms = sets.level_difference, perturbation.image_norms
    monkeypatch.setattr(sets, "level_difference", lambda k, x, e: calls.append(len(k)) or diff(k, x, e))
    monkeypatch.setattr(perturbation, "image_norms", lambda d: own.append(len(d)) or norms(d))
    aud, loaded, again = _sets(tmp_path)
    assert sorted(calls) == sorted([4, 4, 1] * 2)  # 9 images in batches of 4, per set (checked on 2 threads)
    assert own == []
    assert [s.meta.cache_hit for s in again] == [True, True]
    aud.context.scratch.close()


def test_a_cached_walk_checks_its_batches_on_the_loader_threads_in_order(tmp_path, monkeypatch):
    """The PNG reads, decodes and ε checks of a cached set run ahead on the loader threads (overlapping the walk);
    what they find is used in batch order, and a batch failing there is recomputed with its warning."""
    import threading

    import auditor.attacks.sets as sets

    _sets(tmp_path)[0].context.scratch.close()  # builds the sets
    where = []
    verified = sets._verified_batch

    def recording(set_dir, marker, files, *rest):
        where.append((threading.current_thread().name, marker.name))
        return verified(set_dir, marker, files, *rest)

    monkeypatch.setattr(sets, "_verified_batch", recording)
    aud, loaded, again = _sets(tmp_path)
    assert len(where) == 6 and all(name.startswith("xray-audit-loader") for name, _ in where)
    assert [s.meta.cache_hit for s in again] == [True, True]
    adv = again[1].images
    aud.context.scratch.close()
    cv2.imwrite(str(adv.root / adv.files[5]), np.full((32, 32), 255, np.uint8))  # batch 1 of the eps-8 set
    aud, loaded, third = _sets(tmp_path)
    assert third[0].meta.cache_warnings == () and third[1].meta.cache_hit is False
    assert len(third[1].meta.cache_warnings) == 1 and "batch 1" in third[1].meta.cache_warnings[0]
    assert np.array_equal(np.asarray(third[1].images), np.asarray(again[1].images))  # recomputed identically
    aud.context.scratch.close()


def test_the_folder_of_a_killed_scan_is_removed_by_the_next_scan(tmp_path, monkeypatch):
    """A scan killed by a signal cannot remove its folder: the next scan removes it once that process is gone."""
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{spill.PREFIX}{int(done.stdout)}-abc"
    (dead / "x").mkdir(parents=True)
    live = tmp_path / f"{spill.PREFIX}{os.getppid()}-abc"  # the process running pytest's parent: alive
    live.mkdir()
    other = tmp_path / "xray-audit-scan-notapid-abc"
    other.mkdir()
    scratch = ScanScratch()
    folder = scratch.path()
    assert folder.parent == tmp_path and folder.name.startswith(f"{spill.PREFIX}{os.getpid()}-")
    assert not dead.exists() and live.exists() and other.exists()
    scratch.close()
    assert not folder.exists()


# --------------------------------------------------------------------------- the clean images' spill
def _count_decodes(monkeypatch) -> dict:
    """Every decode of a clean file by the scan (the readability pass and :class:`SampleImages`), per path."""
    import collections

    import auditor.data.stream as stream

    counts: dict = collections.Counter()
    decode = stream.load_image_noted
    monkeypatch.setattr(stream, "load_image_noted", lambda p, size=None: counts.update([str(p)]) or decode(p, size))
    return counts


def test_each_clean_file_is_decoded_once_per_scan(tmp_path, monkeypatch):
    """A cached scan with a defense and the detector decodes each clean file once (the data stage's read); the
    set walks, surrogate, clean, defended, detector and examples passes read the spill of that decode."""
    data = str(_data(tmp_path))
    _auditor(tmp_path).run(data)  # builds both sets
    counts = _count_decodes(monkeypatch)
    cached = _auditor(tmp_path, defenses="jpeg:75", detector=True).run(data)
    assert [s["cache_hit"] for s in cached.extras["adversarial_sets"]] == [True, True]
    stages = cached.environment["seconds_per_stage"]
    assert stages["clean"]["images"] == 9 and stages["defended"]["images"] == 27 and cached.detector is not None
    assert len(counts) == 9 and set(counts.values()) == {1}


def test_a_tampered_clean_row_is_decoded_from_its_file_and_the_outcomes_are_unchanged(tmp_path, monkeypatch):
    data = str(_data(tmp_path))
    _auditor(tmp_path).run(data)  # builds both sets
    plain = _auditor(tmp_path, defenses="jpeg:75").run(data)
    spills = []
    make = ScanScratch.clean_spill

    def tampering(self, n, size):
        out = make(self, n, size)
        put = out.put

        def put_then_zero(i, img, levels=None):  # row 4's bytes zeroed on disk right after they were written
            done = put(i, img, levels)
            if i == 4:
                os.pwrite(out.fd, bytes(out.row), int(out.offset[i]) * out.row)
            return done

        out.put = put_then_zero
        spills.append(out)
        return out

    monkeypatch.setattr(ScanScratch, "clean_spill", tampering)
    counts = _count_decodes(monkeypatch)
    tampered = _auditor(tmp_path, defenses="jpeg:75").run(data)
    assert len(spills) == 1 and spills[0].fallbacks >= 4  # sets' walks, surrogate, clean, defended...
    assert sorted(counts.values()) == [1] * 8 + [1 + spills[0].fallbacks]  # only row 4 decoded again
    assert _outcomes(tampered) == _outcomes(plain)


def test_results_json_equal_with_and_without_the_clean_spill(tmp_path, monkeypatch):
    """The cached scan's results.json (times and stamps aside) is the same whether the clean images come from the
    spill of their first decode or are decoded by every pass."""
    scan = _cli_scan(tmp_path)
    scan("build")
    counts = _count_decodes(monkeypatch)
    spilled = scan("a")
    assert len(counts) == 9 and set(counts.values()) == {1} and len(spilled["conditions"]) == 1 + 2 + 3
    monkeypatch.setattr(ScanScratch, "clean_spill", lambda self, n, size: None)
    assert scan("b") == spilled
    assert min(counts.values()) > 2  # without the spill every pass decodes the files


def _decoded(images) -> np.ndarray:
    """``images`` decoded from their files, as before the clean spill."""
    from auditor.data.decode import load_image_noted

    return np.stack([load_image_noted(p, images.size)[0] for p in images.paths])[:, None]


def test_off_grid_images_are_spilled_as_floats_and_read_back_bit_for_bit(tmp_path):
    """40 px files fitted to a 32 px model are off the 8-bit grid: their float32 rows are spilled as they are."""
    from onnx_factory import write_image_folder as write

    data = write(tmp_path / "d", n_per_class=3, size=40)
    aud = _auditor(tmp_path)
    images = load_data(aud.context, str(data)).images
    want = _decoded(images)
    assert all(spill.exact_levels(want[i, 0]) is None for i in range(len(want)))  # off the grid indeed
    kinds = set(images.spill.spill.has)
    assert kinds == {2}  # every row stored as float32
    got = np.asarray(images)
    assert got.tobytes() == want.tobytes() and images.spill.spill.fallbacks == 0
    aud.context.scratch.close()


def test_on_grid_images_are_spilled_as_levels_and_read_back_bit_for_bit(tmp_path):
    from onnx_factory import write_image_folder as write

    data = write(tmp_path / "d", n_per_class=3, size=32)
    aud = _auditor(tmp_path)
    images = load_data(aud.context, str(data)).images
    assert set(images.spill.spill.has) == {1}  # one byte a pixel
    want = _decoded(images)
    assert np.asarray(images).tobytes() == want.tobytes() and images.spill.spill.fallbacks == 0
    assert np.asarray(images[[8, 2, 5]]).tobytes() == want[[8, 2, 5]].tobytes()
    aud.context.scratch.close()


def test_exact_levels_refuses_any_value_off_the_grid():
    grid = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = grid.astype(np.float32) / 255.0
    assert np.array_equal(spill.exact_levels(img), grid)
    nudged = img.copy()
    nudged[3, 3] = np.nextafter(nudged[3, 3], np.float32(1))  # one ulp off
    assert spill.exact_levels(nudged) is None
    negative_zero = img.copy()
    negative_zero[0, 0] = -0.0  # equal as a number, not bit for bit
    assert spill.exact_levels(negative_zero) is None


def test_skips_and_duplicates_keep_their_rows_and_their_records(tmp_path, monkeypatch):
    """An unreadable file is skipped once with its reason and a duplicate once, as without the spill; every kept
    image reads its own row."""
    import shutil

    data = _data(tmp_path)
    (data / "normal" / "broken.png").write_bytes(b"\x89PNG not really")
    shutil.copy(data / "pneumonia" / "img_004.png", data / "pneumonia" / "img_004_copy.png")
    aud = _auditor(tmp_path)
    loaded = load_data(aud.context, str(data))
    assert loaded.images.spill is not None and loaded.images.spill.rows is not None
    want = _decoded(loaded.images)
    assert np.asarray(loaded.images).tobytes() == want.tobytes() and loaded.images.spill.spill.fallbacks == 0
    aud.context.scratch.close()
    monkeypatch.setattr(ScanScratch, "clean_spill", lambda self, n, size: None)
    again = _auditor(tmp_path)
    plain = load_data(again.context, str(data))
    assert plain.images.spill is None and plain.info == loaded.info
    assert [(s["name"], s["reason"][:22]) for s in loaded.info["skipped"]] == [
        ("normal/broken.png", "not a recognised image"),
        ("pneumonia/img_004_copy.png", "exact duplicate of pne"),
    ]
    assert list(loaded.images.spill.rows) == [1, 2, 3, 4, 5, 7, 8, 9, 10]  # the broken file and the copy left out
    again.context.scratch.close()


def test_float_rows_beyond_the_room_left_are_not_spilled_and_read_from_their_files(tmp_path, monkeypatch):
    """Room for every row as 8-bit levels, not as floats: the off-grid rows that fit are spilled, the others
    decoded."""
    import collections

    from onnx_factory import write_image_folder as write

    data = write(tmp_path / "d", n_per_class=3, size=40)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(spill.shutil, "disk_usage", lambda p: usage(0, 0, spill.FREE_MARGIN_BYTES + 9 * 32 * 32))
    aud = _auditor(tmp_path)
    images = load_data(aud.context, str(data)).images
    assert sorted(images.spill.spill.has) == [0] * 7 + [2] * 2  # two float rows of 4 KiB fit in 9 KiB
    assert np.asarray(images).tobytes() == _decoded(images).tobytes() and images.spill.spill.fallbacks == 7
    aud.context.scratch.close()


def test_a_clean_subset_sent_to_another_process_reads_the_spill_checked_or_decodes(tmp_path, monkeypatch):
    aud = _auditor(tmp_path)
    images = load_data(aud.context, str(_data(tmp_path))).images
    shard = images.subset(range(3, 7))
    want = _decoded(shard)
    copy = pickle.loads(pickle.dumps(shard))
    assert copy.spill.spill.n == 4 and copy.spill.rows is None  # the shard's own digests only
    counts = _count_decodes(monkeypatch)
    assert np.asarray(copy).tobytes() == want.tobytes() and not counts  # opened the driver's file by its path
    gone = pickle.loads(pickle.dumps(shard))
    gone.spill.spill.path = tmp_path / "elsewhere.raw"  # e.g. a worker on another host
    assert np.asarray(gone).tobytes() == want.tobytes() and sum(counts.values()) == 4
    aud.context.scratch.close()
    assert np.asarray(images).tobytes() == _decoded(images).tobytes()  # after the scan: decoded again
    assert images.spill.spill.fallbacks == len(images)


def test_no_clean_spill_without_room_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "FREE_MARGIN_BYTES", 1 << 62)
    aud = _auditor(tmp_path)
    images = load_data(aud.context, str(_data(tmp_path))).images
    assert images.spill is None
    aud.context.scratch.close()


def test_the_grid_verdict_from_exact_levels_is_the_float64_one():
    """``on_8bit_grid`` takes the readability pass's exact levels as proof of the grid and falls back to the float64
    test otherwise: on every kind of image the verdict is the one the float64 test alone gives."""
    from auditor.data.decode import exact_levels, on_8bit_grid

    def plain(img):
        c = img.astype(np.float64) * 255.0
        return bool(c.size == 0 or np.abs(c - np.rint(c)).max() <= 1e-3)

    rng = np.random.default_rng(5)
    levels = rng.integers(0, 256, (16, 16)).astype(np.float32)
    cases = {
        "8-bit": levels / np.float32(255.0),
        "resized": rng.random((16, 16), dtype=np.float32),
        "within the tolerance": (levels + np.float32(5e-4)) / np.float32(255.0),
        "just beyond it": (levels + np.float32(2e-3)) / np.float32(255.0),
        "16-bit": rng.integers(0, 65536, (16, 16)).astype(np.float32) / np.float32(65535.0),
        "negative zero": np.where(levels > 128, levels / np.float32(255.0), np.float32(-0.0)).astype(np.float32),
        "empty": np.zeros((0, 16), np.float32),
    }
    for name, img in cases.items():
        exact = exact_levels(img) if img.size else None
        assert on_8bit_grid(img, exact) == on_8bit_grid(img) == plain(img), name
    assert exact_levels(cases["8-bit"]) is not None and exact_levels(cases["negative zero"]) is None
    assert plain(cases["within the tolerance"]) and not plain(cases["just beyond it"])
