"""``junit.xml``: one test case per gate, for CI systems that read JUnit reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from auditor.report.jsonfmt import results_digest
from auditor.report.renderer import Renderer
from auditor.types import AuditResult

SUITE_NAME = "xray-audit gates"
CLASS_NAME = "xray_audit.gates"


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


class JunitRenderer(Renderer):
    """junit.xml (testsuites > testsuite > testcase per gate, failure when not passed)."""

    name = "junit"
    suffix = ".xml"
    filename = "junit.xml"

    def render(self, result: AuditResult) -> str:
        """``junit.xml``: one test case per gate."""
        failures = sum(1 for g in result.gates if not g.passed)
        counts = {"tests": str(len(result.gates)), "failures": str(failures), "errors": "0", "skipped": "0"}
        root = ET.Element("testsuites", {"name": "xray-audit", **counts})
        suite = ET.SubElement(root, "testsuite", {"name": SUITE_NAME, **counts, "timestamp": result.created})
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("tool_version", result.tool_version),
            ("model_path", str(result.model.get("path", ""))),
            ("model_sha256", str(result.model.get("sha256", ""))),
            ("manifest_sha256", str(result.data.get("manifest_sha256", ""))),
            ("results_sha256", results_digest(result)),
        ):
            ET.SubElement(props, "property", {"name": key, "value": value})
        for gate in result.gates:
            case = ET.SubElement(suite, "testcase", {"classname": CLASS_NAME, "name": gate.name, "time": "0"})
            if not gate.passed:
                message = f"{gate.name}: value {_fmt(gate.value)}, threshold {gate.threshold:g}"
                failure = ET.SubElement(case, "failure", {"message": message, "type": "GateFailed"})
                failure.text = gate.detail or message
            elif gate.detail:
                ET.SubElement(case, "system-out").text = gate.detail
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
