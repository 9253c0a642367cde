"""Bad flags: exit 2 with one line, checked before any image is read or attacked."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.data import parse_label_map
from tests.hostile.helpers import assert_outcome, invoke, load_json, run_and_check, scan_args, tiny_model


def _file(tmp_path: Path) -> Path:
    f = tmp_path / "plain-file"
    f.write_text("x")
    return f


BAD_SCAN_FLAGS = {
    "cache_dir_under_file": lambda t: ["--attacks", "blend", "--cache-dir", _file(t) / "cache"],
    "cache_dir_is_file": lambda t: ["--attacks", "blend", "--cache-dir", _file(t)],
    "median_huge": lambda t: ["--defenses", "median:999999"],
    "median_even": lambda t: ["--defenses", "median:4"],
    "jpeg_quality_500": lambda t: ["--defenses", "jpeg:500"],
    "jpeg_quality_text": lambda t: ["--defenses", "jpeg:high"],
    "bitdepth_zero": lambda t: ["--defenses", "bitdepth:0"],
    "defense_unknown": lambda t: ["--defenses", "tinfoil"],
    "denoiser_missing": lambda t: ["--defenses", f"denoiser:{t / 'no.onnx'}"],
    "feature_ref_is_folder": lambda t: ["--defenses", f"feature:{t}"],
    "gate_unknown": lambda t: ["--fail-under", "speed=3"],
    "gate_out_of_range": lambda t: ["--fail-under", "accuracy=2"],
    "gate_nan": lambda t: ["--fail-under", "accuracy=nan"],
    "gate_twice": lambda t: ["--fail-under", "accuracy=0.5,accuracy=0.6"],
    "eps_huge": lambda t: ["--eps", "300"],
    "eps_text": lambda t: ["--eps", "abc"],
    "attack_unknown": lambda t: ["--attacks", "pgd", "--surrogate", "target"],
    "attack_without_surrogate": lambda t: ["--attacks", "usmm"],
    "surrogate_missing": lambda t: ["--attacks", "usmm", "--surrogate", t / "missing.pt"],
    "style_image_missing": lambda t: ["--attacks", "blend", "--style-image", t / "missing.png"],
    "format_unknown": lambda t: ["--format", "json,xlsx"],
    "batch_size_zero": lambda t: ["--batch-size", "0"],
    "batch_size_huge": lambda t: ["--batch-size", "100000"],
    "attack_batch_size_huge": lambda t: ["--attack-batch-size", "100000"],
    "n_boot_huge": lambda t: ["--n-boot", "10000000"],
    "image_size_huge": lambda t: ["--image-size", "20000"],
    "label_map_no_equals": lambda t: ["--label-map", "oops"],
    "label_map_empty_side": lambda t: ["--label-map", "=normal"],
    "mean_text": lambda t: ["--scaling", "custom", "--mean", "abc", "--std", "1"],
    "mean_nan": lambda t: ["--scaling", "custom", "--mean", "nan", "--std", "1"],
    "std_zero": lambda t: ["--scaling", "custom", "--mean", "0.5", "--std", "0"],
    "unknown_option": lambda t: ["--turbo"],
    "channels_choice": lambda t: ["--channels", "2"],
}


@pytest.mark.parametrize("case", sorted(BAD_SCAN_FLAGS))
def test_bad_scan_flag(case, model, data, tmp_path):
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out, *BAD_SCAN_FLAGS[case](tmp_path)), 2)


@pytest.mark.parametrize(
    "flags",
    [["--defenses", "jpeg:500"], ["--defenses", "median:999999"], ["--attacks", "blend", "--cache-dir", "FILE/cache"]],
)
def test_flags_are_checked_before_the_data_is_read(flags, model, tmp_path):
    """A data path that does not exist would be exit 3: exit 2 proves the flag was checked first."""
    flags = [str(_file(tmp_path) / "cache") if f == "FILE/cache" else f for f in flags]
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, tmp_path / "no-data", out, *flags), 2)
    assert "data" not in r.stderr.split("error:", 1)[1].split(":")[0]


def test_defense_checked_before_any_attack(model, data, tmp_path):
    """``--defenses jpeg:500`` with attacks: refused before the adversarial-set cache is touched."""
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    run_and_check(
        out,
        scan_args(model, data, out, "--attacks", "blend", "--cache-dir", cache, "--defenses", "jpeg:75,jpeg:500"),
        2,
    )
    assert not cache.exists()


def test_unknown_gate_class_is_usage_error(model, data, tmp_path):
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, data, out, "--fail-under", "sensitivity:martian=0.5"), 2)
    assert "martian" in r.stderr and "pneumonia" in r.stderr


def test_known_gate_class_any_case_is_accepted(model, data, tmp_path):
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out, "--fail-under", "sensitivity:PNEUMONIA=0.5"), 0)


def test_report_unknown_gate_class(hostile_base, tmp_path):
    out = tmp_path / "out"
    run_and_check(
        out,
        [
            "report",
            hostile_base["results"],
            "--out",
            out,
            "--format",
            "json",
            "--fail-under",
            "robust_sensitivity:martian=0.5",
        ],
        2,
    )


def test_label_map_splits_at_the_first_equals(tmp_path, data):
    assert parse_label_map("sick=a=b,Normal = x") == {"sick": "a=b", "normal": "x"}
    model = tiny_model(tmp_path / "m.onnx", class_names=("normal", "pneumonia", "ptx=pneumothorax"))
    out = tmp_path / "out"
    run_and_check(out, scan_args(model, data, out, "--label-map", "pneumothorax=ptx=pneumothorax"), 0)
    assert load_json(out / "results.json")["data"]["per_class"]["ptx=pneumothorax"] == 3


@pytest.mark.parametrize(
    "recipe, lr",
    [
        ("reference", "nan"),
        ("reference", "-1"),
        ("reference", "0"),
        ("augment", "inf"),
        ("adversarial", "abc"),
        ("denoiser", "-0.001"),
    ],
)
def test_train_rejects_bad_learning_rate(recipe, lr, tmp_path):
    args = ["train", recipe, "--data", tmp_path, "--out", tmp_path / "o", "--lr", lr]
    if recipe in ("adversarial", "denoiser"):
        args += ["--init" if recipe == "adversarial" else "--surrogate", _file(tmp_path)]
    assert_outcome(invoke(*args), 2)


def test_out_under_a_regular_file(model, data, tmp_path):
    r = invoke(*scan_args(model, data, _file(tmp_path) / "out"))
    assert_outcome(r, 2)


def test_debug_still_shows_a_traceback_for_internal_details(model, tmp_path):
    """``--debug`` adds the traceback (here of the usage error) and keeps the documented exit code."""
    r = invoke("--debug", *scan_args(model, tmp_path / "nowhere", tmp_path / "out", "--defenses", "jpeg:500"))
    assert r.exit_code == 2 and "Traceback (most recent call last)" in r.stderr and "jpeg quality 500" in r.stderr


def test_compare_model_with_other_classes_is_refused_before_the_scan(model, tmp_path):
    """Missing data would be exit 3: exit 2 proves the --compare classes were checked before reading it."""
    other = tiny_model(tmp_path / "other.onnx", class_names=("cat", "dog", "bird"))
    out = tmp_path / "out"
    r = run_and_check(out, scan_args(model, tmp_path / "no-data", out, "--compare", other), 2)
    assert "--compare" in r.stderr


def test_attack_command_checks_label_map_before_loading_the_surrogate(tmp_path):
    """The surrogate file is junk: a label-map error proves the flag was checked first."""
    r = invoke(
        "attack", "--surrogate", _file(tmp_path), "--data", tmp_path, "--out", tmp_path / "sets", "--label-map", "oops"
    )
    assert_outcome(r, 2)
    assert "label-map" in r.stderr
