"""Issue 24 item 6: the best-defense claim is an exact paired (McNemar) test against no defense at the worst case,
Holm-adjusted over the qualifying defenses, and the report never calls a non-significant defense an improvement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from auditor.report.console import ConsoleRenderer
from auditor.report.defense_claim import ALPHA, best_defense_test
from auditor.report.defense_verdict import defense_verdict
from auditor.report.html import render_html
from auditor.report.verdicts import patient_halves
from tests.report.test_report_verdicts import _result, _wrong


def _claim(result):
    return best_defense_test(result, defense_verdict(result))


def test_four_of_twelve_against_none_is_not_significant_and_is_not_called_an_improvement():
    """The golden scan's situation: 12 images, the undefended worst case gets none right, the defense 4. Above the
    Wilson CI of 0/12 (0.24), but the exact McNemar p is 2 · 2⁻⁴ = 0.125: not significant."""
    y = np.array([0, 1] * 6)
    preds = {
        "clean": y.copy(),
        "usmm@16": 1 - y,
        "feature/clean": y.copy(),
        "feature/usmm@16": _wrong(y, range(4, 12)),
    }
    r = _result(y, preds)
    v = defense_verdict(r)
    assert v["mode"] == "same images"
    assert v["best"] is None and not v["significant"]  # the old CI rule named it; the exact test does not
    assert v["text"].startswith("No defense is shown to be better than no defense at the worst case")
    t = best_defense_test(r, v)
    assert t["measured"] and t["n"] == 12 and t["m"] == 1
    row = t["rows"][0]
    assert (row["defense_only"], row["undefended_only"]) == (4, 0)
    assert t["p"] == pytest.approx(0.125) and t["p_holm"] == pytest.approx(0.125)
    assert t["significant"] is False
    assert "not significantly better than no defense" in t["text"] and "not shown to be an improvement" in t["text"]
    assert "p = 0.12" in t["text"]
    html = render_html(r)
    assert 'id="defense-claim"' in html and 'id="defense-claim-card"' in html
    assert "not shown to be an improvement" in html
    assert "not significantly better than no defense" in ConsoleRenderer().render(r)


def test_family_is_the_qualifying_defenses_and_holm_adjusts_the_best():
    """Two qualifying defenses and one that collapses a class: the family has two members, and the candidate's
    p-value is multiplied by 2 (Holm, smallest of two)."""
    n = 40
    y = np.array([0, 1] * (n // 2))
    preds = {
        "clean": y.copy(),
        "usmm@16": 1 - y,
        "jpeg/clean": y.copy(),
        "jpeg/usmm@16": y.copy(),  # right on every image under attack
        "median/clean": y.copy(),
        "median/usmm@16": _wrong(y, range(0, n, 2)),  # right on half
        "bitdepth/clean": np.zeros(n, dtype=int),  # calls everything class 0: pneumonia collapses
        "bitdepth/usmm@16": y.copy(),
    }
    r = _result(y, preds)
    v = defense_verdict(r)
    t = best_defense_test(r, v)
    _, ev = patient_halves(r.samples, 3)
    k = len(ev)
    assert t["defense"] == "jpeg" and t["n"] == k and t["m"] == 2
    assert [row["defense"] for row in t["rows"]] == ["jpeg", "median"]  # bitdepth does not qualify
    p = 2 * 0.5**k
    assert t["rows"][0]["defense_only"] == k and t["p"] == pytest.approx(p)
    assert t["p_holm"] == pytest.approx(2 * p) and t["significant"] is True and 2 * p <= ALPHA
    assert "is significantly better than no defense" in t["text"] and "Holm-adjusted over the 2" in t["text"]
    assert "not shown" not in t["text"]


def test_more_discordant_images_for_no_defense_is_never_significant():
    """A defense that is significantly *worse* than no defense is not 'significantly better'."""
    n = 40
    y = np.array([0, 1] * (n // 2))
    preds = {"clean": y.copy(), "usmm@16": y.copy(), "jpeg/clean": y.copy(), "jpeg/usmm@16": 1 - y}
    t = _claim(_result(y, preds))
    assert t["rows"][0]["undefended_only"] > 0 and t["p"] < ALPHA and t["significant"] is False


def test_without_predictions_there_is_no_test():
    y = np.array([0, 1] * 6)
    r = _result(y, {"clean": y.copy(), "usmm@16": 1 - y, "jpeg/clean": y.copy(), "jpeg/usmm@16": y.copy()})
    r = dataclasses.replace(r, samples=())
    t = _claim(r)
    assert t is not None and t["measured"] is False and t["significant"] is False
    assert best_defense_test(r, None) is None
