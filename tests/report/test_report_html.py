"""report.html: sections, key numbers, escaping, self-containment, determinism."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from conftest import HOSTILE, build_result

from auditor.report.html import render_html
from auditor.report.html_sections import MAX_EXAMPLES
from auditor.report.numbers import fmt_ci, fmt_eps, fmt_pct

SECTIONS = (
    "summary",
    "model",
    "data",
    "threat-model",
    "conditions",
    "before-after",
    "confusion",
    "robustness-curves",
    "examples",
    "detector",
    "defense-matrix",
    "comparison",
    "skipped",
    "parameters",
    "regulatory",
    "signoff",
)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.urls: list[str] = []
        self.text: dict[str, list[str]] = {}
        self._stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = tag
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "section" and "id" in a:
            self._stack.append(a["id"])
            self.text[a["id"]] = []

    def handle_endtag(self, tag):
        if tag == "section" and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        if self._stack:
            self.text[self._stack[-1]].append(data)


def _parse(html: str) -> _Collector:
    p = _Collector()
    p.feed(html)
    return p


def test_formatters():
    assert fmt_pct(0.85) == "85.0%" and fmt_pct(None) == "—" and fmt_pct(0.05, signed=True, points=True) == "+5.0 pp"
    assert fmt_ci([0.7, 0.95]) == "70.0–95.0%" and fmt_ci(None) == "—"
    assert fmt_eps(8 / 255) == "8/255" and fmt_eps(2.5 / 255) == "2.5/255" and fmt_eps(None) == "—"


def test_every_section_is_present(html_text):
    p = _parse(html_text)
    for sid in SECTIONS:
        assert p.ids.get(sid) == "section", sid


def test_executive_summary_numbers(html_text):
    summary = " ".join(_parse(html_text).text["summary"])
    assert "85.0%" in summary and "70.0–95.0%" in summary  # clean accuracy and its CI
    assert "50.0%" in summary and "16/255" in summary and "usmm" in summary  # worst case with ε
    assert "jpeg:75" in summary and "−5.0 pp loss" in summary  # top defense and its clean change 85 -> 80
    assert "FAIL" in summary and "1 of 2 passed" in summary
    assert re.search(r'id="clean-accuracy">85\.0%<', html_text)


def test_tables_hold_the_numbers(html_text):
    p = _parse(html_text)
    conditions = " ".join(p.text["conditions"])
    for name in ("usmm@4", "usmm@8", "usmm@16", "stm@8", "jpeg:75/clean", "jpeg:75/usmm@8"):
        assert name in conditions
    assert "41.2%" in conditions  # usmm@16 flip rate 7/17
    assert "60.0%" in conditions  # missed-disease rate of pneumothorax under usmm@8 (1 - 2/5)
    matrix = " ".join(p.text["defense-matrix"])
    assert "75.0%" in matrix and "80.0%" in matrix
    detector = " ".join(p.text["detector"])
    assert "0.950" in detector and "0.0123" in detector
    comparison = " ".join(p.text["comparison"])
    assert "hardened.onnx" in comparison
    signoff = " ".join(p.text["signoff"])
    assert "Reviewer name" in signoff and "Signature" in signoff
    regulatory = " ".join(p.text["regulatory"])
    for ref in (
        "AML.T0043",
        "AML.T0005",
        "AML.T0015",
        "AML.M0010",
        "AML.M0003",
        "AML.M0015",
        "Art. 15",
        "Annex IV",
        "Art. 18",
        "FDA",
    ):
        assert ref in regulatory
    threat = " ".join(p.text["threat-model"])
    assert "lower bound" in threat and "upper bound" in threat and "8/255" in threat


def test_hostile_label_is_escaped(html_text):
    assert HOSTILE not in html_text
    assert "<script" not in html_text.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text


def test_no_external_urls(html_text):
    urls = _parse(html_text).urls
    assert urls, "the report has links and images"
    assert all(u.startswith(("#", "data:")) for u in urls), [u for u in urls if not u.startswith(("#", "data:"))]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|file:|//)""", html_text, re.I)
    assert "url(" not in html_text.replace("url(#", "")


def test_same_input_same_bytes(result, html_text):
    assert render_html(result).encode() == html_text.encode()


def test_examples_are_capped_with_a_note():
    html = render_html(build_result(compared=False, examples=MAX_EXAMPLES + 3))
    p = _parse(html)
    assert p.ids.get("examples-omitted")
    assert "3 examples omitted" in " ".join(p.text["examples"])
    assert html.count('class="thumb"') == MAX_EXAMPLES * 4


def test_minimal_result_renders_every_section(plain_result):
    from dataclasses import replace

    bare = replace(
        plain_result,
        conditions=(plain_result.condition("clean"),),
        detector=None,
        gates=(),
        compared=(),
        skipped=(),
        extras={},
        parameters={},
        environment={},
    )
    p = _parse(render_html(bare))
    for sid in SECTIONS:
        assert p.ids.get(sid) == "section", sid
    assert "No attack was run" in " ".join(p.text["threat-model"])


def test_headline_names_the_condition_with_its_style_backend(plain_result):
    """The worst case is named by its condition, so an STM headline says which style backend it used."""
    from dataclasses import replace

    worst = min((c for c in plain_result.conditions if c.kind == "attack"), key=lambda c: c.metrics["accuracy"])
    renamed = tuple(
        replace(c, name="stm[randconv]@16", attack="stm") if c is worst else c for c in plain_result.conditions
    )
    html = render_html(replace(plain_result, conditions=renamed))
    summary = " ".join(" ".join(_parse(html).text["summary"]).split())
    assert "Under the strongest attack measured (stm[randconv]@16," in summary
    assert "stm[randconv]@16 at ε" in summary  # the worst-case card
