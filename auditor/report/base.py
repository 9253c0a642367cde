"""The renderer interface and the registry of output formats.

Every output format is a :class:`Renderer` that reads only an
:class:`~auditor.types.AuditResult` and returns the document as ``str`` or
``bytes``; writing files is :func:`auditor.report.render.render_all`'s job.
Heavy libraries (Jinja2, matplotlib, WeasyPrint, rich) are imported lazily by
the renderer that needs them, so choosing a format costs nothing up front.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import ClassVar, assert_never

from auditor.errors import UsageError
from auditor.types import AuditResult


class Renderer(ABC):
    """One output format."""

    #: format name as given to ``--format``
    name: ClassVar[str]
    #: file suffix of the document, with the dot (``""`` for terminal output)
    suffix: ClassVar[str]
    #: default file name inside the output folder (``""``: not written to a file)
    filename: ClassVar[str] = ""

    @abstractmethod
    def render(self, result: AuditResult) -> str | bytes:
        """The whole document for ``result``."""


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
