"""Write every requested report into an output folder, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from auditor.atomic import write_atomic
from auditor.errors import UsageError
from auditor.report.base import OutputFormat, parse_formats
from auditor.report.html_sections import MAX_EXAMPLES
from auditor.report.pdf import PdfRenderer
from auditor.types import AuditResult

__all__ = ["render_all", "MAX_EXAMPLES", "FILE_FORMATS"]

#: formats written to a file, with their file names (``console`` prints instead)
FILE_FORMATS = {
    OutputFormat.JSON: "results.json",
    OutputFormat.CSV: "samples.csv",
    OutputFormat.HTML: "report.html",
    OutputFormat.PDF: "report.pdf",
    OutputFormat.JUNIT: "junit.xml",
}


def render_all(
    result: AuditResult, out_dir: str | os.PathLike, formats: str | Iterable[str], signing=None
) -> dict[str, Path]:
    """Render ``result`` in each of ``formats`` into ``out_dir``; returns {format: path written}.

    Formats are validated before anything is written (unknown -> :class:`UsageError`).
    ``console`` is accepted and ignored here (the CLI prints the summary itself).
    Each file is written with :func:`write_atomic`, so an interrupted run never
    leaves a half-written report under its final name. The HTML and PDF show at
    most :data:`MAX_EXAMPLES` example images and say how many were omitted. ``signing``
    (:class:`auditor.report.sign.Signing`) signs report.pdf and names the signer in it.
    """
    fmts = [f for f in parse_formats(formats if isinstance(formats, str) else list(formats)) if f in FILE_FORMATS]
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    written: dict[str, Path] = {}
    html: str | None = None
    data: str | bytes | Iterable[str]
    for fmt in fmts:
        renderer = fmt.to_renderer()
        if html is None and fmt in (OutputFormat.HTML, OutputFormat.PDF):
            page = OutputFormat.HTML.to_renderer().render(result)
            html = page if isinstance(page, str) else page.decode("utf-8")
        if fmt is OutputFormat.HTML and html is not None:
            data = html
        elif isinstance(renderer, PdfRenderer):
            data = renderer.render(result, html=html, signing=signing)
        elif hasattr(renderer, "render_chunks"):  # results.json: written as a stream of pieces
            data = renderer.render_chunks(result)
        else:
            data = renderer.render(result)
        written[fmt.value] = write_atomic(out / FILE_FORMATS[fmt], data)
    return written
