"""``junit.xml``: one test case per gate, for CI systems that read JUnit reports.

A failed gate is a ``<failure>`` whose message gives the value, its 95% CI, the status (``inconclusive``
when the threshold lies inside the CI) and the worst condition with its threat model; a passing gate
says the same in ``<system-out>``. The suite's properties record ``gate_on`` and ``allow_transfer_only``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from auditor.report.gate_view import gate_policy, gate_rows, where_text
from auditor.report.jsonfmt import results_digest
from auditor.report.renderer import Renderer
from auditor.types import AuditResult

SUITE_NAME = "xray-audit gates"
CLASS_NAME = "xray_audit.gates"


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


def _summary(g: dict) -> str:
    """``robust_accuracy: value 0.7100 (95% CI 0.6500–0.7700), threshold 0.7, inconclusive; worst usmm@8 (transfer)``."""
    ci = f" (95% CI {g['ci'][0]:.4f}–{g['ci'][1]:.4f})" if g["ci"] else ""
    where = where_text(g)
    return f"{g['name']}: value {_fmt(g['value'])}{ci}, threshold {g['threshold']:g}, {g['status']}" + (
        f"; worst {where}" if not where.startswith("—") else ""
    )


class JunitRenderer(Renderer):
    """junit.xml (testsuites > testsuite > testcase per gate, failure when not passed)."""

    name = "junit"
    suffix = ".xml"
    filename = "junit.xml"

    def render(self, result: AuditResult) -> str:
        """``junit.xml``: one test case per gate."""
        rows = gate_rows(result)
        policy = gate_policy(result)
        failures = sum(1 for g in rows if not g["passed"])
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
            ("gate_on", policy["gate_on"]),
            ("allow_transfer_only", str(policy["allow_transfer_only"]).lower()),
        ):
            ET.SubElement(props, "property", {"name": key, "value": value})
        for gate in rows:
            case = ET.SubElement(suite, "testcase", {"classname": CLASS_NAME, "name": gate["name"], "time": "0"})
            message = _summary(gate)
            text = "\n".join([message, gate["detail"]] + [f"reason: {r}" for r in gate["reasons"]])
            if not gate["passed"]:
                kind = "GateInconclusive" if gate["status"] == "inconclusive" else "GateFailed"
                failure = ET.SubElement(case, "failure", {"message": message, "type": kind})
                failure.text = text
            else:
                ET.SubElement(case, "system-out").text = text
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
