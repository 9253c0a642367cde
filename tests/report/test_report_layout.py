"""The archival PDF loses nothing: every word on the page, every value shown, no identifier broken per letter.

Rendered from the widest synthetic result (tests/report/wide_result.py: every attack kind, three
defenses, a --compare model, long class and file names) and read back with pdfplumber.
"""

from __future__ import annotations

import io
import re

import pytest

from auditor.report.jsonfmt import results_digest
from auditor.report.numbers import fmt_ci, fmt_num, fmt_pct
from tests.report.wide_result import LONG_CLASSES, LONG_MODEL_PATH, LONG_SKIPPED, build_wide_result

pdfplumber = pytest.importorskip("pdfplumber", reason="pdfplumber is a dev dependency (pip install -e .[dev])")

MM = 72 / 25.4
SIDE_MARGIN = 15 * MM  # @page margin left/right in auditor/templates/report.css
EDGE = 5 * MM  # the running header and footer sit in the top and bottom margins, at least this far from the edge
BREAKS = re.compile(r"(?<=[_/+-])")


@pytest.fixture(scope="module")
def wide():
    return build_wide_result()


@pytest.fixture(scope="module")
def pages(wide):
    from auditor.report.html import render_html
    from auditor.report.pdf import PdfRenderer

    pdf = PdfRenderer().render(wide, html=render_html(wide))
    with pdfplumber.open(io.BytesIO(pdf)) as doc:
        return [(p.width, p.height, p.extract_words(keep_blank_chars=False), p.extract_text()) for p in doc.pages]


@pytest.fixture(scope="module")
def words(pages):
    return [w["text"] for _, _, ws, _ in pages for w in ws]


@pytest.fixture(scope="module")
def flat(pages):
    """All page text without whitespace (a value wrapped at a permitted break point reads whole)."""
    return "".join("".join(t.split()) for *_, t in pages)


def test_every_word_lies_inside_the_printable_box(pages):
    outside = []
    for number, (width, height, ws, _) in enumerate(pages, 1):
        for w in ws:
            if (
                w["x0"] < SIDE_MARGIN - 0.5
                or w["x1"] > width - SIDE_MARGIN + 0.5
                or w["top"] < EDGE
                or w["bottom"] > height - EDGE
            ):
                outside.append((number, w["text"], round(w["x0"]), round(w["x1"])))
    assert not outside, outside[:20]


def _identifiers(result) -> set[str]:
    names = {c.name for c in result.conditions} | {g.name for g in result.gates}
    names |= {c.defense for c in result.conditions if c.defense} | {c.attack for c in result.conditions if c.attack}
    names |= set(result.parameters.get("attacks", []))
    return names | set(LONG_CLASSES) | {LONG_SKIPPED.rsplit("/", 1)[-1]}


def test_identifiers_never_break_inside_a_part(wide, words):
    """A short identifier is one word; a long one breaks only after ``_``, ``/``, ``-`` or ``+``."""
    idents = _identifiers(wide)
    for name in idents:
        if len(name) <= 24 and " " not in name:
            assert name in words, f"{name!r} is not one word in the PDF"
    for w in set(words):
        for name in idents:
            # a line that ends inside an identifier leaves a prefix of it as a word (prose words aside: only
            # prefixes with a digit or a sign are checked): the prefix must end at a
            # permitted break point or be an identifier itself (usmm@8 in usmm@8+bpda:jpeg:75)
            if not w.isalpha() and w != name and name.startswith(w) and w not in idents:
                pieces = BREAKS.split(name)
                assert w in {"".join(pieces[:k]) for k in range(1, len(pieces))}, (w, name)


def test_gate_names_are_whole_words(wide, words):
    for g in wide.gates:
        assert g.name in words
    assert "robust_accu" not in words and "racy" not in words


def test_every_shown_value_is_in_the_pdf_text(wide, flat):
    def has(text: str) -> bool:
        # a long identifier may wrap at its break points, with other cells' text between the parts
        return all("".join(part.split()) in flat for part in (BREAKS.split(text) if len(text) > 24 else [text]))

    missing = []
    digest = results_digest(wide)
    expected = [digest, wide.model["sha256"], wide.data["manifest_sha256"], LONG_MODEL_PATH, LONG_SKIPPED]
    for c in wide.conditions:
        m, x = c.metrics, c.extra.to_json()
        expected += [c.name, fmt_pct(m["accuracy"]), fmt_ci(m["accuracy_ci"]), fmt_pct(m["macro_f1"])]
        expected += [fmt_ci(m["macro_f1_ci"])]
        if "attack_success_rate" in x and c.name != "clean":
            expected += [fmt_pct(x["attack_success_rate"]), fmt_pct(x["flip_rate"])]
        for cls, pc in m["per_class"].items():
            expected += [cls, fmt_pct(pc["precision"]), fmt_pct(pc["sensitivity"]), fmt_pct(pc["f1"])]
            expected += [fmt_pct(pc["specificity"])]
        t = x.get("transfer")
        if t and c.threat_model == "transfer":  # the Transfer diagnostics columns (transfer sets), all of them
            expected += [fmt_pct(t["surrogate_accuracy_clean"]), fmt_pct(t["surrogate_accuracy"])]
            expected += [fmt_pct(t["surrogate_attack_success_rate"]), fmt_num(t["transfer_efficiency"], 2)]
            expected += [fmt_pct(t["agreement_clean"]), fmt_pct(x["attack_success_rate"]), fmt_pct(m["accuracy"])]
        if c.kind == "attack":
            expected += [fmt_num(x["l2_mean"], 3), fmt_num(x["ssim_mean"], 4), fmt_num(x["psnr_mean"], 1)]
    expected += ["64×64/224×224"]  # transfer sets only: white-box sets are not in the transfer table (issue 24)
    for g in wide.gates:
        expected += [g.name, "%g" % g.threshold, fmt_num(g.value, 4)]
    for other in wide.compared:
        expected += [other.model["path"].rsplit("/", 1)[-1]]
        expected += [fmt_pct(c.metrics["accuracy"]) for c in other.conditions]
    missing = [e for e in expected if not has(e)]
    assert not missing, missing[:20]


def test_phone_labels_follow_rowspans_and_skip_narrow_tables():
    from auditor.report.html import label_cells

    html = (
        '<table class="data"><thead><tr><th>Condition</th><th>Class</th><th class="num">F1</th></tr></thead>'
        '<tbody><tr><td rowspan="2">usmm@8</td><td>normal</td><td>1</td></tr><tr><td>pneumonia</td><td>2</td></tr>'
        "</tbody><tbody><tr><td>clean</td><td>normal</td><td>3</td></tr></tbody></table>"
        '<table class="data narrow"><thead><tr><th>Class</th><th>Images</th></tr></thead>'
        "<tbody><tr><td>normal</td><td>8</td></tr></tbody></table>"
    )
    out = label_cells(html)
    cells = re.findall(r'<td(?: rowspan="2")?(?: data-label="([^"]*)")?>([^<]*)</td>', out)
    assert cells == [
        ("Condition", "usmm@8"),
        ("Class", "normal"),
        ("F1", "1"),
        ("Class", "pneumonia"),  # the rowspan of usmm@8 covers the first column of this row
        ("F1", "2"),
        ("Condition", "clean"),
        ("Class", "normal"),
        ("F1", "3"),
        ("", "normal"),  # the narrow table is left as it was
        ("", "8"),
    ]
