"""``report.html``: the human report, rendered with Jinja2 from the ``templates`` package.

The numbers shown are worked out in
:func:`auditor.report.html_context.build_context`; the template only lays them out. Autoescaping is on for every template, so class names,
paths and reasons taken from the data can never inject markup. The stylesheet
(``auditor/templates/report.css``) and every figure are inlined, so the file is
self-contained and contains no external URL.
"""

from __future__ import annotations

import re
from html import escape as _escape
from html.parser import HTMLParser
from typing import Any

from auditor.report.defense_claim import fmt_p
from auditor.report.html_context import build_context
from auditor.report.numbers import fmt_ci, fmt_eps, fmt_num, fmt_pct, fmt_value
from auditor.report.renderer import Renderer
from auditor.types import AuditResult

TEMPLATE = "report.html.j2"
#: identifiers longer than this get line-break opportunities after ``_``, ``/``, ``-`` and ``+``
LONG_IDENT = 24
_IDENT_BREAK = re.compile(r"(?<=[_/+-])(?=.)")


def ident(name: Any):
    """An identifier (condition, class, file name) as HTML that never breaks inside a word.

    A short identifier is one unbreakable span; a long one is a run of unbreakable spans split
    after ``_``, ``/``, ``-`` or ``+`` with ``<wbr>`` between them, so a narrow table column wraps
    it at those points and never per letter (nor after the ``:`` of ``jpeg:75``).
    """
    from markupsafe import Markup

    text = str(name)
    parts = [text] if len(text) <= LONG_IDENT else _IDENT_BREAK.split(text)
    return Markup("<wbr>").join(Markup('<span class="nobr">%s</span>') % part for part in parts)


def environment():
    """The Jinja2 environment over the ``templates`` package (autoescape on for every template)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("auditor", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=fmt_pct, ci=fmt_ci, num=fmt_num, eps=fmt_eps, value=fmt_value, ident=ident, p_value=fmt_p)
    return env


class _CellLabeler(HTMLParser):
    """Finds, in each ``table.data``, the column header of every body cell (rowspans included)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self._starts = [0]
        for m in re.finditer("\n", text):
            self._starts.append(m.end())
        self.inserts: list[tuple[int, str]] = []
        self._tables: list[dict[str, Any]] = []

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._starts[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list) -> None:  # noqa: D102
        a = dict(attrs)
        if tag == "table":
            classes = (a.get("class") or "").split()
            wide = "data" in classes and "narrow" not in classes  # a narrow two-column table fits a phone as it is
            self._tables.append({"data": wide, "headers": [], "head": False, "text": None, "col": 0})
            self._tables[-1].update(spans={}, active=set())
            return
        if not self._tables or not self._tables[-1]["data"]:
            return
        t = self._tables[-1]
        if tag == "thead":
            t["head"] = True
        elif tag == "tr" and not t["head"]:
            t["col"] = 0
            t["active"] = {c for c, n in t["spans"].items() if n > 0}
        elif tag in ("th", "td") and t["head"]:
            t["text"] = []
        elif tag in ("th", "td"):
            while t["col"] in t["active"]:
                t["col"] += 1
            col = t["col"]
            if col < len(t["headers"]) and t["headers"][col]:
                end = self._offset() + len(self.get_starttag_text() or "") - 1
                self.inserts.append((end, f' data-label="{_escape(t["headers"][col], quote=True)}"'))
            span = int(a.get("rowspan") or 1) if str(a.get("rowspan") or "1").isdigit() else 1
            if span > 1:
                t["spans"][col] = span - 1
            t["col"] += int(a["colspan"]) if str(a.get("colspan") or "").isdigit() else 1

    def handle_endtag(self, tag: str) -> None:  # noqa: D102
        if not self._tables:
            return
        t = self._tables[-1]
        if tag == "table":
            self._tables.pop()
        elif tag == "thead":
            t["head"] = False
        elif tag in ("th", "td") and t["text"] is not None:
            t["headers"].append(" ".join("".join(t["text"]).split()))
            t["text"] = None
        elif tag == "tr" and not t["head"]:
            for c in t["active"]:
                t["spans"][c] -= 1

    def handle_data(self, data: str) -> None:  # noqa: D102
        if self._tables and self._tables[-1]["text"] is not None:
            self._tables[-1]["text"].append(data)


def label_cells(html: str) -> str:
    """Give every body cell of each ``table.data`` (but the two-column ``narrow`` ones) a ``data-label``
    naming its column header.

    On a phone the stylesheet shows each row as a block of labelled cells, so a table never
    needs more width than the screen has.
    """
    labeler = _CellLabeler(html)
    labeler.feed(html)
    labeler.close()
    out, last = [], 0
    for pos, attr in sorted(labeler.inserts):
        out += [html[last:pos], attr]
        last = pos
    out.append(html[last:])
    return "".join(out)


def render_html(result: AuditResult, signature: dict[str, str] | None = None) -> str:
    """report.html for ``result`` (``signature``: the signer block of a signed PDF's sign-off section)."""
    return label_cells(environment().get_template(TEMPLATE).render(**build_context(result, signature=signature)))


class HtmlRenderer(Renderer):
    """report.html (self-contained: inline CSS and figures, no external URL)."""

    name = "html"
    suffix = ".html"
    filename = "report.html"

    def render(self, result: AuditResult) -> str:
        """The self-contained ``report.html``."""
        return render_html(result)
