"""results.json is written array by array from the compact stores, and stays exactly ``json.dumps`` of the result."""

from __future__ import annotations

import json

import numpy as np

from auditor.outcomes import Probabilities
from auditor.report.jsonfmt import results_json
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
