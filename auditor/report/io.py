"""Reading results.json back (with consistency checks); reports are written with :func:`auditor.atomic.write_atomic`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from auditor.errors import ResultsError
from auditor.types import SCHEMA_VERSION, AuditResult

#: tolerance between a stored accuracy and the confusion matrix's trace / total
ACCURACY_TOLERANCE = 1e-6
#: largest results.json read back (a scan of 100,000 images with 40 conditions is about 60 MB)
MAX_RESULTS_BYTES = 256 * 1024**2


def _major(version: Any) -> int | None:
    try:
        return int(str(version).split(".", 1)[0])
    except ValueError:
        return None


def check_metrics(metrics: dict[str, Any], where: str) -> None:
    """Raise :class:`ResultsError` if a condition's metrics contradict each other."""
    labels = metrics.get("labels")
    cm = metrics.get("confusion_matrix")
    if labels is None or cm is None:
        return
    k = len(labels)
    if not isinstance(cm, list) or len(cm) != k or any(not isinstance(r, list) or len(r) != k for r in cm):
        shape = f"{len(cm)} rows" if isinstance(cm, list) else type(cm).__name__
        raise ResultsError(f"{where}: confusion matrix ({shape}) does not match the {k} labels")
    try:
        total = sum(int(v) for row in cm for v in row)
        trace = sum(int(cm[i][i]) for i in range(k))
    except (TypeError, ValueError):
        raise ResultsError(f"{where}: confusion matrix holds non-integer counts") from None
    n = metrics.get("n")
    if n is not None and total != n:
        raise ResultsError(f"{where}: confusion matrix counts {total} images but n is {n}")
    acc = metrics.get("accuracy")
    if acc is not None and total > 0 and abs(float(acc) - trace / total) > ACCURACY_TOLERANCE:
        raise ResultsError(f"{where}: accuracy {acc} differs from the confusion matrix ({trace}/{total})")


def check_result(result: AuditResult, where: str = "results") -> None:
    """Consistency checks of every condition (and of every compared model)."""
    for cond in result.conditions:
        check_metrics(cond.metrics, f"{where}: condition {cond.name!r}")
    for i, other in enumerate(result.compared):
        check_result(other, f"{where}: compared model {i + 1}")


def load_results(path: str | os.PathLike) -> AuditResult:
    """Read a results.json written by ``xray-audit scan``.

    Raises :class:`ResultsError` with a one-line message for an unreadable
    file, invalid JSON, a schema whose major version is newer than this
    tool's, missing fields, or inconsistent metrics.
    """
    from auditor.report.schema import ValidationError, describe_error, validate_document

    p = Path(path)
    text = read_capped(p, MAX_RESULTS_BYTES)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ResultsError(f"{p}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ResultsError(f"{p}: unreadable JSON value ({str(exc).split(';')[0][:120]})") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{p}: not a results document (top level is {type(doc).__name__})")
    if "schema_version" not in doc:
        raise ResultsError(f"{p}: no schema_version; not a results.json written by xray-audit")
    theirs, ours = _major(doc["schema_version"]), _major(SCHEMA_VERSION)
    if theirs is None:
        raise ResultsError(f"{p}: unreadable schema_version {doc['schema_version']!r}")
    if ours is not None and theirs > ours:
        raise ResultsError(
            f"{p}: schema {doc['schema_version']} is newer than this xray-audit reads "
            f"({SCHEMA_VERSION}); upgrade xray-audit"
        )
    try:
        validate_document(doc)
    except ValidationError as exc:
        raise ResultsError(f"{p}: does not match the results schema ({describe_error(exc)})") from None
    except ValueError as exc:
        raise ResultsError(f"{p}: does not match the results schema ({exc})") from None
    try:
        result = AuditResult.from_dict(doc)
    except KeyError as exc:
        raise ResultsError(f"{p}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ResultsError(
            f"{p}: malformed results ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    check_result(result, str(p))
    return result


def read_capped(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, else :class:`ResultsError`.

    Devices, FIFOs and folders are refused before reading, and the read itself
    stops after ``limit + 1`` bytes, so ``/dev/zero`` or a growing file cannot
    exhaust memory.
    """
    import stat

    try:
        st = path.stat()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ResultsError(f"{path}: not a regular file")
    if st.st_size > limit:
        raise ResultsError(f"{path}: {st.st_size} bytes, above the limit of {limit} bytes for a results file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise ResultsError(f"{path}: larger than the limit of {limit} bytes for a results file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"{path}: not UTF-8 text") from None
