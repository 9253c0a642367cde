"""Worst-case table of real-data audits: every threat model of each model, from the scans' results.json.

Reads the JSON written by ``xray-audit scan`` (its public contract, not the library's types) and prints one
Markdown section per model:

* clean accuracy, then one row per undefended attack condition: threat model (transfer, white-box, query),
  attack and ε, accuracy and attack success rate with the 95 % intervals the scan stored, seconds per image
  spent building the set (``cached`` when the set came from the cache), and for query attacks the mean
  number of queries used and the success rate at 100 / 1,000 queries (from the scan's queries curve);
* the worst accuracy per threat model and over all of them: the upper bound on robust accuracy the scans
  establish, with the condition it rests on;
* the attack-strength checks (``extras.strength_checks``): passed, or the checks that flag possible masking;
* conditions the scan skipped (e.g. the white-box attempt on a model onnx2torch cannot convert).

Several results files of one model (say, the all-threat scan and a Square scan at a larger budget) are given
as ``LABEL=PATH`` with the same label; the rows are merged and the worst case is taken over all of them.

    python bench/bounds_table.py target=RUN/target-all/results.json target=RUN/target-sq5000/results.json \
        custom=RUN/custom-all/results.json --markdown bench/results/bounds/kermany.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.metrics import rate_ci  # noqa: E402

THREATS = ("transfer", "white-box", "query")


def _ci(rate: Any, ci: Any, n: Any) -> Any:
    """The interval as the tool reports it today: Wilson at 0/n and n/n (results written before that rule
    landed hold the bootstrap's zero-width interval there)."""
    if isinstance(rate, (int, float)) and isinstance(n, int) and n > 0 and isinstance(ci, (list, tuple)):
        return rate_ci(list(ci), int(round(rate * n)), n)
    return ci


def _pct(v: Any, ci: Any = None) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "not measured"
    s = f"{100 * v:.1f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        s += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    return s


def _eps(c: dict[str, Any]) -> str:
    e = c.get("epsilon")
    return f"{e * 255:g}/255" if isinstance(e, (int, float)) else "–"


def _curve_at(queries: dict[str, Any] | None, budget: int) -> str:
    if not queries:
        return "–"
    best = None
    for q, rate in queries.get("curve", []):
        if q <= budget:
            best = rate
    return "–" if best is None else f"{100 * best:.1f}"


def rows_of(result: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The undefended attack conditions of one results.json, with their set's cost."""
    sets = {s["name"]: s for s in result.get("extras", {}).get("adversarial_sets", [])}
    out = []
    for c in result["conditions"]:
        if c.get("kind") != "attack" or c.get("defense"):
            continue
        st = sets.get(c["name"], {})
        spi = "cached" if st.get("cache_hit") else st.get("seconds_per_image")
        out.append({"condition": c, "seconds_per_image": spi, "source": source})
    return out


def worst_by_eps(rows: list[dict[str, Any]]) -> list[str]:
    """Per ε: the worst accuracy of each threat model and over all of them (the bound the scans establish)."""
    by_eps: dict[float, dict[str, dict[str, Any]]] = {}
    for r in rows:
        c = r["condition"]
        acc, t, e = c["metrics"]["accuracy"], c.get("threat_model"), c.get("epsilon")
        if not isinstance(acc, (int, float)) or not isinstance(e, (int, float)):
            continue
        slot = by_eps.setdefault(round(e * 255, 3), {})
        if t not in slot or acc < slot[t]["metrics"]["accuracy"]:
            slot[t] = c
    if not by_eps:
        return ["No attack condition was measured.", ""]
    out = ["| ε | worst transfer | worst white-box | worst query | **upper bound on robust accuracy** (attacker) |"]
    out.append("|---|---|---|---|---|")
    for e in sorted(by_eps):
        slot = by_eps[e]
        cells = [
            f"{_pct(slot[t]['metrics']['accuracy'])} ({slot[t]['label']})" if t in slot else "not run" for t in THREATS
        ]
        w = min(slot.values(), key=lambda c: c["metrics"]["accuracy"])
        wm = w["metrics"]
        bound = f"**{_pct(wm['accuracy'], _ci(wm['accuracy'], wm.get('accuracy_ci'), wm['n']))}** ({w.get('threat_model')}, {w['label']})"
        out.append(f"| {e:g}/255 | " + " | ".join(cells) + f" | {bound} |")
    return out + [""]


def section(label: str, results: list[tuple[str, dict[str, Any]]]) -> str:
    """The Markdown section of one model."""
    first = results[0][1]
    clean = next(c for c in first["conditions"] if c.get("kind") == "clean")
    n = clean["metrics"]["n"]
    lines = [f"### {label}", ""]
    lines.append(
        f"Model `{Path(first['model']['path']).name}` (SHA-256 {first['model']['sha256'][:12]}…), n = {n} images."
    )
    cm = clean["metrics"]
    lines.append(f"Clean accuracy {_pct(cm['accuracy'], _ci(cm['accuracy'], cm.get('accuracy_ci'), cm['n']))} %.")
    lines.append("")
    lines.append(
        "| threat model | attack | ε | accuracy % [95 % CI] | attack success % [95 % CI] | s/image"
        " | queries: mean used, success % at ≤100 / ≤1000 | scan |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    rows = [r for source, res in results for r in rows_of(res, source)]
    order = {t: i for i, t in enumerate(THREATS)}
    rows.sort(
        key=lambda r: (
            order.get(r["condition"].get("threat_model"), 9),
            r["condition"]["label"],
            r["condition"].get("epsilon") or 0,
        )
    )
    for r in rows:
        c = r["condition"]
        m, asr = c["metrics"], c.get("attack_success_rate")
        spi = r["seconds_per_image"]
        spi_s = spi if isinstance(spi, str) else ("–" if spi is None else f"{spi:.2f}")
        q = c.get("queries")
        qs = "–" if not q else f"{q['mean_used']:.0f}, {_curve_at(q, 100)} / {_curve_at(q, 1000)}"
        lines.append(
            f"| {c.get('threat_model')} | {c['label']} | {_eps(c)}"
            f" | {_pct(m['accuracy'], _ci(m['accuracy'], m.get('accuracy_ci'), m['n']))}"
            f" | {_pct(asr, _ci(asr, c.get('attack_success_rate_ci'), c.get('n_clean_correct')))} | {spi_s} | {qs}"
            f" | {r['source']} |"
        )
    lines.append("")
    lines += worst_by_eps(rows)
    for source, res in results:
        sc = res.get("extras", {}).get("strength_checks")
        if sc:
            checks = sc.get("checks", {})
            flagged = [k for k, v in checks.items() if v.get("status") not in ("passed", "not run")]
            not_run = [k for k, v in checks.items() if v.get("status") == "not run"]
            status = (
                "possible gradient masking: " + ", ".join(flagged)
                if sc.get("possible_masking")
                else ("all passed" if not flagged else "not passed: " + ", ".join(flagged))
            )
            extra = f" (not run here: {', '.join(not_run)})" if not_run else ""
            lines.append(f"Attack-strength checks ({source}): {status}{extra}.")
        for s in res.get("skipped", []):
            if isinstance(s, dict) and s.get("name", "").startswith("surrogate"):
                lines.append(f"Skipped ({source}): {s.get('name')}: {s.get('reason', '')}".rstrip(": ") + ".")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print (and optionally write) the Markdown table of the given results files."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="LABEL=PATH of a results.json; one label may repeat")
    ap.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = ap.parse_args(argv)
    models: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for item in args.results:
        label, _, path = item.partition("=")
        if not path:
            ap.error(f"expected LABEL=PATH, got {item!r}")
        models.setdefault(label, []).append((Path(path).parent.name, json.loads(Path(path).read_text())))
    text = "\n".join(section(label, res) for label, res in models.items())
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
