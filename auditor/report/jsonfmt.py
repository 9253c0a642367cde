"""``results.json``: the canonical, schema-versioned record every other format renders from."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets

from auditor.report.renderer import Renderer
from auditor.types import AuditResult


def results_json(result: AuditResult) -> str:
    """The results.json text: sorted keys, two-space indent, trailing newline.

    Exactly ``json.dumps(result.to_dict(with_predictions=True), indent=2, sort_keys=True)``, but the
    per-image arrays (every condition's predictions and probabilities, the sample rows) are not
    built as Python lists for the whole document: the rest is encoded with placeholders, and each
    array is formatted from its compact store into the text in its place, one at a time.
    """
    nonce = secrets.token_hex(8)
    arrays: list = []

    def hold(rows, kind: str):
        if not len(rows):
            return []
        arrays.append((rows, kind))
        return f"\x00xray-audit-array-{nonce}-{len(arrays) - 1}"

    def with_placeholders(res: AuditResult) -> dict:
        doc = res.to_dict(with_predictions=False)
        for c, d in zip(res.conditions, doc["conditions"]):
            d["predictions"] = hold(c.predictions, "ints")
            if c.probabilities:
                d["probabilities"] = hold(c.probabilities, "rows")
        doc["samples"] = hold(res.samples, "json")
        doc["compared"] = [with_placeholders(r) for r in res.compared]
        return doc

    text = json.dumps(with_placeholders(result), indent=2, sort_keys=True)
    pattern = re.compile(r'"\\u0000xray-audit-array-' + nonce + r'-(\d+)"')
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        out.append(text[pos : m.start()])
        line = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]  # '    "key": '
        indent = len(line) - len(line.lstrip(" "))
        rows, kind = arrays[int(m.group(1))]
        out.append(_format_array(rows, kind, indent))
        pos = m.end()
    out.append(text[pos:])
    out.append("\n")
    return "".join(out)


def _format_array(rows, kind: str, indent: int) -> str:
    """``rows`` as ``json.dumps(list(rows), indent=2)`` would write them at ``indent`` spaces (rows not empty)."""
    inner = "\n" + " " * (indent + 2)
    if kind == "ints":
        items = map(str, rows)  # Python ints: str() is json's int form
    elif kind == "rows":
        items = (_float_row(r, inner) for r in rows)
    else:
        items = (json.dumps(r, indent=2, sort_keys=True).replace("\n", inner) for r in rows)
    return "[" + inner + ("," + inner).join(items) + "\n" + " " * indent + "]"


def _float_row(row, inner: str) -> str:
    if not row:
        return "[]"
    if all(math.isfinite(v) for v in row):
        deeper = inner + "  "
        return "[" + deeper + ("," + deeper).join(map(float.__repr__, row)) + inner + "]"
    return json.dumps(list(row), indent=2).replace("\n", inner)


def results_digest(result: AuditResult) -> str:
    """SHA-256 (hex) of :func:`results_json`; identifies the report (PDF identifier, footer)."""
    return hashlib.sha256(results_json(result).encode("utf-8")).hexdigest()


class JsonRenderer(Renderer):
    """results.json."""

    name = "json"
    suffix = ".json"
    filename = "results.json"

    def render(self, result: AuditResult) -> str:
        """``results.json`` (the full result, schema-versioned)."""
        return results_json(result)
