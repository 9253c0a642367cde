"""results.json is written array by array from the compact stores, and stays exactly ``json.dumps`` of the result."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from auditor.atomic import write_atomic
from auditor.outcomes import Probabilities
from auditor.report.jsonfmt import ROWS_PER_CHUNK, results_digest, results_json, results_json_chunks
from auditor.report.render import render_all
from auditor.types import AuditResult, Condition
from tests.report.conftest import build_result


def _plain(result: AuditResult) -> str:
    return json.dumps(result.to_dict(with_predictions=True), indent=2, sort_keys=True) + "\n"


def test_equal_to_json_dumps_on_the_report_fixture():
    for compared in (False, True):
        result = build_result(compared=compared, examples=2)
        assert results_json(result) == _plain(result)


def test_equal_to_json_dumps_with_odd_rows_and_strings():
    rng = np.random.default_rng(0)
    proba = rng.random((50, 3))
    samples = tuple(
        {
            "path": f"ünï/{i}\n.png",
            "label": 'a"b',
            "label_index": i % 3,
            "patient_id": None if i % 2 else f"P{i}",
            "sha256": "" if i % 5 else f"{i:064x}",
        }
        for i in range(50)
    )
    conds = (
        Condition(
            "clean",
            "clean",
            {"n": 50},
            predictions=tuple(proba.argmax(1)),
            probabilities=Probabilities.from_model(proba),
        ),
        Condition("no-proba", "attack", {"n": 50}, predictions=tuple(range(50))),
        Condition("empty", "defense", {}),
        Condition(
            "odd", "attack", {}, predictions=(1, 2), probabilities=((float("nan"), 1e-300), (-0.0, 12345.678901234))
        ),
        Condition("nested", "attack", {"xray-audit-array": "\x00"}, extra={"probabilities": "in extra"}),
    )
    other = AuditResult("1", "0", "", "", "", {}, {"n": 50}, conds[:2], samples=samples[:7])
    result = AuditResult(
        "1",
        "0",
        "",
        "",
        "cmd \x00",
        {"m": [1, 2]},
        {"d": {}},
        conds,
        samples=samples,
        compared=(other,),
        extras={"list": [[1.5, 2], []]},
    )
    assert results_json(result) == _plain(result)
    assert json.loads(results_json(result))["conditions"][0]["probabilities"][3] == list(conds[0].probabilities[3])


def _large_result(n: int) -> AuditResult:
    proba = np.random.default_rng(3).random((n, 2))
    samples = (
        {"path": f"normal/img{i:06d}.png", "label": "normal", "label_index": 0, "patient_id": None, "sha256": ""}
        for i in range(n)
    )
    cond = Condition(
        "clean", "clean", {"n": n}, predictions=tuple(proba.argmax(1)), probabilities=Probabilities.from_model(proba)
    )
    return AuditResult("1", "0", "", "", "", {}, {"n": n}, (cond,), samples=samples)


def test_results_json_is_written_in_bounded_pieces(tmp_path):
    """No piece holds more than ROWS_PER_CHUNK rows, so a 100k-image results.json is never one string;
    the file written from the pieces is the whole text."""
    result = _large_result(3 * ROWS_PER_CHUNK + 5)
    pieces = list(results_json_chunks(result))
    assert "".join(pieces) == _plain(result)
    longest_row = max(len(p) for p in _plain(result).split("\n    {"))
    assert len(pieces) > 6 and max(len(p) for p in pieces) <= ROWS_PER_CHUNK * longest_row
    paths = render_all(result, tmp_path, "json")
    assert paths["json"].read_text(encoding="utf-8") == _plain(result)
    assert results_digest(result) == hashlib.sha256(_plain(result).encode("utf-8")).hexdigest()


def test_an_error_while_writing_the_pieces_leaves_no_file(tmp_path):
    def pieces():
        yield "first part\n"
        raise RuntimeError("renderer failed half way")

    target = tmp_path / "results.json"
    target.write_text("previous run\n")
    with pytest.raises(RuntimeError, match="half way"):
        write_atomic(target, pieces())
    assert target.read_text() == "previous run\n" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
