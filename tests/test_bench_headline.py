"""bench/headline.py decides "attack A beats MI-FGSM" by exact McNemar tests, Holm-adjusted over its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from auditor.types import Condition

_SPEC = importlib.util.spec_from_file_location(
    "bench_headline", Path(__file__).resolve().parents[1] / "bench" / "headline.py"
)
headline = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(headline)


def _attack(name: str, correct: np.ndarray, y: np.ndarray) -> Condition:
    attack, eps = name.split("@")
    pred = np.where(correct, y, 1 - y)
    return Condition(
        name,
        "attack",
        {"accuracy": float(correct.mean())},
        attack=attack,
        epsilon=int(eps) / 255,
        predictions=tuple(int(v) for v in pred),
    )


def test_comparisons_are_exact_mcnemar_with_holm():
    n = 200
    y = np.array([0, 1] * (n // 2))
    base = np.ones(n, bool)
    base[:40] = False  # MI-FGSM fools 40 images at both budgets
    # at 2/255 the attack fools 6 more images and no fewer (6 / 0 discordant: exact p = 2 / 2**6 = 0.03125);
    # at 8/255, 22 more and 3 fewer (p = 0.000157)
    two = base.copy()
    two[40:46] = False
    eight = base.copy()
    eight[40:62] = False
    eight[:3] = True
    attacked = [
        _attack("mifgsm@2", base, y),
        _attack("mifgsm@8", base, y),
        _attack("stm@2", two, y),
        _attack("stm@8", eight, y),
        _attack("usmm@2", base, y),  # no discordant image: p = 1
        _attack("usmm@8", base, y),
    ]
    rows = headline.comparisons(attacked, y, [None] * n)
    by_eps = {round(255 * r["condition"].epsilon): r for r in rows if r["condition"].attack == "stm"}
    r2, r8 = by_eps[2], by_eps[8]
    assert (r2["attack_better"], r2["mifgsm_better"]) == (6, 0) and r2["p"] == pytest.approx(1 / 32)
    assert r2["diff"] == pytest.approx(0.03) and r2["ci"][0] > 0  # the bootstrap CI excludes 0 ...
    # ... but over the family of 4 comparisons Holm multiplies the second-smallest p by 3: not decided
    assert r2["p_holm"] == pytest.approx(3 / 32) and r2["decided"] is False
    assert r8["p"] < 0.001 and r8["decided"] is True
    table = "\n".join(headline._comparison(attacked, y, [None] * n))
    assert "Holm-adjusted over the 4 comparisons" in table and "| stm | 2/255 | +3.0" in table
    assert "6 / 0 | 0.0312 | 0.0938 | no |" in table
