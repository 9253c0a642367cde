"""Streaming evaluation (issue 16): lazy image sets, the prefetching loader, bounded memory, Ray evaluation."""

from __future__ import annotations

import json
import tracemalloc

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.data import load_images, open_dataset
from auditor.data.stream import LazyImages, PngImages, SampleImages, prefetch, scan_readable, stream_digest
from auditor.errors import DataError, NonFiniteOutput
from auditor.evaluation import Throughput, predict_stream
from auditor.models.onnx import OnnxClassifier
from auditor.models.spec import read_spec
from auditor.scan.attack import build_sets
from auditor.scan.data import load_data
from auditor.scan.evaluate import evaluate_model
from auditor.scan.options import ScanOptions
from auditor.scan.pipeline import Auditor
from onnx_factory import make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


class Synthetic(LazyImages):
    """``n`` images made on access (image ``i`` has mean level ``(i % 3 + 0.5) / 3``): no files, no array."""

    def read(self, i: int) -> np.ndarray:
        rng = np.random.default_rng(i)
        return np.clip((i % 3 + 0.5) / 3 + rng.uniform(-0.05, 0.05, self.size), 0, 1).astype(np.float32)


def test_sample_images_index_like_the_decoded_array(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=3)
    samples = open_dataset(data).samples
    x, kept, _ = load_images(samples, (24, 24))
    lazy = SampleImages([samples[i].path for i in kept], (24, 24))
    assert lazy.shape == x.shape and len(lazy) == len(x)
    np.testing.assert_array_equal(np.asarray(lazy), x)
    np.testing.assert_array_equal(lazy[2:7], x[2:7])
    np.testing.assert_array_equal(lazy[np.array([5, 0, 3])], x[[5, 0, 3]])
    np.testing.assert_array_equal(lazy[x[:, 0, 0, 0] > 0.4], x[x[:, 0, 0, 0] > 0.4])
    np.testing.assert_array_equal(lazy[4, 0], x[4, 0])
    np.testing.assert_array_equal(lazy[-1], x[-1])
    np.testing.assert_array_equal(lazy.subset([8, 1])[:], x[[8, 1]])
    got = np.concatenate([b for _, b in lazy.batches(4)])
    np.testing.assert_array_equal(got, x)
    assert [s for s, _ in lazy.batches(4)] == [0, 4, 8]


def test_scan_readable_agrees_with_load_images(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=2)
    (data / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    samples = open_dataset(data).samples
    _, kept, skipped = load_images(samples, (32, 32))
    kept2, skipped2, on_grid = scan_readable(samples, (32, 32), batch_size=3)
    assert kept2 == kept and skipped2 == skipped and len(skipped) == 1
    assert on_grid is False  # 40 px sources shrunk to 32 px leave the 8-bit grid
    assert scan_readable(samples, (40, 40))[2] is True


def test_prefetch_keeps_a_fixed_number_of_batches_in_flight():
    made = []

    def jobs():
        for i in range(10):
            made.append(i)
            yield lambda i=i: i * i

    it = prefetch(jobs(), depth=2)
    assert next(it) == 0
    assert len(made) == 3  # the batch handed over plus two decoded ahead, not the whole stream
    assert list(it) == [i * i for i in range(1, 10)]


def test_prefetch_raises_a_job_error_in_order():
    def boom():
        raise ValueError("bad batch")

    it = prefetch([lambda: 1, boom, lambda: 3], depth=2)
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(it)


def test_an_abandoned_prefetch_closes_without_waiting_for_a_running_job():
    """Closing a prefetch stopped early (the garbage collector may do it in any thread, once inside another thread's
    start-up) must not join its workers: a job still running would hold the closing thread, a deadlock there."""
    import threading

    release = threading.Event()
    started = threading.Event()

    def slow():
        started.set()
        release.wait()
        return 2

    it = prefetch([lambda: 1, slow, lambda: 3], depth=2)
    assert next(it) == 1
    assert started.wait(10)
    closer = threading.Thread(target=it.close, daemon=True)
    closer.start()
    closer.join(10)
    blocked = closer.is_alive()
    release.set()  # let the worker end either way
    assert not blocked, "closing the stopped prefetch waited for its running job"


def test_stream_digest_equals_the_whole_array_digest():
    from auditor.attacks.cache import _digest

    lazy = Synthetic(11, (9, 7))
    assert stream_digest(lazy, batch_size=4) == _digest(np.asarray(lazy))


def test_png_images_refuse_a_file_changed_after_verification(tmp_path):
    img = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    ok, buf = cv2.imencode(".png", img)
    (tmp_path / "a.png").write_bytes(buf.tobytes())
    import hashlib

    pngs = PngImages(tmp_path, ["a.png"], (8, 8), [hashlib.sha256(buf.tobytes()).hexdigest()])
    np.testing.assert_array_equal(pngs[0, 0], img.astype(np.float32) / 255)
    cv2.imwrite(str(tmp_path / "a.png"), np.full((8, 8), 255, np.uint8))
    with pytest.raises(DataError, match="changed during the scan"):
        pngs[0]


class _NanRows:
    """A stand-in classifier: class 0 everywhere, NaN for the images listed in ``nan``."""

    path = "fake.onnx"

    def __init__(self, nan=()):
        self.nan, self.seen = set(nan), 0
        self.spec = type("S", (), {"num_classes": 2})()

    def predict_proba(self, x, batch_size=32):
        out = np.tile([0.75, 0.25], (len(x), 1))
        rows = [j for j in range(len(x)) if self.seen + j in self.nan]
        self.seen += len(x)
        if rows:
            raise NonFiniteOutput("nan", rows=tuple(rows))
        return out


def test_predict_stream_reports_non_finite_rows_by_their_global_index():
    with pytest.raises(NonFiniteOutput) as info:
        predict_stream(_NanRows(nan=(5, 13)), Synthetic(16, (4, 4)), batch_size=4)
    assert info.value.rows == (5, 13)


def test_predict_stream_equals_whole_array_inference(tmp_path):
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    clf = OnnxClassifier(model, spec=read_spec(model, overrides={"image_size": 32}))
    lazy = Synthetic(23, (32, 32))
    whole = clf.predict_proba(np.asarray(lazy), batch_size=5)
    np.testing.assert_array_equal(predict_stream(clf, lazy, 5), whole)
    jpeg = lambda x: np.round(x * 15) / 15  # noqa: E731 - a per-image transform on the loader thread
    np.testing.assert_array_equal(
        predict_stream(clf, lazy, 5, transform=jpeg), clf.predict_proba(jpeg(np.asarray(lazy)), batch_size=5)
    )


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_streamed_inference_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """400 images of 96 px (14.7 MB as one array) cost little more than 40: batches, not the set, are held."""
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES, size=96)
    clf = OnnxClassifier(model, spec=read_spec(model))
    small = _peak_bytes(lambda: predict_stream(clf, Synthetic(40, (96, 96)), 8))
    large = _peak_bytes(lambda: predict_stream(clf, Synthetic(400, (96, 96)), 8))
    assert large - small < 1_000_000  # holding the images would add 360 x 36.9 kB = 13 MB


def _scan_factory(tmp_path, size: int, options: ScanOptions):
    """``scan(n_per_class)``: writes an image folder of that many images per class at ``size`` px now, and
    returns a callable that runs a library scan of it (so only the scan is measured)."""
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES, size=size)

    def scan(n_per_class):
        data = write_image_folder(tmp_path / f"d{n_per_class}", n_per_class=n_per_class, size=size)
        target = OnnxClassifier(model, spec=read_spec(model))
        return lambda: Auditor(target, options, command="t").run(str(data))

    return scan


def test_clean_scan_memory_does_not_grow_with_the_archive(tmp_path):
    """A whole library scan: 300 images of 128 px cost a few MB more than 30 (loader jitter, outcomes), not 17 MB."""
    scan = _scan_factory(tmp_path, 128, ScanOptions(n_boot=50, batch_size=8))
    small, large = scan(10), scan(100)
    grow = _peak_bytes(large) - _peak_bytes(small)
    assert grow < 4_000_000, grow  # the in-memory loader grew by >= 270 x 64 kB (17.7 MB)


def test_clean_scan_keeps_a_few_hundred_bytes_per_image(tmp_path):
    """Per image a scan keeps its outcomes and one compact sample row, not a Python object graph.

    3,000 against 300 images of 16 px (no bootstrap, whose blocks grow up to a fixed size, and no detector):
    ~340 bytes per image at the peak here (the sample index, the results' sample table, the outcomes);
    ~570 with the data index held as ``Sample`` objects and the sample rows built as dicts (742b76f).
    """
    scan = _scan_factory(tmp_path, 16, ScanOptions(n_boot=0, batch_size=32, detector=False))
    small, large = scan(100), scan(1000)
    small()  # first-time costs (lazy imports, caches) outside the measurement
    peak_small = _peak_bytes(small)
    per_image = (_peak_bytes(large) - peak_small) / 2700
    assert per_image < 450, f"{per_image:.0f} bytes per image"


def test_throughput_nested_stages_count_their_time_once(monkeypatch):
    """A stage timed inside another keeps its own seconds; the enclosing one gets only the rest."""
    import auditor.evaluation as ev

    now = iter([10.0, 12.0, 17.0, 18.0, 20.0, 23.0])  # outer in, inner in/out, second inner in/out, outer out
    monkeypatch.setattr(ev.time, "perf_counter", lambda: next(now))
    t = Throughput()
    with t.timed("outer"):
        with t.timed("inner", 4):
            pass
        with pytest.raises(ValueError), t.timed("inner", 5):
            raise ValueError  # a failed block keeps its seconds, not its images
    assert t.as_dict() == {
        "inner": {"images": 4, "seconds": 7.0, "images_per_second": 0.6},
        "outer": {"images": 0, "seconds": 6.0, "images_per_second": None},
    }
    assert t.total_seconds == 13.0


def test_throughput_record():
    t = Throughput()
    t.add("clean", 10, 2.0)
    t.add("clean", 30, 2.0)
    t.add("read", 5, 0.0)
    assert t.as_dict() == {
        "clean": {"images": 40, "seconds": 4.0, "images_per_second": 10.0},
        "read": {"images": 5, "seconds": 0.0, "images_per_second": None},
    }


def test_scan_records_images_per_second_per_stage(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=3)
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(model),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--defenses",
            "jpeg:75",
            "--format",
            "json",
            "--n-boot",
            "0",
        ],
    )
    assert r.exit_code == 0, r.output
    env = json.loads((tmp_path / "o" / "results.json").read_text())["environment"]
    stages = env["seconds_per_stage"]
    # every step of the scan is a named stage (issue 28): nothing is left outside one
    assert set(stages) == {"scan", "data", "read", "defenses", "metrics", "clean", "defended", "examples", "results"}
    assert stages["clean"]["images"] == 9 and stages["defended"]["images"] == 9
    assert all(v["seconds"] >= 0 for v in stages.values())
    # the stages' exclusive seconds partition the scan: they add up to its total (up to rounding)
    assert sum(v["seconds"] for v in stages.values()) == pytest.approx(env["seconds_total"], abs=0.01 + 0.001 * 9)
    from auditor.report.schema import ValidationError, validate_document

    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    validate_document(doc)
    doc["environment"]["seconds_per_stage"]["clean"]["images"] = -1
    with pytest.raises(ValidationError):
        validate_document(doc)


def test_detector_runs_on_a_bounded_subset_of_a_large_scan(tmp_path, monkeypatch):
    import auditor.scan.detect as stage

    monkeypatch.setattr(stage, "DETECTOR_MAX_IMAGES", 10)
    data = write_image_folder(tmp_path / "d", n_per_class=5)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=CLASSES)
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(model),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "-q",
            "--surrogate",
            "target",
            "--attacks",
            "mifgsm",
            "--eps",
            "8",
            "--format",
            "json",
            "--n-boot",
            "0",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert r.exit_code == 0, r.output
    cal = json.loads((tmp_path / "o" / "results.json").read_text())["detector"]["calibration"]
    assert cal["subset_of"] == 15
    assert cal["calibration_images"] + cal["held_out_images"] == 10


@pytest.mark.heavy
def test_ray_evaluation_equals_a_single_process_run(tmp_path):
    """Every condition evaluated as Ray tasks (local cluster of 2 CPUs) gives exactly the single-process results."""
    pytest.importorskip("ray", reason="Ray not installed (pip install 'xray-audit[distributed]')")
    data = write_image_folder(tmp_path / "d", n_per_class=5)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=CLASSES)
    common = [
        "--surrogate",
        "target",
        "--attacks",
        "mifgsm,blend",
        "--eps",
        "8",
        "--defenses",
        "jpeg:75,median:3",
        "--format",
        "json",
        "--n-boot",
        "100",
        "-q",
        "--batch-size",
        "4",
        "--no-detector",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    local = CliRunner().invoke(cli, ["scan", str(model), "--data", str(data), "--out", str(tmp_path / "a"), *common])
    assert local.exit_code == 0, local.output
    ray_run = CliRunner().invoke(
        cli,
        [
            "scan",
            str(model),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "b"),
            *common,
            "--ray-address",
            "local",
            "--workers",
            "2",
        ],
    )
    assert ray_run.exit_code == 0, ray_run.output
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [c["name"] for c in a["conditions"]] == [c["name"] for c in b["conditions"]]
    assert len(a["conditions"]) == 1 + 5 + 2 * 6
    for ca, cb in zip(a["conditions"], b["conditions"]):
        assert ca["predictions"] == cb["predictions"], ca["name"]
        assert ca["probabilities"] == cb["probabilities"], ca["name"]
        assert ca["metrics"] == cb["metrics"], ca["name"]


def _attack_scan(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=3)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=CLASSES)
    target = OnnxClassifier(model, spec=read_spec(model, overrides={"image_size": 32}))
    aud = Auditor(
        target,
        ScanOptions(
            attacks=("mifgsm",),
            epsilons=(8 / 255,),
            surrogate="target",
            n_boot=0,
            detector=False,
            batch_size=4,
            cache_dir=str(tmp_path / "c"),
        ),
        command="t",
    )
    loaded = load_data(aud.context, str(data))
    return aud, loaded, list(build_sets(aud.context, loaded, aud.surrogates).sets)


def test_attacked_sets_are_read_back_from_the_cache_not_held(tmp_path):
    aud, loaded, sets = _attack_scan(tmp_path)
    assert isinstance(loaded.images, SampleImages)
    adv = sets[0].images
    assert isinstance(adv, PngImages) and len(adv) == len(loaded.images) == 9
    files = sorted(p.relative_to(adv.root).as_posix() for p in adv.root.rglob("*.png"))
    assert sorted(adv.files) == files  # every image is a cached PNG, read on access
    x = np.asarray(loaded.images)
    assert np.abs(np.asarray(adv) - x).max() <= 8 / 255 + 1e-6


def test_a_cached_png_changed_after_the_set_was_verified_is_refused(tmp_path):
    aud, loaded, sets = _attack_scan(tmp_path)
    adv = sets[0].images
    aud.context.scratch.close()  # the PNG path (with the scan's spill, see tests/test_spill.py)
    cv2.imwrite(str(adv.root / adv.files[4]), np.full((32, 32), 255, np.uint8))
    with pytest.raises(DataError, match="changed during the scan"):
        evaluate_model(aud.context, loaded, aud.target, sets, [])


@pytest.mark.parametrize("ray_address", [None, pytest.param("local", marks=pytest.mark.heavy)])
def test_a_defense_failing_on_the_stream_is_a_skip_with_its_own_reason(tmp_path, ray_address):
    if ray_address:
        pytest.importorskip("ray", reason="Ray not installed (pip install 'xray-audit[distributed]')")

    class BrokenDefense:  # local, so Ray's cloudpickle sends it by value to the workers
        name = "broken"

        def __call__(self, x):
            raise ValueError("cannot handle this")

    data = write_image_folder(tmp_path / "d", n_per_class=2)
    model = make_classifier(tmp_path / "m.onnx", class_names=CLASSES)
    target = OnnxClassifier(model, spec=read_spec(model, overrides={"image_size": 32}))
    aud = Auditor(target, ScanOptions(n_boot=0, ray_address=ray_address, workers=1), command="t")
    loaded = load_data(aud.context, str(data))
    conds = evaluate_model(aud.context, loaded, target, [], [BrokenDefense()])
    assert [c.name for c in conds] == ["clean"]
    assert [(s.name, s.reason, s.kind) for s in aud.skipped] == [
        ("broken", "defense failed on this data: cannot handle this", "defense")
    ]
