"""``samples.csv``: one row per image with its prediction under every condition.

Columns, in this order: ``path``, ``label``, ``patient_id``, then one column per
condition of the target model (named like the condition, in the order of
``AuditResult.conditions``) holding the predicted class name. A condition
without stored predictions (e.g. a results.json re-read without them) leaves
its cells empty.

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

from auditor.report.base import Renderer
from auditor.types import AuditResult

FIXED_COLUMNS = ("path", "label", "patient_id")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> str:
    """``value`` as a CSV cell a spreadsheet will not evaluate (OWASP CSV-injection guidance)."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_columns(result: AuditResult) -> list[str]:
    """Header of samples.csv."""
    return [*FIXED_COLUMNS, *(c.name for c in result.conditions)]


def _class_name(names: tuple[str, ...] | list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


class CsvRenderer(Renderer):
    """samples.csv."""

    name = "csv"
    suffix = ".csv"
    filename = "samples.csv"

    def render(self, result: AuditResult) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([safe_cell(c) for c in csv_columns(result)])
        for i, sample in enumerate(result.samples):
            row = [sample.get("path", ""), sample.get("label", ""), sample.get("patient_id") or ""]
            for cond in result.conditions:
                names = cond.metrics.get("labels") or result.class_names
                row.append(_class_name(names, cond.predictions[i]) if i < len(cond.predictions) else "")
            writer.writerow([safe_cell(c) for c in row])
        return buf.getvalue()
