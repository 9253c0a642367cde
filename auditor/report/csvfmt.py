"""``samples.csv``: one row per image with its prediction and scores under every condition.

Columns, in this order:

* ``path``, ``label``, ``patient_id``;
* one column per condition of the target model, named like the condition (in the order of
  ``AuditResult.conditions``), holding the predicted class name;
* ``skipped`` (``yes`` for an image or file that could not be read, with ``skip_reason``; such rows
  come last and have no predictions), ``skip_reason``;
* per condition, ``<condition>:p(<class>)``: the model's probability of each class, or, for a binary
  model with one sigmoid output, only ``<condition>:p(<positive class>)`` (the sigmoid probability).

A condition without stored predictions or scores (e.g. a results.json written before scores were
recorded) leaves its cells empty.

Cells come from untrusted names (file names, labels, patient ids, class names).
A cell that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) gets a leading apostrophe, as the
OWASP guidance on CSV injection recommends; a cell that is a plain number
(``-1.5``) stays as it is.
"""

from __future__ import annotations

import csv
import io
import re

from auditor.report.renderer import Renderer
from auditor.types import AuditResult, Condition

FIXED_COLUMNS = ("path", "label", "patient_id")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet will not evaluate (OWASP CSV-injection guidance)."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


SKIP_COLUMNS = ("skipped", "skip_reason")


def _score_classes(result: AuditResult, cond: Condition) -> list[tuple[int, str]]:
    """(index, class name) of the probabilities written for ``cond``."""
    names = list(cond.metrics.get("labels") or result.class_names)
    if str(result.model.get("spec", {}).get("output_kind", "")).startswith("sigmoid") and len(names) == 2:
        return [(1, names[1])]
    return list(enumerate(names))


def csv_columns(result: AuditResult) -> list[str]:
    """Header of samples.csv."""
    cols = [*FIXED_COLUMNS, *(c.name for c in result.conditions), *SKIP_COLUMNS]
    for c in result.conditions:
        cols.extend(f"{c.name}:p({name})" for _, name in _score_classes(result, c))
    return cols


def _class_name(names: tuple[str, ...] | list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _prediction(result: AuditResult, cond: Condition, i: int) -> str:
    """Predicted class name of sample ``i`` under ``cond`` ("" when not stored)."""
    names = cond.metrics.get("labels") or result.class_names
    return _class_name(names, cond.predictions[i]) if i < len(cond.predictions) else ""


def _scores(result: AuditResult, cond: Condition, i: int) -> list[str]:
    """The probabilities of sample ``i`` under ``cond`` (empty cells when not stored)."""
    scored = _score_classes(result, cond)
    if i >= len(cond.probabilities):
        return [""] * len(scored)
    probs = cond.probabilities[i]
    return [f"{probs[k]:.6g}" if k < len(probs) else "" for k, _ in scored]


class CsvRenderer(Renderer):
    """samples.csv."""

    name = "csv"
    suffix = ".csv"
    filename = "samples.csv"

    def render(self, result: AuditResult) -> str:
        """``samples.csv``: one row per image, its predictions and scores under every condition."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header = csv_columns(result)
        writer.writerow([safe_cell(c) for c in header])
        for i, sample in enumerate(result.samples):
            row = [sample.get("path", ""), sample.get("label", ""), sample.get("patient_id") or ""]
            row += [_prediction(result, cond, i) for cond in result.conditions]
            row += ["no", ""]
            for cond in result.conditions:
                row.extend(_scores(result, cond, i))
            writer.writerow([safe_cell(c) for c in row])
        n_fixed = len(FIXED_COLUMNS) + len(result.conditions)
        for s in result.data.get("skipped", []):
            if isinstance(s, dict) and s.get("kind", "image") == "image":
                row = [s.get("name", ""), "", ""] + [""] * len(result.conditions) + ["yes", s.get("reason", "")]
                writer.writerow([safe_cell(c) for c in row + [""] * (len(header) - n_fixed - len(SKIP_COLUMNS))])
        return buf.getvalue()
