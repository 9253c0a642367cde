"""``results.json``: the canonical, schema-versioned record every other format renders from."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import secrets
from typing import Iterator

from auditor.report.renderer import Renderer
from auditor.types import AuditResult


def results_json(result: AuditResult) -> str:
    """The results.json text: sorted keys, two-space indent, trailing newline (all of
    :func:`results_json_chunks` joined)."""
    return "".join(results_json_chunks(result))


def results_json_chunks(result: AuditResult) -> Iterator[str]:
    """The results.json text in pieces of at most a few hundred kB, for writing or hashing as a stream.

    Exactly ``json.dumps(result.to_dict(with_predictions=True), indent=2, sort_keys=True)`` plus a
    newline, but the per-image arrays (every condition's predictions and probabilities, the sample
    rows) are never built as Python lists or one string for the whole document: the rest is encoded
    with placeholders, and each array is formatted from its compact store in its place,
    :data:`ROWS_PER_CHUNK` rows at a time.
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
    pos = 0
    for m in pattern.finditer(text):
        yield text[pos : m.start()]
        line = text[text.rfind("\n", 0, m.start()) + 1 : m.start()]  # '    "key": '
        indent = len(line) - len(line.lstrip(" "))
        rows, kind = arrays[int(m.group(1))]
        yield from _format_array(rows, kind, indent)
        pos = m.end()
    yield text[pos:] + "\n"


#: rows of a per-image array formatted into one piece of :func:`results_json_chunks`
ROWS_PER_CHUNK = 2048


def _format_array(rows, kind: str, indent: int) -> Iterator[str]:
    """``rows`` as ``json.dumps(list(rows), indent=2)`` would write them at ``indent`` spaces (rows not empty),
    in pieces of :data:`ROWS_PER_CHUNK` rows."""
    inner = "\n" + " " * (indent + 2)
    items: Iterator[str]
    if kind == "ints":
        items = map(str, rows)  # Python ints: str() is json's int form
    elif kind == "rows":
        items = (_float_row(r, inner) for r in rows)
    else:
        items = (json.dumps(r, indent=2, sort_keys=True).replace("\n", inner) for r in rows)
    sep = "[" + inner
    while True:
        piece = list(itertools.islice(items, ROWS_PER_CHUNK))
        if not piece:
            break
        yield sep + ("," + inner).join(piece)
        sep = "," + inner
    yield "\n" + " " * indent + "]"


def _float_row(row, inner: str) -> str:
    if not row:
        return "[]"
    if all(math.isfinite(v) for v in row):
        deeper = inner + "  "
        return "[" + deeper + ("," + deeper).join(map(float.__repr__, row)) + inner + "]"
    return json.dumps(list(row), indent=2).replace("\n", inner)


def results_digest(result: AuditResult) -> str:
    """SHA-256 (hex) of :func:`results_json`; identifies the report (PDF identifier, footer)."""
    h = hashlib.sha256()
    for chunk in results_json_chunks(result):
        h.update(chunk.encode("utf-8"))
    return h.hexdigest()


class JsonRenderer(Renderer):
    """results.json."""

    name = "json"
    suffix = ".json"
    filename = "results.json"

    def render(self, result: AuditResult) -> str:
        """``results.json`` (the full result, schema-versioned)."""
        return results_json(result)

    def render_chunks(self, result: AuditResult) -> Iterator[str]:
        """``results.json`` in pieces (written as a stream: see :func:`results_json_chunks`)."""
        return results_json_chunks(result)
