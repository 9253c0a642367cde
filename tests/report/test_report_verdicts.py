"""Defense verdicts of the executive summary: adaptive-aware, held out, CI-checked, signed in words."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.metrics import compute_attack_rates, compute_metrics
from auditor.report.defense_verdict import defense_verdict
from auditor.report.html import render_html
from auditor.report.html_context import build_context
from auditor.report.qualification import COLLAPSE_FRACTION, clean_allowance, qualification
from auditor.report.verdicts import VANISHES_TEXT, patient_halves, signed_change
from auditor.types import AuditResult, Condition

CLASSES = ("normal", "pneumonia")


def _result(y, preds: dict[str, np.ndarray], patients=None, seed: int = 3, adaptive: dict | None = None) -> AuditResult:
    """A result whose conditions come from per-image predictions (real metrics and CIs).

    ``preds`` maps condition names (``clean``, ``usmm@16``, ``jpeg/clean``, ``jpeg/usmm@16`` ...)
    to predictions; ``adaptive`` maps ``usmm@16+bpda:jpeg`` to predictions.
    """
    y = np.asarray(y)
    groups = list(patients) if patients is not None else [None] * len(y)
    clean = preds["clean"]
    conds = []
    for name, p in list(preds.items()) + list((adaptive or {}).items()):
        metrics = compute_metrics(y, p, CLASSES, groups=groups if any(groups) else None, seed=seed, n_boot=300)
        extra = {} if name == "clean" else compute_attack_rates(y, clean, p, n_boot=0)
        if name == "clean":
            kind, attack, eps, defense = "clean", None, None, None
        elif "+bpda:" in name:
            base, defense = name.split("+bpda:")
            kind, attack, eps = "defense", base.split("@")[0], int(base.split("@")[1]) / 255
            extra["adaptive"] = True
            non_adaptive = compute_metrics(y, preds[f"{defense}/{base}"], CLASSES, n_boot=0)["accuracy"]
            undefended = compute_metrics(y, preds[base], CLASSES, n_boot=0)["accuracy"]
            benefit = non_adaptive - undefended
            extra["benefit_vanishes"] = bool(benefit > 0 and metrics["accuracy"] - undefended < 0.5 * benefit)
        elif "/" in name:
            defense, base = name.split("/")
            kind = "defense"
            attack, eps = (None, None) if base == "clean" else (base.split("@")[0], int(base.split("@")[1]) / 255)
        else:
            kind, attack, eps, defense = "attack", name.split("@")[0], int(name.split("@")[1]) / 255, None
        conds.append(
            Condition(
                name,
                kind,
                metrics,
                attack=attack,
                epsilon=eps,
                defense=defense,
                threat_model="transfer" if attack else None,
                extra=extra,
                predictions=tuple(int(v) for v in p),
            )
        )
    samples = tuple(
        {"path": f"img{i:03d}.png", "label": CLASSES[t], "label_index": int(t), "patient_id": g, "sha256": ""}
        for i, (t, g) in enumerate(zip(y, groups))
    )
    return AuditResult(
        schema_version="1.0",
        tool_version="0.1.0",
        created="2025-01-01T00:00:00+00:00",
        finished="",
        command="",
        model={"path": "m.onnx", "sha256": "0" * 64, "spec": {"class_names": list(CLASSES)}},
        data={"n_images": len(y)},
        conditions=tuple(conds),
        samples=samples,
        parameters={"seed": seed, "n_boot": 300},
    )


def _wrong(y, idx) -> np.ndarray:
    """``y`` with the images ``idx`` misclassified."""
    p = np.array(y).copy()
    p[list(idx)] = 1 - p[list(idx)]
    return p


def _summary_text(result: AuditResult) -> str:
    html = render_html(result)
    return html[html.index('id="summary"') : html.index('id="model"')]


def test_clean_change_is_signed_with_words():
    assert signed_change(0.05) == "+5.0 pp gain"
    assert signed_change(-0.03) == "\u22123.0 pp loss"
    assert signed_change(0.0) == "0.0 pp (no change)" and signed_change(None) == "—"


def test_summary_uses_the_worse_of_adaptive_and_non_adaptive():
    n = 40
    y = np.array([0, 1] * (n // 2))
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(30)),  # 25% undefended
        "jpeg/clean": y.copy(),
        "jpeg/usmm@16": _wrong(y, range(2)),
    }  # 95% non-adaptive
    adaptive = {"usmm@16+bpda:jpeg": _wrong(y, range(28))}  # 30% adaptive
    result = _result(y, preds, adaptive=adaptive)
    v = defense_verdict(result)
    _, ev = patient_halves(result.samples, 3)
    adaptive_acc = float((adaptive["usmm@16+bpda:jpeg"][ev] == y[ev]).mean())
    assert adaptive_acc < float((preds["jpeg/usmm@16"][ev] == y[ev]).mean())
    assert v["mode"] == "held-out" and v["candidate"]["robust"] == pytest.approx(adaptive_acc)
    assert v["candidate"]["robust_cond"].name == "usmm@16+bpda:jpeg"
    assert v["candidate"]["benefit_vanishes"]
    summary = _summary_text(result)
    assert VANISHES_TEXT in summary
    assert "95.0%" not in summary  # the flattering non-adaptive figure is not the verdict
    ctx = build_context(result, with_figures=False)
    (row,) = ctx["before_after"]
    assert row["defense"] == "usmm@16+bpda:jpeg" and row["defended"] == pytest.approx(0.30)


def test_no_best_defense_when_the_paired_test_finds_no_improvement():
    n = 40
    y = np.array([0, 1] * (n // 2))
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(20)),  # 50%
        "jpeg/clean": _wrong(y, [39]),
        "jpeg/usmm@16": _wrong(y, range(18)),
    }  # 55%: inside the CI
    result = _result(y, preds)
    v = defense_verdict(result)
    assert not v["significant"] and v["best"] is None
    summary = _summary_text(result)
    assert "No defense is shown to be better than no defense at the worst case" in summary
    assert 'id="best-defense">none<' in summary


def test_best_defense_is_named_when_it_clears_the_ci():
    n = 40
    y = np.array([0, 1] * (n // 2))
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(30)),  # 25%
        "jpeg/clean": _wrong(y, [0, 1]),
        "jpeg/usmm@16": _wrong(y, range(4)),
    }  # 90%
    v = defense_verdict(_result(y, preds))
    assert v["significant"] and v["best"]["name"] == "jpeg"
    assert v["text"].startswith("Best defense: jpeg")
    assert "\u2212" in v["candidate"]["clean_change_text"] and "pp loss" in v["candidate"]["clean_change_text"]


def test_best_defense_is_chosen_on_one_half_and_scored_on_the_other():
    n = 80
    y = np.array([0, 1] * (n // 2))
    patients = [f"p{i // 2:02d}" for i in range(n)]  # two images per patient
    halves = patient_halves([{"patient_id": p} for p in patients], seed=3)
    assert halves is not None
    sel, ev = halves
    assert not {patients[i] for i in sel} & {patients[i] for i in ev}  # no patient in both halves
    # "lucky" is perfect on the selection half only; "steady" is good on both halves and better on all images
    lucky = _wrong(y, ev[: int(0.8 * len(ev))])
    steady = _wrong(y, list(sel[:8]) + list(ev[:8]))
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(60)),
        "lucky/clean": y.copy(),
        "lucky/usmm@16": lucky,
        "steady/clean": y.copy(),
        "steady/usmm@16": steady,
    }
    result = _result(y, preds, patients=patients)
    v = defense_verdict(result)
    assert v["mode"] == "held-out" and v["n_select"] == len(sel) and v["n_eval"] == len(ev)
    assert v["candidate"]["name"] == "lucky"  # chosen on the selection half ...
    expected = float((lucky[ev] == y[ev]).mean())
    assert v["candidate"]["robust"] == pytest.approx(expected)  # ... reported on the other half
    assert not v["significant"]  # and there it is no better than the undefended worst case
    assert f"measured on the other {len(ev)}" in v["text"]


def test_small_sets_say_the_defense_was_chosen_on_the_same_images():
    y = np.array([0, 1] * 6)
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(8)),
        "jpeg/clean": y.copy(),
        "jpeg/usmm@16": _wrong(y, range(1)),
    }
    v = defense_verdict(_result(y, preds))
    assert v["mode"] == "same images"
    assert "chosen and measured on the same 12 images" in v["text"]


def test_defended_curves_are_drawn_next_to_the_undefended_ones():
    y = np.array([0, 1] * 10)
    preds = {
        "clean": y.copy(),
        "usmm@4": _wrong(y, range(4)),
        "usmm@8": _wrong(y, range(8)),
        "jpeg/clean": y.copy(),
        "jpeg/usmm@4": _wrong(y, range(2)),
        "jpeg/usmm@8": _wrong(y, range(3)),
    }
    curves = {c["label"]: c for c in build_context(_result(y, preds), with_figures=False)["curves"]}
    assert set(curves) == {"usmm", "usmm + jpeg"}
    assert curves["usmm + jpeg"]["dashed"] and curves["usmm + jpeg"]["acc"] == [pytest.approx(0.9), pytest.approx(0.85)]
    assert curves["usmm + jpeg"]["group"] == curves["usmm"]["group"] == "usmm"


def test_console_summary_prints_the_verdict():
    from auditor.report.console import ConsoleRenderer

    y = np.array([0, 1] * 20)
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(20)),
        "jpeg/clean": _wrong(y, [39]),
        "jpeg/usmm@16": _wrong(y, range(18)),
    }
    result = _result(y, preds)
    text = " ".join(ConsoleRenderer().render(result).split())
    assert "No defense is shown to be better than no defense at the worst case" in text
    assert defense_verdict(result)["candidate"]["clean_change_text"] in text
    assert "50.0% (" in text  # usmm@16's attack success rate with its CI


def test_report_defines_both_rates_and_shows_their_cis(html_text):
    start = html_text.index('id="rate-definitions"')
    note = html_text[start : html_text.index("</p>", start)]
    assert "classifies correctly when clean" in note and "clean errors are not counted" in note
    assert "differs from the clean prediction" in note
    conditions = html_text[html_text.index('id="conditions-table"') :]
    conditions = conditions[: conditions.index("</table>")]
    assert "10.0–60.0%" in conditions and "5.0–55.0%" in conditions  # the fixture's ASR and flip-rate CIs


def test_without_a_bootstrap_ci_the_exact_paired_test_still_decides():
    # --n-boot 0: no bootstrap CI for the worst case, but the exact McNemar test needs none (fb43584 and the
    # CI rule could name no defense here); jpeg is right on every image the attack fools undefended
    y = np.array([0, 1] * 20)
    preds = {"clean": y.copy(), "usmm@16": _wrong(y, range(30)), "jpeg/clean": y.copy(), "jpeg/usmm@16": y.copy()}
    result = _result(y, preds)
    result = AuditResult(**{**result.__dict__, "parameters": {"seed": 3, "n_boot": 0}})
    v = defense_verdict(result)
    assert v["claim"]["measured"] and v["claim"]["p_holm"] <= 0.05
    assert v["best"]["name"] == "jpeg" and v["text"].startswith("Best defense: jpeg")


def test_an_all_wrong_worst_case_is_not_a_zero_width_ci():
    # every image is fooled undefended (bootstrap CI [0, 0]); 2 of 40 right with the defense is no evidence
    y = np.array([0, 1] * 20)
    preds = {
        "clean": y.copy(),
        "usmm@8": _wrong(y, range(40)),
        "jpeg/clean": y.copy(),
        "jpeg/usmm@8": _wrong(y, range(2, 40)),
    }
    v = defense_verdict(_result(y, preds))
    assert v["baseline"]["accuracy"] == 0.0 and v["baseline"]["ci"][1] > 0.05
    assert not v["significant"] and v["best"] is None


def _all_normal(y) -> np.ndarray:
    """A defense that calls every image ``normal`` (the issue's median:31)."""
    return np.zeros_like(np.asarray(y))


def test_a_defense_that_calls_everything_normal_is_not_named_best():
    # fb43584 named it best: its worst attacked accuracy (50%) clears the undefended 25%, but pneumonia
    # sensitivity is 0, balanced accuracy is at chance and clean accuracy falls from 100% to 50%
    y = np.array([0, 1] * 20)
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(30)),  # 25%
        "median/clean": _all_normal(y),
        "median/usmm@16": _all_normal(y),  # 50%
    }
    result = _result(y, preds)
    q = qualification(result, "median")
    assert not q["qualifies"] and len(q["reasons"]) == 3
    assert "clean accuracy 50.0% is below the lower end" in q["reasons"][0]
    assert "balanced accuracy 50.0% is not above chance (50.0%)" in q["reasons"][1]
    assert "class pneumonia collapses (clean sensitivity 0.0% with it, 100.0% without" in q["reasons"][2]
    v = defense_verdict(result)
    assert v["best"] is None and v["candidate"]["name"] == "median"
    assert v["text"].startswith("No best defense is named: none qualifies") and "Closest: median" in v["text"]
    assert "class pneumonia collapses" in v["text"]
    summary = _summary_text(result)
    assert 'id="best-defense">none<' in summary and "no defense qualifies" in summary


def test_the_best_qualifying_defense_is_named_and_the_useless_one_is_passed_over():
    y = np.array([0, 1] * 20)
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(30)),  # 25%
        "median/clean": _all_normal(y),
        "median/usmm@16": y.copy(),  # 100% under attack: ranked first, but useless on clean images
        "jpeg/clean": y.copy(),
        "jpeg/usmm@16": _wrong(y, range(4)),  # 90%
    }
    v = defense_verdict(_result(y, preds))
    assert v["best"] is not None and v["best"]["name"] == "jpeg"
    assert v["text"].startswith("Best defense: jpeg")
    assert "Ranked higher but not eligible: median (its clean accuracy 50.0%" in v["text"]


def test_clean_allowance_is_the_ci_or_max_clean_drop():
    y = np.array([0, 1] * 20)
    # 34 of 40 right with the defense (85%): below the Wilson lower end of 40/40 (91.2%), within a 20 pp drop
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(30)),
        "jpeg/clean": _wrong(y, range(6)),
        "jpeg/usmm@16": _wrong(y, range(8)),
    }
    result = _result(y, preds)
    low, how = clean_allowance(result)
    assert low == pytest.approx(40 / (40 + 1.959964**2), abs=1e-5) and "95% CI" in how
    assert not qualification(result, "jpeg")["qualifies"]
    assert defense_verdict(result)["best"] is None
    allowed = AuditResult(**{**result.__dict__, "parameters": {**result.parameters, "max_clean_drop": 0.2}})
    assert clean_allowance(allowed)[0] == pytest.approx(0.8)
    assert qualification(allowed, "jpeg") == {"qualifies": True, "reasons": []}
    assert defense_verdict(allowed)["best"]["name"] == "jpeg"
    tight = AuditResult(**{**result.__dict__, "parameters": {**result.parameters, "max_clean_drop": 0.1}})
    assert not qualification(tight, "jpeg")["qualifies"]


def test_a_collapsing_class_disqualifies_even_within_the_clean_allowance():
    assert COLLAPSE_FRACTION == 0.5
    y = np.array([0, 1] * 20)
    pneumonia = list(range(1, 40, 2))
    # the defense keeps 9 of 20 pneumonia images (45% < half of 100%): a collapse; 10 of 20 (50%) is not
    for kept, collapses in ((9, True), (10, False)):
        preds = {
            "clean": y.copy(),
            "usmm@16": _wrong(y, range(30)),
            "jpeg/clean": _wrong(y, pneumonia[kept:]),
            "jpeg/usmm@16": _wrong(y, range(4)),
        }
        result = _result(y, preds)
        result = AuditResult(**{**result.__dict__, "parameters": {**result.parameters, "max_clean_drop": 0.5}})
        q = qualification(result, "jpeg")
        assert q["qualifies"] is not collapses
        assert any("class pneumonia collapses" in r for r in q["reasons"]) is collapses


def test_a_class_the_model_already_misses_is_not_the_defenses_collapse():
    y = np.array([0, 1] * 20)
    blind = _all_normal(y)  # undefended: pneumonia sensitivity 0 already
    preds = {"clean": blind, "usmm@16": _wrong(y, range(30)), "jpeg/clean": blind, "jpeg/usmm@16": blind}
    q = qualification(_result(y, preds), "jpeg")
    assert not any("collapses" in r for r in q["reasons"])
    assert any("not above chance" in r for r in q["reasons"])  # but at chance it still does not qualify


def test_report_command_takes_max_clean_drop(tmp_path):
    from click.testing import CliRunner

    from auditor.cli import cli
    from auditor.report.jsonfmt import results_json

    y = np.array([0, 1] * 20)
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(30)),
        "jpeg/clean": _wrong(y, range(6)),  # 85% clean: outside the clean CI, within a 20 pp drop
        "jpeg/usmm@16": _wrong(y, range(8)),
    }
    path = tmp_path / "results.json"
    path.write_text(results_json(_result(y, preds)))
    out = tmp_path / "r"
    r = CliRunner().invoke(cli, ["report", str(path), "--format", "json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "No best defense is named: none qualifies" in " ".join(r.output.split())
    r = CliRunner().invoke(cli, ["report", str(path), "--format", "json", "--out", str(out), "--max-clean-drop", "0.2"])
    assert r.exit_code == 0, r.output
    assert "Best defense: jpeg" in r.output
    r = CliRunner().invoke(cli, ["report", str(path), "--format", "json", "--out", str(out), "--max-clean-drop", "1.5"])
    assert r.exit_code == 2 and "--max-clean-drop 1.5 must be a fraction" in r.output


def test_top_ranked_defense_card_does_not_read_like_a_gain():
    """Beside a lower worst case, the top-ranked defense's figure is set against its own undefended baseline."""
    n = 40
    y = np.array([0, 1] * (n // 2))
    preds = {
        "clean": y.copy(),
        "usmm@16": _wrong(y, range(20)),  # 50%: the worst case card
        "jpeg/clean": _wrong(y, [39]),
        "jpeg/usmm@16": _wrong(y, range(18)),  # 55% beside it: inside the CI, not a gain
    }
    summary = _summary_text(_result(y, preds))
    note = summary[summary.index('id="no-best-defense"') :].split("</div>", 1)[0]
    assert "under attack against" in note and "undefended on the same images and attacks: not a gain" in note
