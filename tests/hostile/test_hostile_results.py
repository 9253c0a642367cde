"""Tampered results.json given to ``xray-audit report``: exit 3 and one line, never a crash or a quiet render."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from auditor.report.io import MAX_RESULTS_BYTES
from tests.hostile.helpers import assert_outcome, invoke, load_json, run_and_check


def _set(path, value):
    def mutate(d):
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(key):
    return lambda d: d.pop(key)


TAMPERED = {
    "accuracy_text": _set(["conditions", 0, "metrics", "accuracy"], "abc"),
    "accuracy_1e308": _set(["conditions", 0, "metrics", "accuracy"], 1e308),
    "accuracy_negative": _set(["conditions", 0, "metrics", "accuracy"], -0.5),
    "accuracy_list": _set(["conditions", 0, "metrics", "accuracy"], [1]),
    "accuracy_bool": _set(["conditions", 0, "metrics", "accuracy"], True),
    "ci_text": _set(["conditions", 0, "metrics", "accuracy_ci"], "ab"),
    "ci_three_values": _set(["conditions", 0, "metrics", "accuracy_ci"], [0.1, 0.2, 0.3]),
    "n_text": _set(["conditions", 0, "metrics", "n"], "9"),
    "n_negative": _set(["conditions", 0, "metrics", "n"], -9),
    "confusion_float": _set(["conditions", 0, "metrics", "confusion_matrix"], [[1e308] * 3] * 3),
    "confusion_ragged": _set(["conditions", 0, "metrics", "confusion_matrix"], [[1], [2, 3]]),
    "labels_number": _set(["conditions", 0, "metrics", "labels"], 5),
    "per_class_text": _set(["conditions", 0, "metrics", "per_class"], "x"),
    "per_class_entry_list": _set(["conditions", 0, "metrics", "per_class", "normal"], [1, 2]),
    "metrics_list": _set(["conditions", 0, "metrics"], [1]),
    "predictions_text": _set(["conditions", 0, "predictions"], "abc"),
    "predictions_huge": _set(["conditions", 0, "predictions"], [10**30] * 9),
    "epsilon_text": _set(["conditions", 0, "epsilon"], "x"),
    "flip_rate_above_one": _set(["conditions", 1, "flip_rate"], 7.0),
    "condition_name_missing": lambda d: d["conditions"][0].pop("name"),
    "conditions_missing": _drop("conditions"),
    "conditions_empty": _set(["conditions"], []),
    "conditions_text": _set(["conditions"], "abc"),
    "skipped_text": _set(["skipped"], "abc"),
    "skipped_entry_extra_key": _set(["skipped"], [{"name": "a", "reason": "b", "evil": 1}]),
    "data_skipped_text": _set(["data", "skipped"], "abc"),
    "model_text": _set(["model"], "x"),
    "model_missing": _drop("model"),
    "spec_text": _set(["model", "spec"], "x"),
    "class_names_text": _set(["model", "spec", "class_names"], "abc"),
    "samples_text": _set(["samples"], ["x"]),
    "environment_text": _set(["environment"], "x"),
    "parameters_list": _set(["parameters"], [1]),
    "extras_list": _set(["extras"], [1]),
    "detector_text": _set(["detector"], "x"),
    "detector_block_text": _set(["detector"], {"reference_based": "x"}),
    "gates_bad_entry": _set(["gates"], [{"name": 1}]),
    "gate_value_text": _set(["gates"], [{"name": "accuracy", "threshold": 0.5, "value": "high", "passed": True}]),
    "compared_text": _set(["compared"], "x"),
    "compared_entry_empty": _set(["compared"], [{}]),
    "schema_version_number": _set(["schema_version"], 1),
    "schema_version_newer": _set(["schema_version"], "9.0"),
    "schema_version_missing": _drop("schema_version"),
    "deep_parameters": _set(["parameters", "x"], json.loads("[" * 200 + "]" * 200)),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_results_are_refused(case, hostile_base, tmp_path):
    doc = copy.deepcopy(load_json(hostile_base["results"]))
    TAMPERED[case](doc)
    src = tmp_path / "results.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out"
    run_and_check(out, ["report", src, "--out", out, "--format", "json,csv,html"], 3)


RAW = {
    "five_thousand_digit_int": lambda base: base.replace('"n": 9', '"n": ' + "9" * 5000, 1),
    "deep_nesting": lambda base: '{"schema_version": "1.0", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "infinity": lambda base: base.replace('"accuracy": 1.0', '"accuracy": Infinity', 1),
    "not_json": lambda base: base[: len(base) // 2],
    "top_level_list": lambda base: "[" + base + "]",
    "empty": lambda base: "",
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_raw_tampering_is_refused(case, hostile_base, tmp_path):
    base = hostile_base["results"].read_text()
    assert '"n": 9' in base and '"accuracy": 1.0' in base  # the substitutions below really happen
    src = tmp_path / "results.json"
    src.write_text(RAW[case](base))
    out = tmp_path / "out"
    run_and_check(out, ["report", src, "--out", out, "--format", "json,html"], 3)


def test_not_utf8(tmp_path):
    src = tmp_path / "results.json"
    src.write_bytes(b'{"schema_version": "1.0", "x": "\xff\xfe"}')
    assert_outcome(invoke("report", src, "--out", tmp_path / "o"), 3)


def test_dev_zero_is_not_read(tmp_path):
    assert_outcome(invoke("report", "/dev/zero", "--out", tmp_path / "o"), 3)


def test_fifo_is_not_read(tmp_path):
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    assert_outcome(invoke("report", fifo, "--out", tmp_path / "o"), 3)  # would block forever if opened


def test_file_above_the_size_limit(tmp_path):
    big = tmp_path / "results.json"
    with open(big, "wb") as fh:  # sparse: no disk space used
        fh.truncate(MAX_RESULTS_BYTES + 1)
    r = invoke("report", big, "--out", tmp_path / "o")
    assert_outcome(r, 3)
    assert "limit" in r.stderr


def test_missing_results_file(tmp_path):
    assert_outcome(invoke("report", tmp_path / "nope.json", "--out", tmp_path / "o"), 3)


def test_report_on_a_folder_is_usage_error(tmp_path):
    assert_outcome(invoke("report", tmp_path), 2)


def test_untampered_results_still_render(hostile_base, tmp_path):
    out = tmp_path / "out"
    run_and_check(out, ["report", hostile_base["results"], "--out", out, "--format", "json,csv,html"], 0)


def test_report_beside_results_keeps_the_source(hostile_base, tmp_path):
    """Re-rendering HTML next to results.json keeps results.json and samples.csv (same run)."""
    import shutil

    run = Path(shutil.copytree(hostile_base["results"].parent, tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = invoke("report", run / "results.json", "--format", "html")
    assert_outcome(r, 0)
    after = {p.name: p.read_bytes() for p in run.iterdir()}
    assert {k: v for k, v in after.items() if k != "report.html"} == before
    assert "report.html" in after
