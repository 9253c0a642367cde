"""Per-image outcomes are kept compactly (numpy columns) and read back as exactly the values results.json had."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from auditor.outcomes import Predictions, Probabilities, SampleTable, TextColumn, round_probabilities
from auditor.types import AuditResult, Condition

N = 20_000
#: bytes per image and condition the outcomes (prediction + 2 class probabilities) may take, Python objects included
BOUND_PER_IMAGE_CONDITION = 32


def _softmax_rows(n: int, k: int = 2, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, k)).astype(np.float32)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _old_tuples(proba: np.ndarray):
    """What a condition held before (and what results.json has): ints and 6-decimal float tuples."""
    return tuple(int(v) for v in proba.argmax(1)), tuple(tuple(round(float(p), 6) for p in row) for row in proba)


def test_condition_outcomes_stay_under_the_per_image_bound():
    proba = _softmax_rows(N)
    pred, rows = _old_tuples(proba)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cond = Condition("clean", "clean", {}, predictions=pred, probabilities=rows)
        del pred, rows
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held / N <= BOUND_PER_IMAGE_CONDITION, f"{held / N:.1f} bytes per image"
    assert (cond.predictions.nbytes + cond.probabilities.nbytes) / N <= 10


def test_results_json_text_is_unchanged():
    proba = _softmax_rows(3000, k=3, seed=1)
    pred, rows = _old_tuples(proba)
    cond = Condition("clean", "clean", {"n": 3000}, predictions=pred, probabilities=rows)
    old = {"predictions": list(pred), "probabilities": [list(r) for r in rows]}
    d = cond.to_dict(with_predictions=True)
    assert json.dumps({k: d[k] for k in old}, indent=2) == json.dumps(old, indent=2)
    assert all(type(v) is int for v in d["predictions"]) and all(
        type(v) is float for r in d["probabilities"] for v in r
    )
    assert cond.probabilities == rows and cond.predictions == pred and cond.probabilities[7] == rows[7]
    assert np.array_equal(np.asarray(cond.predictions), proba.argmax(1))
    # from_dict (report rendering from results.json) keeps the values exactly as well
    back = Condition("clean", "clean", {"n": 3000}, predictions=d["predictions"], probabilities=d["probabilities"])
    assert back == cond


def test_rounding_is_pythons_round_bit_for_bit():
    rng = np.random.default_rng(2)
    x = np.concatenate(
        [rng.random(50_000), (np.arange(20_000) + 0.5) / 1e6, [0.0, 1.0, 0.9999995, 2.5e-6, -0.0, -1e-9]]
    )
    want = np.array([round(float(v), 6) for v in x])
    assert np.array_equal(round_probabilities(x).view(np.int64), want.view(np.int64))


def test_values_that_are_not_millionths_are_kept_exactly():
    rows = ((0.1234567891, 0.8765432109), (-0.0, 1.0))
    p = Probabilities(rows)
    assert tuple(p) == rows and str(p[1][0]) == "-0.0"
    assert Predictions([0, 40000])[1] == 40000


def test_sample_table_reads_back_the_rows():
    rows = [
        {
            "path": f"c{i % 2}/img{i}.png",
            "label": f"c{i % 2}",
            "label_index": i % 2,
            "patient_id": None if i % 3 == 0 else f"P{i // 3}",
            "sha256": "" if i == 4 else f"{i:064x}",
        }
        for i in range(200)
    ]
    table = SampleTable(rows)
    assert table.compact and list(table) == rows and table[5] == rows[5] and table[-1] == rows[-1]
    # 48 bytes per row for the numeric columns, and a path costs its file name plus 12 bytes (folder code, offset)
    assert table.nbytes <= 48 * len(rows) + sum(12 + len(r["path"].rsplit("/", 1)[-1]) for r in rows)
    odd = [{"path": "a.png", "label": "x", "label_index": 0, "patient_id": None, "sha256": "", "extra": 1}]
    assert not SampleTable(odd).compact and list(SampleTable(odd)) == odd
    res = AuditResult("1", "0", "", "", "", {}, {}, (), samples=tuple(rows))
    assert isinstance(res.samples, SampleTable) and res.to_dict(True)["samples"] == rows


def test_a_copy_of_a_table_kept_as_rows_reads_back_the_rows():
    """Rows a scan would not write (here a None label, as a hand-edited results.json may hold) are kept as given;
    copying such a table (as AuditResult does with its samples) must not reach for the unset columns."""
    odd = [{"path": "a.png", "label": None, "label_index": 0, "patient_id": None, "sha256": ""}]
    table = SampleTable(odd)
    assert not table.compact
    copy = SampleTable(table)
    assert not copy.compact and list(copy) == odd and len(copy) == 1 and copy.nbytes == 0


def test_a_text_column_gives_back_every_string_exactly():
    values = ["a/b/c.png", "c.png", "", "/abs/x/y.jpeg", "a/b/d.png", "dir/", "é/ü/名前.png", "bad/\udcff\udcfe.png"]
    col = TextColumn(values)
    assert list(col) == values and col == values and len(col) == len(values)
    assert (
        col[-1] == values[-1] and col[2:5] == values[2:5] and col.take([6, 0, 6]) == [values[6], values[0], values[6]]
    )
    with pytest.raises(IndexError):
        col[len(values)]
    with pytest.raises(TypeError):
        col.append(b"bytes.png")


def test_a_text_column_of_paths_costs_the_file_names_and_12_bytes_each():
    values = [f"/archive/images_{i % 12:03d}/{i:08d}_000.png" for i in range(5000)]
    col = TextColumn(values)
    assert col.nbytes == sum(len(v.rsplit("/", 1)[-1]) + 12 for v in values)
    assert list(col) == values
