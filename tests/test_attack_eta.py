"""The attack stage's projection (auditor.attack_eta) on fixed, made-up batch timings."""

from __future__ import annotations

import pytest

from auditor.attack_eta import StageClock, format_duration
from auditor.attacks.registry import get_spec


def _clock(messages, params=None):
    """The clock of four sets, with each attack's cost from its registry entry (``params`` per attack)."""
    plan = [("mifgsm@4", "mifgsm"), ("usmm@4", "usmm"), ("usmm@8", "usmm"), ("stm@4", "stm")]
    costs = {a: get_spec(a).cost((params or {}).get(a)) for _, a in plan}
    return StageClock.for_sets(plan, 10, messages.append, costs)


def test_first_batch_projects_the_whole_stage_from_pass_counts():
    said: list[str] = []
    clock = _clock(said)
    clock.batch_done("mifgsm@4", 2, 1.0)  # 0.5 s/image for MI-FGSM (10 passes per image)
    assert len(said) == 1
    # left: 8 mifgsm images at 0.5, 20 usmm images at 0.5*15, 10 stm images at 0.5*20
    expected = 8 * 0.5 + 20 * 7.5 + 10 * 10.0
    assert clock.projections[0]["seconds_remaining"] == pytest.approx(expected)
    assert format_duration(expected) in said[0] and "stm, usmm estimated" in said[0]
    clock.batch_done("mifgsm@4", 8, 4.0)
    assert len(said) == 1  # no new kind: no new line


def test_a_measured_kind_replaces_the_guess_and_skipped_attacks_leave_the_plan():
    said: list[str] = []
    clock = _clock(said)
    clock.batch_done("mifgsm@4", 10, 5.0)
    clock.forget("stm")
    clock.batch_done("usmm@4", 5, 10.0)  # 2 s/image measured, not the 7.5 guessed
    assert clock.projections[-1]["seconds_remaining"] == pytest.approx(15 * 2.0)
    assert clock.projections[-1]["estimated"] == [] and "estimated" not in said[-1]
    assert clock.seconds_per_image("usmm@4") == 2.0 and clock.seconds_per_image("usmm@8") is None


def test_steps_scale_the_guess():
    said: list[str] = []
    clock = _clock(said, params={"usmm": {"steps": 20}})
    clock.batch_done("mifgsm@4", 10, 5.0)
    assert clock.projections[0]["seconds_remaining"] == pytest.approx(20 * 0.5 * 30 + 10 * 0.5 * 20)


def test_format_duration():
    assert [format_duration(s) for s in (12.3, 95, 3725)] == ["12 s", "1 min 35 s", "1 h 02 min"]
