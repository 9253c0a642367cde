"""Format registry, results.json, samples.csv, junit.xml and the console summary."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import xml.etree.ElementTree as ET

import pytest

from auditor.errors import UsageError
from auditor.report.base import FORMATS, OutputFormat, Renderer, parse_formats
from auditor.report.console import ConsoleRenderer, print_summary
from auditor.report.csvfmt import CsvRenderer
from auditor.report.jsonfmt import JsonRenderer, results_digest
from auditor.report.junit import JunitRenderer


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_maps_to_its_renderer(fmt):
    renderer = fmt.to_renderer()
    assert isinstance(renderer, Renderer)
    assert renderer.name == fmt.value
    assert FORMATS[fmt.value] is fmt


def test_format_registry_is_exhaustive():
    assert set(FORMATS) == {"json", "csv", "html", "pdf", "junit", "console"}
    assert {f.to_renderer().name for f in OutputFormat} == set(FORMATS)


def test_parse_formats_order_dedup_and_unknown():
    assert parse_formats("html, JSON,html,,pdf") == (OutputFormat.HTML, OutputFormat.JSON, OutputFormat.PDF)
    assert parse_formats(["csv"]) == (OutputFormat.CSV,)
    with pytest.raises(UsageError, match="unknown report format 'sarif'"):
        parse_formats("json,sarif")


def test_json_is_exactly_to_dict(result, plain_result):
    text = JsonRenderer().render(result)
    assert json.loads(text) == json.loads(json.dumps(result.to_dict(with_predictions=True)))
    assert text == json.dumps(result.to_dict(with_predictions=True), indent=2, sort_keys=True) + "\n"
    # the digest identifies exactly this JSON text: sha256 of its UTF-8 bytes, and it changes with the content
    assert results_digest(result) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert results_digest(plain_result) != results_digest(result)


def test_csv_columns_and_rows(plain_result):
    text = CsvRenderer().render(plain_result)
    rows = list(csv.reader(io.StringIO(text)))
    conds = ["clean", "usmm@4", "usmm@8", "usmm@16", "stm@8", "jpeg:75/clean", "jpeg:75/usmm@8"]
    assert rows[0][:12] == ["path", "label", "patient_id", *conds, "skipped", "skip_reason"]
    assert rows[0][12:] == [f"{c}:p({k})" for c in conds for k in ("normal", "pneumonia", "pneumothorax")]
    # every sample, then the one file skipped while loading
    assert len(rows) == 1 + len(plain_result.samples) + 1
    assert rows[-1][:3] == ["broken/img99.png", "", ""] and rows[-1][10:12] == ["yes", "cannot decode PNG"]
    assert all(r[10] == "no" for r in rows[1:-1])
    # sample 0 is a normal image predicted pneumonia when clean (the fixture's first error)
    assert rows[1][:4] == ["normal/img00.png", "normal", "", "pneumonia"]
    assert rows[2][2] == "p00"
    # sample 10 (pneumonia) becomes pneumothorax under usmm@8 only from eps 8 on
    assert rows[11][4:6] == ["pneumonia", "pneumothorax"]
    assert text == CsvRenderer().render(plain_result)


def test_csv_without_predictions_keeps_cells_empty(plain_result):
    from dataclasses import replace

    stripped = replace(plain_result, conditions=tuple(replace(c, predictions=()) for c in plain_result.conditions))
    rows = list(csv.reader(io.StringIO(CsvRenderer().render(stripped))))
    n = len(plain_result.conditions)
    assert rows[1][3 : 3 + n] == [""] * n
    assert rows[1][3 + n + 2 :] == [""] * (3 * n)  # and the fixture stores no scores


def _with_scores(result, output_kind=None):
    """``result`` with softmax-like scores whose argmax is each stored prediction."""
    from dataclasses import replace

    k = len(result.class_names)

    def probs(pred):
        return tuple(tuple(0.7 if j == p else 0.3 / (k - 1) for j in range(k)) for p in pred)

    model = (
        result.model
        if output_kind is None
        else {**result.model, "spec": {**result.model["spec"], "output_kind": output_kind}}
    )
    return replace(
        result, model=model, conditions=tuple(replace(c, probabilities=probs(c.predictions)) for c in result.conditions)
    )


def test_csv_has_the_probability_of_every_class(plain_result):
    scored = _with_scores(plain_result)
    rows = list(csv.DictReader(io.StringIO(CsvRenderer().render(scored))))
    first = rows[0]  # normal/img00.png, predicted pneumonia when clean
    assert first["clean"] == "pneumonia" and first["skipped"] == "no"
    assert [float(first[f"clean:p({k})"]) for k in ("normal", "pneumonia", "pneumothorax")] == [0.15, 0.7, 0.15]
    assert rows[-1]["skipped"] == "yes" and rows[-1]["clean:p(normal)"] == ""
    # the scores survive results.json: re-rendered from the JSON document, samples.csv is identical
    from auditor.report.jsonfmt import JsonRenderer
    from auditor.types import AuditResult

    again = AuditResult.from_dict(json.loads(JsonRenderer().render(scored)))
    assert CsvRenderer().render(again) == CsvRenderer().render(scored)


def test_csv_binary_sigmoid_model_has_one_score_column(plain_result):
    from dataclasses import replace

    two = ("normal", "pneumonia")
    binary = replace(
        plain_result,
        model={**plain_result.model, "spec": {**plain_result.model["spec"], "class_names": list(two)}},
        conditions=tuple(
            replace(
                c,
                metrics={**c.metrics, "labels": list(two)},
                predictions=tuple(min(p, 1) for p in c.predictions),
                probabilities=tuple((0.2, 0.8) if p else (0.9, 0.1) for p in c.predictions),
            )
            for c in plain_result.conditions
        ),
    )
    sig = replace(binary, model={**binary.model, "spec": {**binary.model["spec"], "output_kind": "sigmoid_logit"}})
    header = next(csv.reader(io.StringIO(CsvRenderer().render(sig))))
    assert [h for h in header if h.startswith("clean:")] == ["clean:p(pneumonia)"]
    header = next(csv.reader(io.StringIO(CsvRenderer().render(binary))))
    assert [h for h in header if h.startswith("clean:")] == ["clean:p(normal)", "clean:p(pneumonia)"]
    row = next(csv.DictReader(io.StringIO(CsvRenderer().render(sig))))
    assert row["clean"] == "pneumonia" and row["clean:p(pneumonia)"] == "0.8"


def test_junit_one_testcase_per_gate(result):
    root = ET.fromstring(JunitRenderer().render(result))
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["accuracy", "robust_accuracy"]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and "0.7" in failure.get("message")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["results_sha256"] == results_digest(result)


def test_console_summary_text(result):
    text = ConsoleRenderer().render(result)
    assert "usmm@16" in text and "85.0%" in text and "robust_accuracy" in text and "FAIL" in text
    assert "\x1b[" not in text
    buf = io.StringIO()
    print_summary(result, stream=buf)
    assert "Accuracy per condition" in buf.getvalue()
