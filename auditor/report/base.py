"""The registry of output formats (``--format``); the renderer interface is :mod:`auditor.report.renderer`.

Every output format is a :class:`Renderer` that reads only an
:class:`~auditor.types.AuditResult` and returns the document as ``str`` or
``bytes``; writing files is :func:`auditor.report.render.render_all`'s job.
Heavy libraries (Jinja2, matplotlib, WeasyPrint, rich) are imported lazily by
the renderer that needs them, so choosing a format costs nothing up front.
"""

from __future__ import annotations

import enum
from typing import assert_never

from auditor.errors import UsageError
from auditor.report.renderer import Renderer


class OutputFormat(str, enum.Enum):
    """The formats ``--format`` accepts."""

    JSON = "json"
    CSV = "csv"
    HTML = "html"
    PDF = "pdf"
    JUNIT = "junit"
    CONSOLE = "console"

    def to_renderer(self) -> Renderer:
        """A fresh renderer of this format."""
        match self:
            case OutputFormat.JSON:
                from auditor.report.jsonfmt import JsonRenderer

                return JsonRenderer()
            case OutputFormat.CSV:
                from auditor.report.csvfmt import CsvRenderer

                return CsvRenderer()
            case OutputFormat.HTML:
                from auditor.report.html import HtmlRenderer

                return HtmlRenderer()
            case OutputFormat.PDF:
                from auditor.report.pdf import PdfRenderer

                return PdfRenderer()
            case OutputFormat.JUNIT:
                from auditor.report.junit import JunitRenderer

                return JunitRenderer()
            case OutputFormat.CONSOLE:
                from auditor.report.console import ConsoleRenderer

                return ConsoleRenderer()
            case _:  # pragma: no cover - the enum is exhaustive
                assert_never(self)


#: ``--format`` name -> format
FORMATS: dict[str, OutputFormat] = {f.value: f for f in OutputFormat}


def parse_formats(formats: str | list[str] | tuple[str, ...]) -> tuple[OutputFormat, ...]:
    """``"json,html"`` or ``["json", "html"]`` -> formats, in order, without repeats.

    Raises :class:`UsageError` (one line) for an unknown name.
    """
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[OutputFormat] = []
    for raw in names:
        name = str(raw).strip().lower()
        if not name:
            continue
        if name not in FORMATS:
            raise UsageError(f"unknown report format {raw!r}; known: {', '.join(FORMATS)}")
        if FORMATS[name] not in out:
            out.append(FORMATS[name])
    return tuple(out)
