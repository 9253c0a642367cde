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


def test_results_json_equal_with_and_without_the_spill(tmp_path, monkeypatch):
    """The cached scan's results.json, times and stamps aside, is the same whether the passes read the spill."""
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
