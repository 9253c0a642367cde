"""A full scan through the CLI: attacks x epsilons, defenses, detectors, compare, cache reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from auditor.cli import cli
from auditor.reference_models.registry import build_model, make_checkpoint
from onnx_factory import make_classifier, write_image_folder
from tests.conftest import ScanSetup

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def _surrogate_spec(class_names) -> dict:
    """The input contract of the tests' 32 px grey surrogate checkpoints."""
    return {
        "layout": "NCHW",
        "channels": 1,
        "height": 32,
        "width": 32,
        "scaling": "unit",
        "mean": [0.0],
        "std": [1.0],
        "class_names": list(class_names),
        "output_kind": "logits",
    }


@pytest.fixture(scope="module")
def setup(scan_setup):
    s = scan_setup("scan", classes=CLASSES, patient_manifest=True)
    other = make_classifier(s.root / "other.onnx", channels=3, scaling="imagenet", class_names=CLASSES)
    return s.root, s.data, s.target, other, s.surrogate


def _run(root, data, target, sur, out, *extra):
    args = ScanSetup(root, data, target, sur, tuple(CLASSES)).args(out, *extra, n_boot=50, formats="json,html")
    return CliRunner().invoke(cli, args)


def test_attack_defense_matrix_and_detector(setup):
    root, data, target, other, sur = setup
    r = _run(
        root,
        data,
        target,
        sur,
        "out",
        "--attacks",
        "mifgsm,usmm,stm",
        "--eps",
        "4,16",
        "--defenses",
        "jpeg:75,median:3",
        "--compare",
        str(other),
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "out" / "results.json").read_text())
    names = [c["name"] for c in doc["conditions"]]
    attacks = [f"{a}@{e}" for a in ("mifgsm", "usmm", "stm[randconv]") for e in (4, 16)]  # STM names its backend
    assert names[0] == "clean"
    assert set(attacks) <= set(names)
    for d in ("jpeg:75", "median:3"):
        assert f"{d}/clean" in names and all(f"{d}/{a}" in names for a in attacks)
    by = {c["name"]: c for c in doc["conditions"]}
    usmm = by["usmm@16"]
    assert usmm["attack"] == "usmm" and usmm["epsilon"] == pytest.approx(16 / 255)
    assert usmm["threat_model"] == "transfer" and usmm["surrogate"]
    for key in (
        "attack_success_rate",
        "flip_rate",
        "linf_mean",
        "l2_mean",
        "ssim_mean",
        "psnr_mean",
        "attack_success_rate_ci",
        "flip_rate_ci",
    ):
        assert key in usmm
    assert usmm["rates_bootstrap"]["unit"] == "patient"
    assert usmm["linf_max"] <= 16 / 255 + 1e-6
    assert "randconv" in by["stm[randconv]@16"]["label"]
    style = by["stm[randconv]@16"]["style_diversity"]
    assert style["copies"] > 0 and 0 <= style["near_affine_share"] <= 1 and "style_diversity" not in usmm
    assert by["jpeg:75/clean"]["cost_ms_per_image"] > 0
    det = doc["detector"]
    assert set(det["reference_based"]["per_condition"]) == set(attacks)
    assert "auc_edge" in det["reference_based"]["per_condition"]["usmm@16"]
    assert det["feature_squeezing"]["per_condition"]["stm[randconv]@4"]["n"] > 0
    assert len(doc["compared"]) == 1
    assert [c["name"] for c in doc["compared"][0]["conditions"]] == names
    html = (root / "out" / "report.html").read_text()
    assert "usmm@16" in html and "jpeg:75" in html and "stm[randconv]@16" in html
    assert "near-affine" in html  # the style-diversity figure next to the backend name


def test_second_scan_reuses_cached_sets(setup):
    root, data, target, other, sur = setup
    assert _run(root, data, target, sur, "a", "--attacks", "usmm", "--eps", "8", "--no-detector").exit_code == 0
    r = _run(root, data, other, sur, "b", "--attacks", "usmm", "--eps", "8", "--no-detector")
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "b" / "results.json").read_text())
    assert doc["conditions"][1]["cache_hit"] is True


def test_missing_stm_checkpoint_is_skipped_or_strict_error(setup):
    root, data, target, other, sur = setup
    r = _run(
        root, data, target, sur, "s", "--attacks", "stm", "--eps", "8", "--style-backend", "ghiasi", "--no-detector"
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "s" / "results.json").read_text())
    assert [c["name"] for c in doc["conditions"]] == ["clean"]
    assert doc["skipped"] and doc["skipped"][0]["kind"] == "attack"
    r = _run(root, data, target, sur, "s2", "--attacks", "stm", "--eps", "8", "--style-backend", "ghiasi", "--strict")
    assert r.exit_code == 1, r.output  # README: --strict and a skip -> 1, after the reports are written
    assert json.loads((root / "s2" / "results.json").read_text())["skipped"][0]["kind"] == "attack"


def test_blend_and_white_box(setup):
    root, data, target, other, sur = setup
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--out",
            str(root / "w"),
            "--surrogate",
            "target",
            "--attacks",
            "mifgsm,blend",
            "--eps",
            "8",
            "--cache-dir",
            str(root / "cache"),
            "--n-boot",
            "0",
            "-q",
            "--format",
            "json",
            "--no-detector",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "w" / "results.json").read_text())
    by = {c["name"]: c for c in doc["conditions"]}
    assert by["mifgsm@8"]["threat_model"] == "white-box"
    assert {"blend@0.1", "blend@1"} <= set(by) and by["blend@1"]["kind"] == "style_blend"


def test_surrogate_with_other_classes_is_refused(setup, tmp_path):
    root, data, target, other, _ = setup
    net = build_model("small_cnn", 3, 1)
    spec = _surrogate_spec(["a", "b", "c"])
    bad = tmp_path / "bad.pt"
    torch.save(make_checkpoint(net, "small_cnn", 3, 1, spec), bad)
    r = _run(root, data, target, bad, "x", "--attacks", "mifgsm", "--eps", "8")
    assert r.exit_code == 2 and "class" in r.output


def test_bpda_adaptive_conditions(setup):
    root, data, target, other, sur = setup
    r = _run(
        root,
        data,
        target,
        sur,
        "bpda",
        "--attacks",
        "mifgsm",
        "--eps",
        "8",
        "--defenses",
        "jpeg:75",
        "--bpda",
        "--no-detector",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "bpda" / "results.json").read_text())
    by = {c["name"]: c for c in doc["conditions"]}
    adaptive = by["mifgsm@8+bpda:jpeg:75"]
    assert adaptive["adaptive"] is True and adaptive["defense"] == "jpeg:75"
    assert adaptive["gradient"] == "straight-through"
    assert "accuracy_drop_vs_non_adaptive" in adaptive and isinstance(adaptive["benefit_vanishes"], bool)
    assert adaptive["linf_max"] <= 8 / 255 + 1e-6


def test_bpda_attacks_restricts_the_adaptive_check(setup):
    """--bpda-attacks mifgsm: the adaptive check runs with MI-FGSM only, and the report says which."""
    root, data, target, other, sur = setup
    r = _run(
        root,
        data,
        target,
        sur,
        "bpda_some",
        "--attacks",
        "mifgsm,usmm",
        "--eps",
        "8",
        "--defenses",
        "jpeg:75",
        "--bpda",
        "--bpda-attacks",
        "mifgsm",
        "--no-detector",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "bpda_some" / "results.json").read_text())
    adaptive = sorted(c["name"] for c in doc["conditions"] if "+bpda:" in c["name"])
    assert adaptive == ["mifgsm@8+bpda:jpeg:75"]
    assert doc["parameters"]["bpda_attacks"] == ["mifgsm"]
    html = (root / "bpda_some" / "report.html").read_text()
    assert "included (mifgsm)" in html


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--bpda-attacks", "mifgsm"), "needs --bpda"),
        (("--bpda", "--bpda-attacks", "stm"), "gradient attacks of this scan"),
    ],
)
def test_bpda_attacks_usage_errors(setup, extra, message):
    root, data, target, other, sur = setup
    r = _run(root, data, target, sur, "bpda_bad", "--attacks", "mifgsm", "--eps", "8", "--defenses", "jpeg:75", *extra)
    assert r.exit_code == 2 and message in r.output


def test_stated_caveats_reach_results_and_the_summary(setup):
    """--caveat: the auditor's own caveats about the data go into data.caveats and the executive summary."""
    root, data, target, other, sur = setup
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--out",
            str(root / "caveat"),
            "-q",
            "--format",
            "json,html",
            "--n-boot",
            "0",
            "--caveat",
            "pneumothorax films <b>JPEG</b>",
            "--caveat",
            "second caveat",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "caveat" / "results.json").read_text())
    assert doc["data"]["caveats"][:2] == [
        "stated by the auditor: pneumothorax films <b>JPEG</b>",
        "stated by the auditor: second caveat",
    ]
    html = (root / "caveat" / "report.html").read_text()
    summary = html[html.index('id="summary"') : html.index('id="data"')]
    assert 'id="stated-caveats"' in summary and "pneumothorax films &lt;b&gt;JPEG&lt;/b&gt;" in summary
    assert "<b>JPEG</b>" not in html  # autoescaped


def test_the_surrogate_is_loaded_once_per_scan(setup, monkeypatch):
    """Attacks, the feature defense and BPDA all use the surrogate: it is read and converted once."""
    import auditor.models.surrogate as mt

    root, data, target, other, sur = setup
    calls = []
    real = mt.load_surrogate

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(mt, "load_surrogate", counting)
    ref = next((data / "normal").glob("*.png"))
    r = _run(
        root,
        data,
        target,
        sur,
        "once",
        "--attacks",
        "mifgsm",
        "--eps",
        "8",
        "--defenses",
        f"jpeg:75,feature:{ref}",
        "--bpda",
        "--no-detector",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((root / "once" / "results.json").read_text())
    names = {c["name"] for c in doc["conditions"]}
    assert "mifgsm@8+bpda:jpeg:75" in names and any(n.startswith("feature:") for n in names)
    assert calls == [str(sur)]


@pytest.mark.heavy
def test_ray_distributed_sets_equal_local_ones(setup, tmp_path):
    """Batches computed by Ray tasks give exactly the set a single process computes."""
    pytest.importorskip("ray", reason="Ray not installed (pip install 'xray-audit[distributed]')")
    root, data, target, other, sur = setup
    common = ["--attacks", "mifgsm", "--eps", "8", "--no-detector", "--attack-batch-size", "3"]
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "ray"),
            "--surrogate",
            str(sur),
            "--cache-dir",
            str(tmp_path / "rc"),
            "--n-boot",
            "0",
            "-q",
            "--format",
            "json",
            "--ray-address",
            "local",
            "--workers",
            "2",
            *common,
        ],
    )
    assert r.exit_code == 0, r.output
    r2 = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "loc"),
            "--surrogate",
            str(sur),
            "--cache-dir",
            str(tmp_path / "lc"),
            "--n-boot",
            "0",
            "-q",
            "--format",
            "json",
            *common,
        ],
    )
    assert r2.exit_code == 0, r2.output
    a = json.loads((tmp_path / "ray" / "results.json").read_text())["conditions"][1]
    b = json.loads((tmp_path / "loc" / "results.json").read_text())["conditions"][1]
    assert a["predictions"] == b["predictions"] and a["linf_mean"] == b["linf_mean"]
    batches = sorted((tmp_path / "rc").glob("*/batches/*.json"))
    assert len(batches) == 4  # 12 images in batches of 3


def test_poisoned_cache_png_leaves_the_report_unchanged_and_warns(setup, tmp_path):
    """A white image written over a cached PNG is detected, the batch recomputed, the numbers unchanged."""
    import cv2

    root, data, target, other, sur = setup
    common = [
        "scan",
        str(target),
        "--data",
        str(data),
        "--surrogate",
        str(sur),
        "--attacks",
        "mifgsm",
        "--eps",
        "8",
        "--no-detector",
        "--n-boot",
        "50",
        "-q",
        "--format",
        "json",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "ref")]).exit_code == 0
    pngs = sorted((tmp_path / "c").glob("*/mifgsm_eps8/*/*.png"))
    assert pngs
    cv2.imwrite(str(pngs[0]), np.full_like(cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED), 255))
    r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "poisoned")])
    assert r.exit_code == 0, r.output
    ref = json.loads((tmp_path / "ref" / "results.json").read_text())
    got = json.loads((tmp_path / "poisoned" / "results.json").read_text())
    a, b = ref["conditions"][1], got["conditions"][1]
    assert b["predictions"] == a["predictions"] and b["metrics"] == a["metrics"]
    for key in ("linf_max", "linf_mean", "l2_mean", "ssim_mean", "attack_success_rate", "flip_rate"):
        assert b[key] == a[key]
    assert b["linf_max"] <= 8 / 255 + 1e-6 and b["cache_hit"] is False
    warned = [s for s in got["skipped"] if s["kind"] == "cache"]
    assert len(warned) == 1 and "SHA-256" in warned[0]["reason"] and "recomputed" in warned[0]["reason"]
    assert not [s for s in ref["skipped"] if s["kind"] == "cache"]
    cv2.imwrite(str(pngs[0]), np.zeros_like(cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)))
    r = CliRunner().invoke(cli, [*common, "--out", str(tmp_path / "strict"), "--strict"])
    assert r.exit_code == 1, r.output


def test_surrogate_with_nan_weights_is_refused_before_the_attack(setup, tmp_path):
    root, data, target, other, _ = setup
    torch.manual_seed(0)
    net = build_model("small_cnn", 3, 1)
    with torch.no_grad():
        next(net.parameters()).view(-1)[0] = float("nan")
    spec = _surrogate_spec(CLASSES)
    bad = tmp_path / "nan.pt"
    torch.save(make_checkpoint(net, "small_cnn", 3, 1, spec), bad)
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--surrogate",
            str(bad),
            "--attacks",
            "usmm",
            "--eps",
            "8",
            "--cache-dir",
            str(tmp_path / "c"),
            "-q",
            "--format",
            "json",
            "--no-detector",
        ],
    )
    assert r.exit_code == 3 and "NaN or infinite" in r.output
    assert not list((tmp_path / "c").rglob("*.png"))  # nothing was attacked


def _strict_case(kind, root, data, sur, monkeypatch):
    """Arguments of a scan that skips exactly one item of ``kind`` (and the data folder it reads)."""
    if kind == "image":
        broken = write_image_folder(root / "data_broken", n_per_class=4)
        (broken / "normal" / "broken.png").write_bytes(b"not a png")
        return broken, ["--attacks", "none"]
    if kind == "attack":
        return data, ["--attacks", "stm", "--eps", "8", "--style-backend", "ghiasi", "--no-detector"]
    if kind == "defense":  # the feature defense needs a torch surrogate's features
        ref = write_image_folder(root / "ref", classes=("r",), n_per_class=1) / "r" / "img_000.png"
        return data, ["--defenses", f"jpeg:75,feature:{ref}"]
    if kind == "bpda":  # a defense without a torch path cannot be attacked adaptively
        import auditor.defenses.bpda as bpda
        from auditor.types import Skipped

        monkeypatch.setattr(
            bpda, "defended_module", lambda module, pre: Skipped(f"bpda:{pre.name}", "no torch path (test)", "defense")
        )
        return data, ["--attacks", "mifgsm", "--eps", "8", "--defenses", "jpeg:75", "--bpda", "--no-detector"]
    assert kind == "detector"  # 6 images are too few to calibrate on 3 and test on 3
    few = write_image_folder(root / "data_few", n_per_class=2)
    return few, ["--attacks", "mifgsm", "--eps", "8"]


@pytest.mark.parametrize("kind", ["image", "attack", "defense", "bpda", "detector"])
def test_strict_makes_any_skip_exit_1_after_the_reports(setup, kind, monkeypatch, tmp_path):
    """One --strict policy: every kind of skip -> exit 1 once results.json and the HTML are written."""
    root, data, target, other, sur = setup
    data_dir, args = _strict_case(kind, tmp_path, data, sur, monkeypatch)
    surrogate = [] if kind == "defense" else ["--surrogate", str(sur)]  # no surrogate: no features to compare

    def scan(out, *extra):
        return CliRunner().invoke(
            cli,
            [
                "scan",
                str(target),
                "--data",
                str(data_dir),
                "--out",
                str(tmp_path / out),
                *surrogate,
                "--cache-dir",
                str(root / "cache"),
                "--n-boot",
                "0",
                "-q",
                "--format",
                "json,html",
                *args,
                *extra,
            ],
        )

    r = scan("lax")
    assert r.exit_code == 0, r.output
    r = scan("strict", "--strict")
    assert r.exit_code == 1, r.output
    assert f"skipped ({kind if kind != 'bpda' else 'defense'})" in r.output
    doc = json.loads((tmp_path / "strict" / "results.json").read_text())
    assert (tmp_path / "strict" / "report.html").is_file()
    kinds = [s["kind"] for s in doc["skipped"] + doc["data"]["skipped"]]
    assert kinds == [kind if kind != "bpda" else "defense"], kinds
    if kind == "bpda":
        assert doc["skipped"][0]["name"] == "bpda:jpeg:75"


def test_attack_stage_projection_and_seconds_per_image(setup, tmp_path):
    root, data, target, _, sur = setup
    args = [
        "scan",
        str(target),
        "--data",
        str(data),
        "--out",
        str(tmp_path / "o"),
        "--surrogate",
        str(sur),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--n-boot",
        "20",
        "--format",
        "json,html",
        "--no-progress",
        "--attacks",
        "mifgsm,usmm",
        "--eps",
        "8",
        "--attack-batch-size",
        "3",
        "--max-images",
        "6",
        "--no-detector",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("attack stage:")]
    # one projection after the first batch (usmm from its own probe, not scaled from mifgsm), a revised one
    # when the first usmm batch is measured
    assert len(lines) == 2, r.output
    assert "first mifgsm batch" in lines[0] and "projected" in lines[0] and "usmm from a probe" in lines[0]
    assert "first usmm batch" in lines[1] and "probe" not in lines[1] and "estimated" not in lines[1]
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    sets = doc["extras"]["adversarial_sets"]
    assert [s["name"] for s in sets] == ["mifgsm@8", "usmm@8"]
    assert all(s["seconds_per_image"] > 0 and not s["cache_hit"] for s in sets)
    assert "Seconds per image" in (tmp_path / "o" / "report.html").read_text()
    # --precision auto (the default) measured both precisions and the sets ran at the chosen one
    choice = doc["environment"]["precision_choice"]
    assert doc["parameters"]["precision"] == "auto" and choice["requested"] == "auto"
    assert choice["fp32_ms_per_row"] > 0 and choice["bf16_ms_per_row"] > 0
    assert {s["params"]["precision"] for s in sets} == {choice["chosen"]}
    assert "precision auto: " + choice["chosen"] in r.output
    again = CliRunner().invoke(cli, [*args[:5], str(tmp_path / "o2"), *args[6:]])
    assert again.exit_code == 0 and "attack stage:" not in again.output  # all cached: nothing to project
    assert "measured earlier" in again.output  # the same precision decision, so the cached sets are found
    assert all(
        s["seconds_per_image"] is None and s["cache_hit"]
        for s in json.loads((tmp_path / "o2" / "results.json").read_text())["extras"]["adversarial_sets"]
    )


def test_library_and_cli_share_the_default_set_cache(monkeypatch, tmp_path):
    """ScanOptions() and `xray-audit scan` without --cache-dir use the same folder: $XRAY_AUDIT_CACHE, else the
    XDG user cache; the library no longer writes a cache into the working directory."""
    from auditor.scan.options import ScanOptions, default_cache_dir

    monkeypatch.setenv("XRAY_AUDIT_CACHE", str(tmp_path / "sets"))
    assert ScanOptions().cache_dir == default_cache_dir() == str(tmp_path / "sets")
    monkeypatch.delenv("XRAY_AUDIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ScanOptions().cache_dir == str(tmp_path / "xdg" / "xray-audit")
    assert ScanOptions(cache_dir="mine").cache_dir == "mine"
