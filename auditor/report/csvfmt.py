"""``samples.csv``: one row per image with its prediction under every condition.

Columns, in this order: ``path``, ``label``, ``patient_id``, then one column per
condition of the target model (named like the condition, in the order of
``AuditResult.conditions``) holding the predicted class name. A condition
without stored predictions (e.g. a results.json re-read without them) leaves
its cells empty.
"""

from __future__ import annotations

import csv
import io

from auditor.report.base import Renderer
from auditor.types import AuditResult

FIXED_COLUMNS = ("path", "label", "patient_id")


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
        writer.writerow(csv_columns(result))
        for i, sample in enumerate(result.samples):
            row = [sample.get("path", ""), sample.get("label", ""), sample.get("patient_id") or ""]
            for cond in result.conditions:
                names = cond.metrics.get("labels") or result.class_names
                row.append(_class_name(names, cond.predictions[i]) if i < len(cond.predictions) else "")
            writer.writerow(row)
        return buf.getvalue()
