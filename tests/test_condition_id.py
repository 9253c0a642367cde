"""Condition identifiers as data (auditor.condition_ids.SetId / ConditionId): the names results.json carries are built
by one formatter, and the report reads them back with its one inverse."""

from __future__ import annotations

import pytest

from auditor.condition_ids import ConditionId, SetId, eps_name
from auditor.report.defense_conditions import attacked_base, is_adaptive
from auditor.scan.options import set_name
from auditor.types import Condition


@pytest.mark.parametrize(
    "set_id,name",
    [
        (SetId(), "clean"),
        (SetId("usmm", 8 / 255), "usmm@8"),
        (SetId("mifgsm", 8.5 / 255), "mifgsm@8.50"),
        (SetId("stm", 16 / 255, "randconv"), "stm[randconv]@16"),
        (SetId("stm", 16 / 255), "stm@16"),
        (SetId("blend", alpha=0.3), "blend@0.3"),
        (SetId("blend", alpha=1.0), "blend@1"),
    ],
)
def test_set_names(set_id, name):
    assert set_id.name == name


def test_attacked_set_without_a_budget_has_no_name():
    """An attacked set with neither an epsilon nor a blend alpha is refused by name (it used to fail inside
    the budget formatting with a TypeError on None)."""
    with pytest.raises(ValueError, match="neither a budget"):
        _ = SetId("usmm").name


def test_scan_jobs_name_the_style_backend_only_where_the_registry_says_so():
    import numpy as np

    from auditor.scan.jobs import attack_jobs

    x, y = np.zeros((2, 1, 8, 8), np.float32), np.zeros(2, np.int64)
    jobs = attack_jobs(["usmm", "stm"], [16 / 255], x, y, style_backend="randconv")
    assert [j.name for j in jobs] == ["usmm@16", "stm[randconv]@16"]


def test_set_name_and_eps_name_keep_their_strings():
    # only an attack whose registry entry says so (STM) names its style backend
    assert set_name("stm", 16 / 255, "ghiasi") == "stm[ghiasi]@16" and set_name("usmm", 4 / 255, "ghiasi") == "usmm@4"
    assert eps_name(8 / 255) == "8" and eps_name(0.1) == "25.50"


@pytest.mark.parametrize(
    "cid,name",
    [
        (ConditionId(), "clean"),
        (ConditionId("usmm@8"), "usmm@8"),
        (ConditionId("clean", "jpeg:75"), "jpeg:75/clean"),
        (ConditionId("usmm@8", "jpeg:75"), "jpeg:75/usmm@8"),
        (ConditionId("stm[randconv]@16", "median:3", adaptive=True), "stm[randconv]@16+bpda:median:3"),
        (ConditionId("blend@0.5", "denoiser:models/d.onnx"), "denoiser:models/d.onnx/blend@0.5"),
    ],
)
def test_condition_names_and_their_inverse(cid, name):
    assert cid.name == name
    assert ConditionId.parse(name, cid.defense, cid.adaptive) == cid
    # the report knows the defense field but need not know the adaptive flag: the mark says it
    assert ConditionId.parse(name, cid.defense) == cid


def test_parse_is_total_and_keeps_the_old_reading_of_odd_names():
    # no defense: never adaptive, a slash still separates a prefix
    assert ConditionId.parse("usmm@8+bpda:jpeg") == ConditionId("usmm@8+bpda:jpeg")
    assert ConditionId.parse("a/b/c").base == "b/c"
    # a defense field that the name does not start with
    assert ConditionId.parse("jpeg/usmm@8", "median").base == "usmm@8"
    assert ConditionId.parse("odd", "median") == ConditionId("odd", "median")
    # flagged adaptive without the mark: the whole name is the base
    assert ConditionId.parse("odd", "median", adaptive=True) == ConditionId("odd", "median", True)


def _cond(name, defense=None, **extra):
    return Condition(name=name, kind="defense" if defense else "attack", metrics={}, defense=defense, extra=extra)


def test_report_reads_conditions_through_the_identifier():
    assert attacked_base(_cond("denoiser:a/b.onnx/usmm@8", "denoiser:a/b.onnx")) == "usmm@8"
    assert attacked_base(_cond("usmm@8+bpda:jpeg:75", "jpeg:75")) == "usmm@8"
    assert is_adaptive(_cond("usmm@8+bpda:jpeg:75", "jpeg:75")) and not is_adaptive(_cond("usmm@8+bpda:x"))
    assert is_adaptive(_cond("renamed", "jpeg:75", adaptive=True)) and not is_adaptive(
        _cond("jpeg:75/usmm@8", "jpeg:75")
    )
