"""Renderers of an :class:`~auditor.types.AuditResult`: results.json, samples.csv, HTML, PDF/A, JUnit, console.

Entry points for the CLI (each module imports its heavy library lazily):

* :func:`auditor.report.render.render_all` -- write the chosen formats into a folder;
* :func:`auditor.report.io.load_results` -- read a results.json back, with checks;
* :func:`auditor.report.gate_specs.parse_gates` / :func:`auditor.report.gates.evaluate_gates` -- ``--fail-under``;
* :func:`auditor.report.console.print_summary` -- the terminal summary.
"""

from __future__ import annotations

from auditor.report.base import FORMATS, OutputFormat, Renderer, parse_formats

__all__ = ["FORMATS", "OutputFormat", "Renderer", "parse_formats"]
