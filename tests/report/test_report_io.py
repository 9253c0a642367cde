"""load_results checks, write_atomic and render_all."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import tempfile
from pathlib import Path

import pytest

from auditor import atomic
from auditor.atomic import write_atomic
from auditor.errors import ResultsError, RuntimeFailure, UsageError
from auditor.report.io import load_results
from auditor.report.jsonfmt import results_json
from auditor.report.render import render_all


def _write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "results.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return p


def test_round_trip(tmp_path, plain_result):
    loaded = load_results(_write(tmp_path, results_json(plain_result)))
    assert results_json(loaded) == results_json(plain_result)
    # with predictions too (samples and per-condition predictions survive)
    loaded = load_results(_write(tmp_path, plain_result.to_dict(with_predictions=True)))
    assert loaded.samples == plain_result.samples
    assert loaded.condition("usmm@8").predictions == plain_result.condition("usmm@8").predictions


def _doc(result):
    return copy.deepcopy(json.loads(results_json(result)))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version="2.0"), "newer than this xray-audit reads"),
        (lambda d: d.pop("schema_version"), "no schema_version"),
        (lambda d: d.pop("model"), "missing field 'model'"),
        (lambda d: d["conditions"][1]["metrics"]["confusion_matrix"].pop(), "does not match the 3 labels"),
        (lambda d: d["conditions"][1]["metrics"].update(n=21), "counts 20 images but n is 21"),
        (lambda d: d["conditions"][0]["metrics"].update(accuracy=0.9), "differs from the confusion matrix"),
        (lambda d: d["compared"][0]["conditions"][2]["metrics"]["confusion_matrix"][0].append(0), "compared model 1"),
    ],
)
def test_inconsistent_results_are_refused(tmp_path, plain_result, mutate, message):
    doc = _doc(plain_result)
    mutate(doc)
    with pytest.raises(ResultsError, match=message) as info:
        load_results(_write(tmp_path, doc))
    assert "\n" not in str(info.value)


def _worst(d) -> dict:
    """The undefended attack condition with the lowest accuracy in a results document."""
    return min((c for c in d["conditions"] if c["kind"] == "attack"), key=lambda c: c["metrics"]["accuracy"])


@pytest.mark.parametrize(
    "mutate, message",
    [
        # the cases: a null or NaN metric where n > 0 used to drop the condition out of the verdicts
        (lambda d: _worst(d)["metrics"].update(accuracy=None), "metrics.accuracy is None although"),
        (lambda d: _worst(d)["metrics"].update(accuracy=float("nan")), "metrics.accuracy is nan although"),
        (lambda d: _worst(d)["metrics"].pop("accuracy"), "metrics.accuracy is None although"),
        (lambda d: _worst(d).update(attack_success_rate=None), "attack_success_rate is None although"),
        (lambda d: _worst(d).update(flip_rate=float("nan")), "flip_rate is nan although"),
        (lambda d: _worst(d)["metrics"].update(macro_f1=None), "metrics.macro_f1 is None although"),
        (
            lambda d: _worst(d)["metrics"]["per_class"]["normal"].update(sensitivity=None),
            "per_class.normal.sensitivity is None although",
        ),
        # a point outside its own CI, a reversed CI, a rate outside [0, 1]
        (lambda d: _worst(d)["metrics"].update(accuracy_ci=[0.9, 0.95]), "lies outside its 95% CI"),
        (lambda d: _worst(d).update(flip_rate_ci=[0.9, 0.1]), "has its ends reversed"),
        (lambda d: _worst(d).update(attack_success_rate=1.2), "must be a fraction in"),
        # counts that disagree with the rates they summarise
        (lambda d: _worst(d).update(n_flipped=_worst(d)["n_flipped"] + 1), "differs from n_flipped / n"),
        (lambda d: _worst(d).update(n_fooled=_worst(d)["n_fooled"] + 1), "differs from n_fooled / n_clean_correct"),
        (lambda d: _worst(d).update(n_fooled=99), "n_fooled 99 is larger than n_clean_correct"),
        (lambda d: _worst(d).update(n_clean_correct=99), "counts larger than the 20 images"),
    ],
)
def test_undefined_or_inconsistent_metrics_are_refused(tmp_path, plain_result, mutate, message):
    doc = _doc(plain_result)
    mutate(doc)
    with pytest.raises(ResultsError, match=re.escape(message)) as info:
        load_results(_write(tmp_path, doc))
    assert "\n" not in str(info.value) and "does not match the results schema" in str(info.value)


def test_undefined_metrics_are_accepted_where_nothing_was_measured(tmp_path, plain_result):
    doc = _doc(plain_result)
    w = _worst(doc)
    # no clean-correct image: no attack success rate; clean conditions have no rates at all
    w.update(attack_success_rate=None, attack_success_rate_ci=None, n_clean_correct=0, n_fooled=0)
    doc["conditions"][0].update(flip_rate=None, attack_success_rate=None)
    load_results(_write(tmp_path, doc))


def test_refused_results_exit_3(tmp_path, plain_result):
    from click.testing import CliRunner

    from auditor.cli import cli

    doc = _doc(plain_result)
    _worst(doc)["metrics"]["accuracy"] = None
    r = CliRunner().invoke(
        cli, ["report", str(_write(tmp_path, doc)), "--format", "json", "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 3 and "metrics.accuracy is None" in r.output


def test_unreadable_inputs(tmp_path):
    with pytest.raises(ResultsError, match="not valid JSON"):
        load_results(_write(tmp_path, '{"schema_version": "1.0",'))
    with pytest.raises(ResultsError, match="not a results document"):
        load_results(_write(tmp_path, "[1, 2]"))
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(tmp_path / "missing.json")


def test_older_minor_versions_are_read(tmp_path, plain_result):
    doc = _doc(plain_result)
    doc["schema_version"] = "1.7"
    assert load_results(_write(tmp_path, doc)).schema_version == "1.7"


def test_write_atomic_writes_and_replaces(tmp_path):
    target = tmp_path / "report.html"
    write_atomic(target, "first")
    write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "report.pdf"
    old = tmp_path / "junit.xml"
    old.write_text("previous")

    def failing_fsync(fd):
        # the bytes are in the temporary file when the failure happens
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    # a full disk is the environment (exit 4), not a bad flag (issue 10)
    with pytest.raises(RuntimeFailure, match="No space left on device"):
        write_atomic(target, b"%PDF-" + b"x" * 100_000)
    with pytest.raises(RuntimeFailure):
        write_atomic(old, "new content")
    assert not target.exists()
    assert old.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml"]


def test_write_atomic_interrupt_cleans_up(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "results.json", "{}")
    assert list(tmp_path.iterdir()) == []


@contextlib.contextmanager
def _unprivileged():
    """Run the body without root's override of file permissions (seteuid to nobody, then back).

    Root writes into any folder whatever its mode, so a permission test run as root must drop the
    effective uid; as an ordinary user there is nothing to drop.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_not_writable_folder():
    # a world-traversable parent (pytest's tmp_path is 0700 and owned by root), one folder without
    # write permission and one with it as the control
    with tempfile.TemporaryDirectory(prefix="xray-ro-") as parent:
        base = Path(parent)
        base.chmod(0o755)
        ro, rw = base / "ro", base / "rw"
        ro.mkdir(mode=0o555)
        rw.mkdir()
        rw.chmod(0o777)
        ro.chmod(0o555)
        with _unprivileged():
            with pytest.raises(UsageError, match="cannot write report.html"):
                write_atomic(ro / "report.html", "x")
            assert write_atomic(rw / "report.html", "x").read_text() == "x"
        assert list(ro.iterdir()) == []
        ro.chmod(0o755)


def test_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot write report.html"):
        write_atomic(tmp_path / "nope" / "report.html", "x")


def test_render_all_writes_the_files(tmp_path, result):
    written = render_all(result, tmp_path / "out", "json,csv,html,pdf,junit,console")
    assert {k: p.name for k, p in written.items()} == {
        "json": "results.json",
        "csv": "samples.csv",
        "html": "report.html",
        "pdf": "report.pdf",
        "junit": "junit.xml",
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written.values())
    assert written["pdf"].read_bytes().startswith(b"%PDF-1.7")
    assert load_results(written["json"]) is not None


def test_render_all_validates_formats_first(tmp_path, result):
    with pytest.raises(UsageError, match="unknown report format"):
        render_all(result, tmp_path / "out", ["json", "docx"])
    assert not (tmp_path / "out").exists()


def test_render_all_unwritable_output(tmp_path, result):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UsageError, match="cannot create the output folder"):
        render_all(result, blocker / "out", "json")
