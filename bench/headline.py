"""Headline table of a real-data audit, and a redacted copy of its results for the repository.

Reads a ``results.json`` written by ``xray-audit scan`` and prints, per attack and ε:

* clean → attacked accuracy (95 % patient-bootstrap CI, as the scan stored it) and the attack
  success rate (clean-correct images made wrong);
* per defense, the accuracy that counts for it: the worse of the non-adaptive condition and the
  adaptive (BPDA) one where ``--bpda`` ran (the report's rule);
* seconds per image spent building the adversarial set;
* the paired comparison that decides whether USMM / STM transfer better than MI-FGSM on these
  images: the difference in target accuracy between the two attacks at the same ε, on the same
  images (with a patient-wise paired bootstrap 95 % CI, descriptive), and the exact McNemar test
  of the two per-image outcomes (``auditor.metrics.mcnemar_exact``). The comparisons of the table
  are one family: their p-values are Holm-adjusted (``auditor.metrics.holm``), and a comparison is
  decided only when its adjusted p-value is at most :data:`ALPHA` (5 %). Unadjusted p-values and
  bootstrap intervals that exclude 0 are not claims.

``--redact OUT.json`` writes a copy of results.json without the embedded example images (the data
set's images are never copied into the repository) and with sample paths made relative to the
data root; ``xray-audit report OUT.json`` renders it into an example-free PDF.

    python bench/headline.py RESULTS.json [--markdown table.md] [--redact redacted.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.metrics import holm, mcnemar_exact, ratio_ci  # noqa: E402
from auditor.report.defense_conditions import defended_on, defense_names  # noqa: E402
from auditor.types import AuditResult, Condition  # noqa: E402

N_BOOT = 2000
SEED = 0
#: family-wise error rate of the paired comparisons (Holm)
ALPHA = 0.05


def _fmt(v: float | None, ci: Any = None) -> str:
    if v is None or not math.isfinite(v):
        return "–"
    s = f"{100 * v:.1f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return s


def paired_difference(
    a: np.ndarray, b: np.ndarray, groups: list[str | None], n_boot: int = N_BOOT, seed: int = SEED
) -> tuple[float, list[float]]:
    """Mean of ``a - b`` (per-image 0/1 outcomes on the same images) and its 95 % CI from the scan's own
    patient bootstrap (``auditor.metrics.ratio_ci`` of the per-image differences over the image count)."""
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(d.mean()), ratio_ci(d, np.ones_like(d), groups, n_boot, seed)


def _seconds_per_image(result: AuditResult, name: str) -> float | None:
    n = len(result.samples)
    for s in result.extras.get("adversarial_sets", []) if isinstance(result.extras, dict) else []:
        if s.get("name") == name and isinstance(s.get("seconds"), (int, float)) and n:
            return None if s.get("cache_hit") else float(s["seconds"]) / n
    return None


def headline(result: AuditResult) -> str:
    """Markdown: one row per attacked condition, one column per defense, then the paired comparison."""
    y = np.array([s["label_index"] for s in result.samples])
    groups = [s.get("patient_id") or None for s in result.samples]
    clean = next(c for c in result.conditions if c.kind == "clean")
    attacked = [c for c in result.conditions if c.kind == "attack"]
    defenses = defense_names(result)
    head = ["attack", "ε", "s/img", "clean", "attacked", "ASR"] + [
        f"{d} (worst of adaptive/non-adaptive)" for d in defenses
    ]
    n_patients = len({g for g in groups if g}) + groups.count(None)  # an image without an id is its own patient
    lines = [
        f"n = {len(result.samples)} images, {n_patients} patients; accuracy in % with 95 % patient-bootstrap CIs",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    clean_txt = _fmt(clean.metrics.get("accuracy"), clean.metrics.get("accuracy_ci"))
    for c in sorted(attacked, key=lambda c: (c.attack or "", c.epsilon or 0)):
        spi = _seconds_per_image(result, c.name)
        row = [
            c.name.split("@")[0],
            f"{round(255 * (c.epsilon or 0))}/255",
            f"{spi:.2f}" if spi else "cached",
            clean_txt,
            _fmt(c.metrics.get("accuracy"), c.metrics.get("accuracy_ci")),
            _fmt(c.extra.attack_success_rate, c.extra.attack_success_rate_ci),
        ]
        for d in defenses:
            dc = defended_on(result, d, c.name)
            tag = " (BPDA)" if dc is not None and "+bpda:" in dc.name else ""
            row.append(_fmt(dc.metrics.get("accuracy"), dc.metrics.get("accuracy_ci")) + tag if dc else "–")
        lines.append("| " + " | ".join(row) + " |")
    dclean = [
        f"{d}: {_fmt(x.metrics.get('accuracy'))}"
        for d in defenses
        for x in result.conditions
        if x.kind == "defense" and x.defense == d and x.name.endswith("/clean")
    ]
    lines += ["", "Clean accuracy with each defense: " + ", ".join(dclean), ""]
    lines += _comparison(attacked, y, groups)
    return "\n".join(lines)


def comparisons(attacked: list[Condition], y: np.ndarray, groups: list[str | None]) -> list[dict[str, Any]]:
    """Every attack against MI-FGSM at the same ε on the same images: accuracy difference (MI-FGSM minus
    the attack; positive = the attack transfers better) with its paired bootstrap CI, the exact McNemar
    p-value and the Holm-adjusted one over all the comparisons returned (one family)."""
    base = {c.epsilon: c for c in attacked if c.attack == "mifgsm"}
    rows = []
    for c in sorted(attacked, key=lambda c: (c.attack or "", c.epsilon or 0)):
        b = base.get(c.epsilon)
        if c.attack == "mifgsm" or b is None or len(c.predictions) != len(y) or len(b.predictions) != len(y):
            continue
        b_ok, c_ok = np.asarray(b.predictions) == y, np.asarray(c.predictions) == y
        d, ci = paired_difference(b_ok, c_ok, groups)
        test = mcnemar_exact(b_ok, c_ok)  # a_only: only MI-FGSM's images right = the attack fooled more
        rows.append(
            {
                "condition": c,
                "diff": d,
                "ci": ci,
                "attack_better": test["a_only"],
                "mifgsm_better": test["b_only"],
                "p": test["p"],
            }
        )
    for r, adj in zip(rows, holm([r["p"] for r in rows])):
        r["p_holm"] = adj
        r["decided"] = adj <= ALPHA
    return rows


def _comparison(attacked: list[Condition], y: np.ndarray, groups: list[str | None]) -> list[str]:
    rows = comparisons(attacked, y, groups)
    out = [
        "Paired comparison with MI-FGSM at the same ε (target accuracy of MI-FGSM minus that of the "
        "attack, percentage points; positive = the attack transfers better). Discordant images: only the "
        f"attack / only MI-FGSM fools the target. Exact McNemar p, Holm-adjusted over the {len(rows)} "
        f"comparisons; decided at {ALPHA:g} (adjusted):",
        "",
        "| attack | ε | Δ accuracy [95 % CI] | discordant | p (exact) | p (Holm) | decided? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, d, ci = r["condition"], r["diff"], r["ci"]
        ci_txt = f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else ""
        verdict = ("yes: better than MI-FGSM" if d > 0 else "yes: worse than MI-FGSM") if r["decided"] else "no"
        out.append(
            f"| {c.name.split('@')[0]} | {round(255 * (c.epsilon or 0))}/255 | {100 * d:+.1f}{ci_txt} | "
            f"{r['attack_better']} / {r['mifgsm_better']} | {r['p']:.3g} | {r['p_holm']:.3g} | {verdict} |"
        )
    return out


def redact(raw: dict[str, Any]) -> dict[str, Any]:
    """results.json without embedded images of the data set, with sample paths relative to the data root."""
    out = json.loads(json.dumps(raw))
    out["compared"] = [redact(c) for c in out.get("compared") or [] if isinstance(c, dict)]
    if isinstance(out.get("extras"), dict):
        out["extras"].pop("examples", None)
        out["extras"]["redacted"] = (
            "example images removed and sample paths made relative to the data "
            "root by bench/headline.py --redact (the data set's images stay out of git)"
        )
    for c in out.get("conditions", []):
        c.pop("examples", None)
    paths = [s.get("path") for s in out.get("samples", []) if isinstance(s.get("path"), str)]
    root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    root = os.path.dirname(root) if root and all(os.path.dirname(p) == root for p in paths) else root
    for s in out.get("samples", []):
        if isinstance(s.get("path"), str) and root:
            s["path"] = os.path.relpath(s["path"], root)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    ap.add_argument("--redact", type=Path, help="write a copy of results.json without example images")
    args = ap.parse_args(argv)
    raw = json.loads(args.results.read_text(encoding="utf-8"))
    result = AuditResult.from_dict(raw)
    table = headline(result)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    if args.redact:
        args.redact.write_text(json.dumps(redact(raw), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
