"""Terminal summary (rich): accuracy per condition, gates and skipped items."""

from __future__ import annotations

import io
import sys
from typing import IO

from auditor.report.contract import contract_caveat
from auditor.report.gate_view import gate_policy, gate_rows, where_text
from auditor.report.numbers import fmt_ci, fmt_pct
from auditor.report.renderer import Renderer
from auditor.report.summary import summary_numbers, worst_case
from auditor.report.transfer_view import headline as transfer_headline
from auditor.strength import MASKING_TEXT, strength_checks
from auditor.types import AuditResult


def _rate(value, ci) -> str:
    """``41.2% (10–60)``: a rate with its 95% CI in whole percent; ``—`` when not measured."""
    text = fmt_pct(value)
    if text != "—" and isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        text += f" ({100 * ci[0]:.0f}–{100 * ci[1]:.0f})"
    return text


def _gate_ci(ci) -> str:
    return "—" if not ci else f"{ci[0]:.4f}–{ci[1]:.4f}"


def strength_line(checks: dict) -> str:
    """One line: the attack-strength checks that ran, passed and failed."""
    states = [(c["title"], c["status"]) for c in checks.get("checks", {}).values()]
    ran = [s for s in states if s[1] != "not run"]
    if not ran:
        return "Attack-strength checks: none could run (they need white-box/query attacks, several ε or probes)."
    bad = [t for t, st in ran if st == "violated"]
    text = f"Attack-strength checks: {len(ran) - len(bad)} of {len(ran)} passed"
    return text + (f"; violated ({MASKING_TEXT}): {'; '.join(bad)}" if bad else "")


def _tables(result: AuditResult) -> list:
    from rich.table import Table
    from rich.text import Text

    out: list = []
    model = result.model
    title = Text(
        f"xray-audit {result.tool_version} — {model.get('path', '?')} "
        f"(sha256 {str(model.get('sha256', ''))[:12]}) on {result.data.get('n_images', '?')} images"
    )
    out.append(title)
    guessed = contract_caveat(result)
    if guessed:
        out.append(Text("WARNING: " + guessed, style="bold red"))
    table = Table(title="Accuracy per condition", title_justify="left")
    table.add_column("condition", overflow="fold", min_width=10)
    table.add_column("kind")
    for col in ("accuracy", "95% CI", "macro-F1", "ASR (95% CI)", "flips (95% CI)"):
        table.add_column(col, justify="right", no_wrap=True)
    checks = strength_checks(result)
    flagged = checks.get("flagged") or {}
    for c in result.conditions:
        m = c.metrics
        table.add_row(
            Text(c.name + (f" [{MASKING_TEXT}]" if c.name in flagged and not c.defense else "")),
            Text(c.kind),
            fmt_pct(m.get("accuracy")),
            fmt_ci(m.get("accuracy_ci")),
            fmt_pct(m.get("macro_f1")),
            _rate(c.extra.attack_success_rate, c.extra.attack_success_rate_ci),
            _rate(c.extra.flip_rate, c.extra.flip_rate_ci),
        )
    out.append(table)
    out.append(
        Text(
            "ASR: share of the images correct when clean that the condition makes wrong; "
            "flips: share of all images whose prediction differs from the clean one."
        )
    )
    s = summary_numbers(result)
    wc = worst_case(result, checks)
    for i, sentence in enumerate(wc["sentences"]):
        warn = i > 0 and (wc["transfer_only"] or wc["unmeasured"] or wc["masking"])
        out.append(Text(sentence, style="yellow" if warn else ""))
    out.append(Text(strength_line(checks)))
    for cond, texts in flagged.items():
        for t in texts:
            out.append(Text(f"  {MASKING_TEXT} ({cond}): {t}", style="yellow"))
    if s["defense_verdict"] is not None:
        out.append(Text(s["defense_verdict"]["text"]))
        claim = s["defense_verdict"]["claim"]
        if claim is not None:
            out.append(Text(claim["text"], style="" if claim["significant"] else "yellow"))
    verdict = transfer_headline(result)
    if verdict is not None:
        style = "bold red" if verdict["weak"] else ""
        out.append(Text(("WEAK EVIDENCE: " if verdict["weak"] else "") + " ".join(verdict["sentences"]), style=style))
        if verdict["advice"]:
            out.append(Text(verdict["advice"]))
    if result.gates:
        policy = gate_policy(result)
        gates_title = f"Gates (decided on the {'95% CI' if policy['gate_on'] == 'ci' else 'point estimate'})"
        gates = Table(title=gates_title, title_justify="left")
        for col in ("gate", "threshold", "value", "95% CI", "verdict"):
            gates.add_column(col, no_wrap=True)
        gates.add_column("condition (threat model)", overflow="fold")
        rows = gate_rows(result)
        for g in rows:
            ok = g["passed"] and g["status"] == "passed"
            style = "bold green" if ok else ("bold red" if not g["passed"] else "yellow")
            gates.add_row(
                Text(g["name"]),
                f"{g['threshold']:g}",
                "—" if g["value"] is None else f"{g['value']:.4f}",
                _gate_ci(g["ci"]),
                Text(g["label"], style=style),
                Text(where_text(g)),
            )
        out.append(gates)
        for g in rows:
            flag = f" [{MASKING_TEXT}: see the attack-strength checks]" if g["masking"] else ""
            out.append(Text(f"  {g['name']}: {g['detail']}{flag}"))
    skipped = list(result.skipped) + [s for s in result.data.get("skipped", [])]
    if skipped:
        out.append(Text(f"{len(skipped)} item(s) skipped (see the report for reasons)", style="yellow"))
    return out


def print_summary(result: AuditResult, stream: IO[str] | None = None, console=None) -> None:
    """Print the summary to ``console`` (a rich Console) or to ``stream`` (default stdout)."""
    from rich.console import Console

    out = stream if stream is not None else sys.stdout
    on_terminal = bool(getattr(out, "isatty", lambda: False)())
    # a terminal sets its own width; logs and pipes get 110 columns so the table does not wrap
    con = console or Console(file=out, highlight=False, soft_wrap=False, width=None if on_terminal else 110)
    for item in _tables(result):
        con.print(item)


class ConsoleRenderer(Renderer):
    """The console summary as plain text (no colour codes), 100 columns wide."""

    name = "console"
    suffix = ".txt"
    filename = ""

    def render(self, result: AuditResult) -> str:
        """The terminal summary (tables of conditions and gates) as text."""
        from rich.console import Console

        buf = io.StringIO()
        con = Console(file=buf, width=100, color_system=None, force_terminal=False, highlight=False)
        print_summary(result, console=con)
        return buf.getvalue()
