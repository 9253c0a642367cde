"""docs/algorithms.md states constants and definitions; this pins each one against the code, so they cannot
drift apart again (issue 24: the docs described RandConv with a 50 % AdaIN branch and kernels {1, 3, 5, 7},
said ``auto`` stays fp32, and defined the attack success rate and the flip rate the other way round)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from auditor.attacks.auto_precision import MIN_AGREEMENT
from auditor.attacks.base import GradientAttack
from auditor.attacks.style import RandConvStyle
from auditor.cli.options import parse_epsilons
from auditor.metrics import compute_attack_rates, compute_metrics, wilson_interval
from auditor.report.defense_claim import ALPHA
from auditor.report.qualification import COLLAPSE_FRACTION
from auditor.transfer import NO_TRANSFER_EFFICIENCY, STRONG_EFFICIENCY, WEAK_EFFICIENCY

DOC = (Path(__file__).resolve().parents[1] / "docs/algorithms.md").read_text(encoding="utf-8")
TEXT = " ".join(DOC.split())  # one line: sentences wrap in the markdown


def _section(number: str) -> str:
    """The text of ``## <number>.`` up to the next ``## `` heading, on one line."""
    m = re.search(rf"^## {re.escape(number)}\. .*?(?=^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert m, f"docs/algorithms.md has no section {number}"
    return " ".join(m.group(0).split())


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in re.findall(r"\d+(?:\.\d+)?", text))


def test_randconv_kernels_mix_and_no_adain_branch():
    m = re.search(r"kernel size k drawn uniformly from \{([\d, ]+)\}", TEXT)
    assert m and _numbers(m.group(1)) == tuple(float(k) for k in RandConvStyle.kernel_sizes)
    m = re.search(r"random weight a ~ U\(0, ([\d.]+)\)", TEXT)
    assert m and float(m.group(1)) == RandConvStyle().mix_max
    assert "(no AdaIN branch)" in TEXT and "with probability 0.5 the `adain-stats`" not in TEXT
    assert "adain" not in inspect.getsource(RandConvStyle).lower()  # the code has none either


def test_auto_precision_is_documented_as_measured():
    assert "`auto` stays fp32" not in TEXT and "`auto` resolves to fp32" not in TEXT
    m = re.search(r"agree on at least (\d+) % of it \(`MIN_AGREEMENT`\)", TEXT)
    assert m and float(m.group(1)) / 100 == MIN_AGREEMENT


def test_epsilon_rules():
    m = re.search(r"Defaults: ε = (\d+)/255, T = (\d+), α = ε/T, μ = ([\d.]+), L∞", TEXT)
    assert m
    sig = inspect.signature(GradientAttack.__init__).parameters
    assert sig["epsilon"].default == pytest.approx(int(m.group(1)) / 255)
    assert sig["steps"].default == int(m.group(2)) and sig["decay"].default == float(m.group(3))
    assert sig["alpha"].default is None and sig["norm"].default == "linf"  # None: α = ε / T
    assert "the CLI takes them in 1/255 units (`--eps 4,8,16`)" in TEXT
    assert parse_epsilons("4,8,16") == pytest.approx((4 / 255, 8 / 255, 16 / 255))


def test_attack_rate_definitions_match_the_code():
    sec = _section("10")
    assert (
        "attack success rate = images classified correctly when clean that the condition makes wrong / "
        "images classified correctly when clean" in sec
    )
    assert "flip rate = images whose prediction differs from the clean prediction / all images" in sec
    # 5 images: 4 correct when clean, the attack makes 1 of them wrong and changes 2 predictions in all
    y, clean, adv = [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 1, 1]
    r = compute_attack_rates(y, clean, adv, n_boot=0)
    assert r["attack_success_rate"] == pytest.approx(1 / 4)  # not wrong/all (1/5) nor 2/4
    assert r["flip_rate"] == pytest.approx(2 / 5)  # not clean-correct made wrong / clean-correct


def test_transfer_cutoffs_and_collapse_floor():
    sec = _section("10")
    m = re.search(
        r"below \*\*([\d.]+)\*\* the attacks \*did not transfer\*, below \*\*([\d.]+)\*\* they "
        r"transferred \*weakly\*, below \*\*([\d.]+)\*\* \*partially\*",
        sec,
    )
    assert (
        m
        and _numbers("".join(m.groups()))
        and tuple(map(float, m.groups()))
        == (
            NO_TRANSFER_EFFICIENCY,
            WEAK_EFFICIENCY,
            STRONG_EFFICIENCY,
        )
    )
    assert "target attack success rate / surrogate attack success rate" in sec
    m = re.search(r"each keeps at least \*\*([\d.]+)\*\* of its undefended clean sensitivity", sec)
    assert m and float(m.group(1)) == COLLAPSE_FRACTION


def test_wilson_values_in_the_docs():
    m = re.search(r"`\[0, z²/\(n \+ z²\)\]` \(([\d.]+) for n = (\d+), ([\d.]+) for n = (\d+)\)", TEXT)
    assert m
    for value, n in ((m.group(1), m.group(2)), (m.group(3), m.group(4))):
        assert wilson_interval(0, int(n))[1] == pytest.approx(float(value), abs=5e-5)
    assert np.isclose(wilson_interval(0, 12)[0], 0.0)


def test_best_defense_claim_level_and_n_n_wilson_rule():
    """Issue 24: the documented level of the best-defense claim and the 0/n, n/n interval rule match the code."""
    sec = _section("10")
    m = re.search(r"adjusted p ≤ \*\*([\d.]+)\*\*", sec)
    assert m and float(m.group(1)) == ALPHA
    assert "Wilson score interval at the n images of that rate" in sec and "`[n/(n + z²), 1]`" in sec
    m12 = compute_metrics([0, 1] * 6, [0, 1] * 6, ["a", "b"], n_boot=50)
    assert m12["accuracy_ci"] == pytest.approx([12 / (12 + 1.959964**2), 1.0], abs=1e-6)
