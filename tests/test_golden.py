"""Golden test: the verdict-defining numbers of a fixed, seeded tiny scan must not change.

The scan: a 3-class small CNN exported to ONNX is the target, the same network's checkpoint is the
surrogate (so the attacks do flip predictions), 12 brightness images with patient ids, MI-FGSM, USMM
and STM (RandConv) at ε 8 and 64, JPEG / median / feature-consistency defenses, the detectors and
three ``--fail-under`` gates. The test compares the numbers that decide a verdict (per-condition
accuracy and confusion matrix, ASR and flip rate with their CIs, per-image predictions, perturbation
sizes, detector AUCs, gate outcomes, the defense verdict and the summary numbers) with
``tests/golden/tiny_scan.json``. Times, paths, hashes of the environment and host facts are left out.
``--precision fp32`` is pinned: ``auto`` chooses bf16 or fp32 by timing the host, which would make the
adversarial images depend on the machine's load; torch runs the scan on one thread, since the thread
count changes the order of float sums in the surrogate's gradients.

Counts, predictions, class indices, names and pass/fail flags are compared exactly; floats with an
absolute tolerance of ``FLOAT_TOL`` (probabilities and everything computed from them can differ in
the last bits between CPUs and BLAS builds).

Rates of 0/n and n/n (issue 24): the golden file was made when such a rate's CI was the bootstrap's zero-width
``[0, 0]`` / ``[1, 1]``; the tool now reports the Wilson interval there. The golden file is NOT regenerated for
this: :func:`migrate_degenerate_rate_cis` derives the expected interval from the golden file itself (see
:data:`WILSON_RATE_CIS`), and every other value keeps its exact comparison.

Regenerate (only when a change of the numbers is intended, and say why in the commit message):

    UPDATE_GOLDEN=1 python -m pytest -q -p no:cacheprovider tests/test_golden.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from auditor.cli import cli
from auditor.reference_models.registry import build_model, make_checkpoint
from auditor.report.defense_verdict import defense_verdict
from auditor.report.io import load_results
from auditor.report.summary import summary_numbers
from auditor.training.export import export_classifier
from auditor.types import ModelSpec
from onnx_factory import brightness_images, write_image_folder

GOLDEN = Path(__file__).resolve().parent / "golden" / "tiny_scan.json"
FLOAT_TOL = 1e-4
#: Cross-CPU tolerances of the two float families that depend on the host's kernels, not on the tool's logic.
#: Measured on 2026-12-06 (golden file made on an AMD EPYC with AVX-512, compared on an Intel Xeon with AVX-512
#: and AMX, same torch/MKL/oneDNN builds, one thread; no MKL_CBWR, ONEDNN_MAX_CPU_ISA or ATEN_CPU_CAPABILITY
#: setting reproduces the other CPU): every count, prediction, rate, CI, AUC, gate and verdict matched exactly
#: or within FLOAT_TOL, but (a) USMM's sets round a few PNG pixels differently (its 15 gradient copies nearly
#: cancel on some pixels, as with the thread count above), moving the image statistics of its sets by up to
#: 0.96 % relative (detector mean_edge 29.84 vs 30.13; SSIM 0.48 %, L2 and PSNR 0.02 %), and (b) the feature-
#: consistency defense's conv features move its per-image probabilities by up to 4.1e-4. These keys get twice
#: the measured spread; everything else keeps FLOAT_TOL.
HOST_REL_TOL = {"psnr_mean": 2e-2, "l2_mean": 2e-2, "ssim_mean": 2e-2, "mean_edge": 2e-2, "mean_ssim": 2e-2}
HOST_PROBABILITY_TOL = 1e-3
#: Issue 24 migration rule: a deliberate behaviour change of the tool, not a regeneration of the golden file.
#: Since issue 24 a rate of 0/n or n/n reports the Wilson score interval at its n images instead of the percentile
#: bootstrap's zero-width interval (docs/algorithms.md §10). Where the golden file holds such a rate's CI with
#: lo == hi == the rate at 0 or 1, the expected value is the Wilson interval computed below by its closed form
#: (independently of auditor.metrics.wilson_interval) at the n the golden file records for that rate; the tool's
#: output is then compared with it with the usual FLOAT_TOL. Only these rate intervals are reached (CI key: the key
#: of the rate and where its n is, in the same condition); macro-F1 is not a proportion of images, keeps its
#: bootstrap interval and is compared exactly like every other value. Measured 2026-12-06: the rule reaches 134
#: CIs of tests/golden/tiny_scan.json (84 per-class sensitivity, 25 attack success rate, 19 flip rate, 6 accuracy).
WILSON_RATE_CIS = {
    "accuracy_ci": ("accuracy", "metrics.n"),
    "sensitivity_ci": ("sensitivity", "support"),
    "attack_success_rate_ci": ("attack_success_rate", "n_clean_correct"),
    "flip_rate_ci": ("flip_rate", "condition.metrics.n"),
}
WILSON_MIGRATED = 134
TRAIN_STEPS = 12
CLASSES = ["normal", "pneumonia", "pneumothorax"]

# keys left out of the comparison: wall-clock times, paths, cache bookkeeping, free text that quotes them
_DROP = {
    "seconds",
    "seconds_per_image",
    "cost_ms_per_image",
    "dir",
    "cache_hit",
    "cache_warnings",
    "key",
    "paths",
    "sha256",
    "root",
    "image",
    "images",
    "uri",
    "example",
    "examples",
    "cost_ms",
    "fft_example",
}


def _scrub(value: Any) -> Any:
    """Drop volatile keys recursively; round nothing (the comparison carries the tolerance)."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in sorted(value.items()) if k not in _DROP}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if dataclasses.is_dataclass(value):  # a Condition inside the verdict/summary: pinned by its name
        return {"condition": value.name} if hasattr(value, "name") else _scrub(dataclasses.asdict(value))
    return value


def _condition(c: dict) -> dict:
    keep = (
        "name",
        "kind",
        "attack",
        "epsilon",
        "defense",
        "threat_model",
        "backend",
        "n_clean_correct",
        "n_fooled",
        "n_flipped",
        "predictions",
        "probabilities",
        "attack_success_rate",
        "attack_success_rate_ci",
        "flip_rate",
        "flip_rate_ci",
        "linf_max",
        "linf_mean",
        "l2_mean",
        "ssim_mean",
        "psnr_mean",
        "transfer",
        "style_diversity",
    )
    out = {k: c.get(k) for k in keep}
    m = c["metrics"]
    out["metrics"] = {
        k: m.get(k)
        for k in ("n", "accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "confusion_matrix", "per_class")
    }
    return _scrub(out)


def pinned(results_json: Path) -> dict:
    """The verdict-defining part of a results.json (and of the verdicts computed from it)."""
    doc = json.loads(results_json.read_text())
    result = load_results(results_json)
    return _scrub(
        {
            "conditions": [_condition(c) for c in doc["conditions"]],
            "gates": doc["gates"],
            "skipped": doc["skipped"],
            "detector": doc["detector"],
            "data": {k: doc["data"][k] for k in ("n_images", "per_class", "patient_ids", "manifest_sha256")},
            "defense_verdict": defense_verdict(result),
            "summary": summary_numbers(result),
        }
    )


def _tolerance(where: str) -> tuple[float, float]:
    """``(rel_tol, abs_tol)`` for the value at path ``where`` (see :data:`HOST_REL_TOL`)."""
    key = where.rsplit(".", 1)[-1]
    if key in HOST_REL_TOL:
        return HOST_REL_TOL[key], FLOAT_TOL
    if ".probabilities[" in where:
        return 0.0, HOST_PROBABILITY_TOL
    return 0.0, FLOAT_TOL


def _compare(got: Any, want: Any, where: str, errors: list[str]) -> None:
    if isinstance(want, dict) and isinstance(got, dict):
        if set(got) != set(want):
            errors.append(f"{where}: keys differ: +{sorted(set(got) - set(want))} -{sorted(set(want) - set(got))}")
        for k in set(got) & set(want):
            _compare(got[k], want[k], f"{where}.{k}", errors)
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            errors.append(f"{where}: length {len(got)} != {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            _compare(g, w, f"{where}[{i}]", errors)
    elif isinstance(want, float) or isinstance(got, float):
        both_num = isinstance(got, (int, float)) and isinstance(want, (int, float))
        rel, tol = _tolerance(where)
        if not both_num or not (
            math.isclose(got, want, rel_tol=rel, abs_tol=tol) or (math.isnan(got) and math.isnan(want))
        ):
            errors.append(f"{where}: {got!r} != {want!r} (±{tol}, rel {rel})")
    elif got != want or type(got) is not type(want):
        errors.append(f"{where}: {got!r} != {want!r}")


def wilson_closed_form(k: int, n: int, level: float = 0.95) -> list[float]:
    """Wilson score interval (Wilson, JASA 1927) by its closed form
    ``(k + z²/2 ± z·sqrt(k(n − k)/n + z²/4)) / (n + z²)``, z the normal quantile at (1 + level)/2."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    centre, half = k + z * z / 2, z * math.sqrt(k * (n - k) / n + z * z / 4)
    return [max(0.0, (centre - half) / (n + z * z)), min(1.0, (centre + half) / (n + z * z))]


def _rate_and_n(owner: dict, condition: dict, ci_key: str) -> tuple[Any, Any]:
    """The rate and its n that the golden file records for the CI ``owner[ci_key]`` (see WILSON_RATE_CIS)."""
    rate_key, n_at = WILSON_RATE_CIS[ci_key]
    if n_at == "metrics.n":  # the accuracy's n sits beside it in the metrics block
        n = owner.get("n")
    elif n_at == "condition.metrics.n":  # the flip rate counts every image of its condition
        n = condition.get("metrics", {}).get("n")
    else:
        n = owner.get(n_at)
    return owner.get(rate_key), n


def migrate_degenerate_rate_cis(want: dict) -> tuple[dict, int]:
    """A copy of the golden ``want`` with each degenerate rate CI (lo == hi == rate, at 0 or 1, n > 0; keys of
    WILSON_RATE_CIS inside ``conditions``) replaced by :func:`wilson_closed_form` at that n, and how many were."""
    out = json.loads(json.dumps(want))
    count = 0

    def visit(owner: dict, condition: dict) -> None:
        nonlocal count
        for key, value in owner.items():
            if key in WILSON_RATE_CIS and isinstance(value, list) and len(value) == 2:
                rate, n = _rate_and_n(owner, condition, key)
                degenerate = value[0] == value[1] == rate and rate in (0.0, 1.0)
                if degenerate and isinstance(n, int) and not isinstance(n, bool) and n > 0:
                    owner[key] = wilson_closed_form(int(round(rate * n)), n)
                    count += 1
            elif isinstance(value, dict):
                visit(value, condition)

    for condition in out.get("conditions", []):
        visit(condition, condition)
    return out, count


#: Issue 24 migration rule, item 6 (a deliberate behaviour change, not a regeneration): the defense verdict names
#: a defense best only when the exact paired McNemar test, Holm-adjusted over the qualifying defenses, finds it
#: better than no defense at the worst case (it used to compare its accuracy with the undefended worst case's CI,
#: which is not a test: both come from the same images). On the golden scan the named defense is right on 4 of 12
#: images the undefended worst case gets wrong and wrong on none it gets right: exact p = 2 * 2^-4 = 0.125, Holm
#: over 3 qualifying defenses 0.375, so it is no longer named. :func:`migrate_defense_claim` recomputes that test
#: here, from the golden file's pinned per-image predictions and its own closed forms (not auditor.metrics), and
#: derives the expected verdict from the golden one: the golden ``best`` stands only if the test is significant,
#: and the golden "Best defense: ..." sentence becomes the "No defense is shown ..." sentence with the same
#: figures. Everything else in the verdict is compared with the golden file as before.
DEFENSE_CLAIM_ALPHA = 0.05


def mcnemar_closed_form(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: ``min(1, 2 P(X <= min(b, c)))``, X ~ Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n)


def holm_closed_form(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, Scand. J. Statist. 1979), in the input order."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def migrate_defense_claim(want: dict, got: dict, labels: list[int]) -> dict:
    """A copy of the golden ``want`` whose defense verdicts follow the issue-24 exact paired test (see above).

    The tool's ``claim`` (in ``got``) is checked against this test's own recomputation from the golden
    predictions, so it is pinned as firmly as any other value: each family member's condition must be that
    defense's worst attacked condition, and its discordant counts, p and Holm-adjusted p must match.
    """
    out = json.loads(json.dumps(want))
    preds = {c["name"]: c["predictions"] for c in want["conditions"]}
    y = labels
    claim = got["defense_verdict"]["claim"]
    dv = out["defense_verdict"]
    assert dv["mode"] == "same images", "the recomputation scores all images; a held-out verdict needs its halves"
    base = dv["baseline"]["cond"]["condition"]
    right = {name: [int(p == t) for p, t in zip(ps, y)] for name, ps in preds.items()}
    acc = {name: sum(r) / len(r) for name, r in right.items()}
    rows, ps = [], []
    for row in claim["rows"]:
        d, cond = row["defense"], row["condition"]
        attacked = [n for n in preds if n.startswith(f"{d}/") and not n.endswith("/clean")]
        assert cond in attacked and acc[cond] == min(acc[n] for n in attacked), (d, cond)
        b = sum(1 for u, v in zip(right[cond], right[base]) if u and not v)
        c = sum(1 for u, v in zip(right[cond], right[base]) if v and not u)
        rows.append({"defense": d, "condition": cond, "defense_only": b, "undefended_only": c})
        ps.append(mcnemar_closed_form(b, c))
    for r, p, p_holm in zip(rows, ps, holm_closed_form(ps)):
        r.update(p=p, p_holm=p_holm)
    assert rows and rows[0]["defense"] == dv["candidate"]["name"]
    assert claim["baseline_condition"] == base and claim["n"] == len(y) and claim["measured"] is True
    significant = rows[0]["defense_only"] > rows[0]["undefended_only"] and rows[0]["p_holm"] <= DEFENSE_CLAIM_ALPHA
    expected_claim = {**claim, "rows": rows, "m": len(rows), "p": rows[0]["p"], "p_holm": rows[0]["p_holm"]}
    expected_claim["significant"] = significant
    qualifies = dv["best"] is not None or not dv["significant"]
    text = dv["text"]
    if not significant and dv["best"] is not None:
        head = f"Best defense: {dv['candidate']['name']} ("
        assert text.startswith(head)
        sel, _, rest = text[len(head) :].partition("): ")
        p_text = f"= {rows[0]['p_holm']:.2g}" if rows[0]["p_holm"] >= 0.001 else "< 0.001"
        text = (
            f"No defense is shown to be better than no defense at the worst case (exact paired test, Holm-adjusted "
            f"p {p_text}). The top-ranked defense, {dv['candidate']['name']} ({sel}), has {rest}"
        )
    dv.update(
        claim=expected_claim,
        significant=significant,
        qualifies=qualifies,
        best=dv["best"] if significant else None,
        text=text,
    )
    out["summary"]["defense_verdict"] = dv
    out["summary"]["best_defense"] = dv["best"]
    return out


def _trained_net() -> torch.nn.Module:
    """The small CNN after a few seeded full-batch Adam steps on brightness images (CPU, deterministic)."""
    torch.manual_seed(0)
    net = build_model("small_cnn", 3, 1)
    x, y = (torch.from_numpy(a) for a in brightness_images(10, 32, seed=1))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(TRAIN_STEPS):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread while the golden scan runs: float sums in the surrogate's backward pass are
    reduced in a thread-count dependent order, and a USMM set at 2 threads rounds a few PNG pixels
    differently from one made at 1 (measured: perturbation statistics off by ~1e-3)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory, one_torch_thread) -> Path:
    root = tmp_path_factory.mktemp("golden")
    data = write_image_folder(root / "data", n_per_class=4, size=32, patient_manifest=True)
    spec_d = {
        "layout": "NCHW",
        "channels": 1,
        "height": 32,
        "width": 32,
        "scaling": "unit",
        "mean": [0.0],
        "std": [1.0],
        "class_names": CLASSES,
        "output_kind": "logits",
    }
    net = _trained_net()
    torch.save(make_checkpoint(net, "small_cnn", 3, 1, spec_d), root / "surrogate.pt")
    spec = ModelSpec(
        input_name="input",
        output_name="logits",
        layout="NCHW",
        channels=1,
        height=32,
        width=32,
        scaling="unit",
        mean=(0.0,),
        std=(1.0,),
        class_names=tuple(CLASSES),
        output_kind="logits",
    )
    sample = np.linspace(0, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 1, 32, 32)
    export_classifier(net, spec, root / "target.onnx", sample)
    ref = data / "normal" / "img_000.png"
    args = [
        "scan",
        str(root / "target.onnx"),
        "--data",
        str(data),
        "--out",
        str(root / "out"),
        "--surrogate",
        str(root / "surrogate.pt"),
        "--attacks",
        "mifgsm,usmm,stm",
        "--eps",
        "8,64",
        "--defenses",
        f"jpeg:75,median:3,feature:{ref}",
        "--n-boot",
        "50",
        "--seed",
        "0",
        "--precision",
        "fp32",
        "--cache-dir",
        str(root / "cache"),
        "-q",
        "--format",
        "json",
        "--fail-under",
        "accuracy=0.2,robust_accuracy=0.2,max_flip_rate=0.5",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code in (0, 1), r.output  # 1: a gate failed, which is part of what is pinned
    return root / "out" / "results.json"


def test_tiny_scan_matches_golden(tiny_scan):
    got = pinned(tiny_scan)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"golden file rewritten: {GOLDEN} (justify the change in the commit message)")
    if not GOLDEN.is_file():
        pytest.fail(f"{GOLDEN} missing; create it with UPDATE_GOLDEN=1 (see the module docstring)")
    want, migrated = migrate_degenerate_rate_cis(json.loads(GOLDEN.read_text()))
    assert migrated == WILSON_MIGRATED
    labels = [s["label_index"] for s in json.loads(tiny_scan.read_text())["samples"]]
    want = migrate_defense_claim(want, got, labels)
    assert want["defense_verdict"]["best"] is None and want["defense_verdict"]["claim"]["p_holm"] == pytest.approx(
        0.375
    )
    errors: list[str] = []
    _compare(got, want, "results", errors)
    assert not errors, "the tiny scan's numbers changed:\n" + "\n".join(errors[:40])


def test_golden_comparison_catches_a_changed_prediction():
    """The comparator is not vacuous: one changed prediction or a float beyond the tolerance fails it."""
    want = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else pytest.skip("no golden file yet")
    got = json.loads(json.dumps(want))
    got["conditions"][1]["predictions"][0] = (got["conditions"][1]["predictions"][0] + 1) % 3
    got["conditions"][1]["flip_rate"] += 2 * FLOAT_TOL
    errors: list[str] = []
    _compare(got, want, "results", errors)
    assert len(errors) == 2
    near = json.loads(json.dumps(want))
    near["conditions"][1]["flip_rate"] += FLOAT_TOL / 10
    errors = []
    _compare(near, want, "results", errors)
    assert errors == []


def test_host_tolerances_cover_only_their_keys():
    """The cross-CPU tolerances apply to image statistics and probabilities alone: an accuracy, a rate or an
    AUC keeps FLOAT_TOL, and image statistics still fail beyond their tolerance."""
    want = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else pytest.skip("no golden file yet")
    got = json.loads(json.dumps(want))
    c = got["conditions"][4]
    c["metrics"]["accuracy"] += 2 * FLOAT_TOL
    c["ssim_mean"] *= 1.05
    c["probabilities"][0][0] += 2 * HOST_PROBABILITY_TOL
    errors: list[str] = []
    _compare(got, want, "results", errors)
    assert len(errors) == 3, errors
    ok = json.loads(json.dumps(want))
    ok["conditions"][4]["ssim_mean"] *= 1.01
    ok["conditions"][4]["probabilities"][0][0] += HOST_PROBABILITY_TOL / 2
    errors = []
    _compare(ok, want, "results", errors)
    assert errors == []


def test_wilson_migration_reaches_only_degenerate_rate_cis():
    """The issue-24 rule rewrites exactly the zero-width rate CIs at 0 or 1, to the right Wilson bound: a perturbed
    non-degenerate CI, a wrong Wilson bound, a kept zero-width interval and a zero-width macro-F1 CI still fail."""
    raw = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else pytest.skip("no golden file yet")
    want, count = migrate_degenerate_rate_cis(raw)
    assert count == WILSON_MIGRATED
    # the closed form at known values (Newcombe, Stat. Med. 1998, Table II: 0/20 -> 0–0.1611; 1/29 -> 0.0061–0.1718)
    assert wilson_closed_form(0, 20) == pytest.approx([0.0, 0.1611], abs=1e-4)
    assert wilson_closed_form(1, 29) == pytest.approx([0.0061, 0.1718], abs=1e-4)
    changed = [
        (i, k)
        for i, (c0, c1) in enumerate(zip(raw["conditions"], want["conditions"]))
        for k in ("attack_success_rate_ci", "flip_rate_ci")
        if c0[k] != c1[k]
    ]
    assert changed and all(raw["conditions"][i][k][0] == raw["conditions"][i][k][1] for i, k in changed)
    i, key = next((i, k) for i, k in changed if k == "flip_rate_ci")
    c = want["conditions"][i]
    assert c["flip_rate"] == 0.0 and c[key] == pytest.approx([0.0, 0.2425], abs=1e-4)  # 0/12
    # non-degenerate CIs and macro-F1 are untouched
    for c0, c1 in zip(raw["conditions"], want["conditions"]):
        assert c0["metrics"]["macro_f1_ci"] == c1["metrics"]["macro_f1_ci"]
        ci = c0["metrics"]["accuracy_ci"]
        if ci and ci[0] != ci[1]:
            assert c1["metrics"]["accuracy_ci"] == ci

    def errors_of(got: dict) -> list[str]:
        out: list[str] = []
        _compare(got, want, "results", out)
        return out

    assert errors_of(json.loads(json.dumps(want))) == []
    # a tool still printing the zero-width bootstrap interval fails
    stale = json.loads(json.dumps(want))
    stale["conditions"][i][key] = [0.0, 0.0]
    assert len(errors_of(stale)) == 1
    # a wrong Wilson bound fails: z = 1.645 instead of 1.96, the interval at half the n (as if clustered), or a
    # Wilson upper end off by twice the tolerance
    for bad in (
        wilson_closed_form(0, 12, level=0.90),
        wilson_closed_form(0, 6),
        [0.0, want["conditions"][i][key][1] + 2 * FLOAT_TOL],
    ):
        wrong = json.loads(json.dumps(want))
        wrong["conditions"][i][key] = bad
        assert len(errors_of(wrong)) == 1, bad
    # a perturbed non-degenerate CI still fails exactly as before
    j = next(
        j for j, c in enumerate(raw["conditions"]) if c["metrics"]["accuracy_ci"][0] != c["metrics"]["accuracy_ci"][1]
    )
    moved = json.loads(json.dumps(want))
    moved["conditions"][j]["metrics"]["accuracy_ci"][1] -= 2 * FLOAT_TOL
    assert len(errors_of(moved)) == 1
    # a degenerate CI away from 0 and 1, or at a rate it does not match, is left to the exact comparison
    odd = json.loads(json.dumps(raw))
    odd["conditions"][j]["metrics"]["accuracy_ci"] = [0.5, 0.5]
    odd["conditions"][i]["flip_rate"] = 1.0
    odd_want, odd_count = migrate_degenerate_rate_cis(odd)
    assert odd_count == WILSON_MIGRATED - 1
    assert odd_want["conditions"][j]["metrics"]["accuracy_ci"] == [0.5, 0.5]
    assert odd_want["conditions"][i][key] == [0.0, 0.0]
    # a zero-width macro-F1 CI is never migrated
    f1 = json.loads(json.dumps(raw))
    k = next(k for k, c in enumerate(f1["conditions"]) if c["metrics"]["macro_f1_ci"] == [0.0, 0.0])
    assert migrate_degenerate_rate_cis(f1)[0]["conditions"][k]["metrics"]["macro_f1_ci"] == [0.0, 0.0]


def test_defense_claim_migration_recomputes_the_test_and_catches_a_wrong_one(tiny_scan):
    """The item-6 rule derives the expected claim from the golden predictions: the tool's own claim passes, a
    claim with a changed count, a flattering p-value or the wrong condition for a defense does not."""
    raw = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else pytest.skip("no golden file yet")
    got = pinned(tiny_scan)
    labels = [s["label_index"] for s in json.loads(tiny_scan.read_text())["samples"]]
    want, _ = migrate_degenerate_rate_cis(raw)
    want = migrate_defense_claim(want, got, labels)
    assert want["defense_verdict"]["text"].startswith("No defense is shown to be better than no defense")
    assert want["summary"]["best_defense"] is None

    def errors_of(candidate: dict) -> list[str]:
        out: list[str] = []
        _compare(candidate, want, "results", out)
        return out

    assert errors_of(got) == []
    for path, value in ((("rows", 0, "defense_only"), 5), (("p_holm",), 0.04), (("significant",), True)):
        bad = json.loads(json.dumps(got))
        owner = bad["defense_verdict"]["claim"]
        for k in path[:-1]:
            owner = owner[k]
        owner[path[-1]] = value
        assert errors_of(bad), path
    wrong_condition = json.loads(json.dumps(got))
    row = wrong_condition["defense_verdict"]["claim"]["rows"][0]
    row["condition"] = row["condition"].replace("@64", "@8")
    with pytest.raises(AssertionError):
        migrate_defense_claim(json.loads(json.dumps(raw)), wrong_condition, labels)
