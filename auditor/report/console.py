"""Terminal summary (rich): accuracy per condition, gates and skipped items."""

from __future__ import annotations

import io
import sys
from typing import IO

from auditor.report.contract import contract_caveat
from auditor.report.numbers import fmt_ci, fmt_eps, fmt_pct
from auditor.report.renderer import Renderer
from auditor.report.summary import summary_numbers
from auditor.report.transfer_view import headline as transfer_headline
from auditor.types import AuditResult


def _rate(value, ci) -> str:
    """``41.2% (10–60)``: a rate with its 95% CI in whole percent; ``—`` when not measured."""
    text = fmt_pct(value)
    if text != "—" and isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        text += f" ({100 * ci[0]:.0f}–{100 * ci[1]:.0f})"
    return text


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
    for c in result.conditions:
        m = c.metrics
        table.add_row(
            Text(c.name),
            Text(c.kind),
            fmt_pct(m.get("accuracy")),
            fmt_ci(m.get("accuracy_ci")),
            fmt_pct(m.get("macro_f1")),
            _rate(c.extra.get("attack_success_rate"), c.extra.get("attack_success_rate_ci")),
            _rate(c.extra.get("flip_rate"), c.extra.get("flip_rate_ci")),
        )
    out.append(table)
    out.append(
        Text(
            "ASR: share of the images correct when clean that the condition makes wrong; "
            "flips: share of all images whose prediction differs from the clean one."
        )
    )
    s = summary_numbers(result)
    if s["worst"] is not None:
        w = s["worst"]
        out.append(
            Text(
                f"Worst case under attack: {fmt_pct(w.metrics.get('accuracy'))} "
                f"({w.attack} at ε = {fmt_eps(w.epsilon)}, condition {w.name})"
            )
        )
    if s["defense_verdict"] is not None:
        out.append(Text(s["defense_verdict"]["text"]))
    verdict = transfer_headline(result)
    if verdict is not None:
        style = "bold red" if verdict["weak"] else None
        out.append(Text(("WEAK EVIDENCE: " if verdict["weak"] else "") + " ".join(verdict["sentences"]), style=style))
        if verdict["advice"]:
            out.append(Text(verdict["advice"]))
    if result.gates:
        gates = Table(title="Gates", title_justify="left")
        for col in ("gate", "threshold", "value", "verdict", "detail"):
            gates.add_column(col, overflow="fold")
        for g in result.gates:
            verdict = Text("PASS", style="bold green") if g.passed else Text("FAIL", style="bold red")
            gates.add_row(
                Text(g.name), f"{g.threshold:g}", "—" if g.value is None else f"{g.value:.4f}", verdict, Text(g.detail)
            )
        out.append(gates)
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
