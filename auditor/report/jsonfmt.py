"""``results.json``: the canonical, schema-versioned record every other format renders from."""

from __future__ import annotations

import hashlib
import json

from auditor.report.renderer import Renderer
from auditor.types import AuditResult


def results_json(result: AuditResult) -> str:
    """The results.json text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(result.to_dict(with_predictions=True), indent=2, sort_keys=True) + "\n"


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
