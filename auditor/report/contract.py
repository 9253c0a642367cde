"""The headline caveat of a scan whose input contract was guessed and whose clean predictions look wrong.

The scan records the clean-stage check of :func:`auditor.models.contract_check.contract_check` in
``extras.contract_check`` of results.json; the console summary, the HTML/PDF executive summary and
``--strict`` read it from there through :func:`contract_caveat`.
"""

from __future__ import annotations

from auditor.errors import EXIT_GATE_FAILED, EXIT_OK
from auditor.types import AuditResult


def contract_caveat(result: AuditResult) -> str | None:
    """One sentence for the headline when the scan's contract check failed, else ``None``."""
    check = result.extras.get("contract_check") if isinstance(result.extras, dict) else None
    if not isinstance(check, dict) or not check.get("reason"):
        return None
    return (
        f"The input contract was guessed and looks wrong ({check['reason']}): the figures of this report "
        f"may measure a misfed model, not the model. Fix: {check.get('fix', 'declare the input scaling')}."
    )


def strict_contract_status(result: AuditResult, strict: bool, code: int, message: str | None) -> tuple[int, str | None]:
    """``(code, message)`` of a command, made a failure (exit 1) under ``--strict`` when the contract looks wrong.

    A failed gate or a skip already decided keeps its own code and message.
    """
    guessed = contract_caveat(result)
    if strict and code == EXIT_OK and guessed:
        return EXIT_GATE_FAILED, f"--strict: {guessed}"
    return code, message
