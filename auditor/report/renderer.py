"""The renderer interface: one output format, reading only an :class:`~auditor.types.AuditResult`.

Its own module so that the format registry (:mod:`auditor.report.base`), which
imports the renderers on demand, and the renderers, which subclass this, do not
import each other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

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
