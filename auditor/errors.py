"""Exceptions that map to the documented exit codes.

The CLI turns an :class:`AuditError` into one line on stderr (no traceback
unless ``--debug``) and exits with its ``exit_code``:

====  =========================================================
code  meaning
====  =========================================================
0     success; every gate passed
1     a gate failed (or, under ``--strict``, something was skipped)
2     usage error: bad flag value, unknown attack, bad path
3     invalid input: model contract or data set cannot be used
4     runtime failure: device missing, out of memory, export check
5     internal error (a bug: please report it with ``--debug``)
130   interrupted (Ctrl-C); work already done is kept on disk
====  =========================================================
"""

from __future__ import annotations

import errno
from typing import TypeGuard

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_RUNTIME = 4
EXIT_INTERNAL = 5
EXIT_INTERRUPTED = 130


class AuditError(Exception):
    """Base class of the errors the CLI reports in one line."""

    exit_code = EXIT_INTERNAL


class UsageError(AuditError):
    """A flag or argument value cannot be used."""

    exit_code = EXIT_USAGE


class ModelContractError(AuditError):
    """The ONNX file is missing, unreadable or not an image classifier we can drive."""

    exit_code = EXIT_INPUT


class NonFiniteOutput(ModelContractError):
    """A model returned NaN or infinite outputs; ``rows`` are the affected input rows (never scored as a class)."""

    def __init__(self, message: str, rows: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.rows = tuple(rows)


class DataError(AuditError):
    """The data set is missing, empty, or its labels do not match the model."""

    exit_code = EXIT_INPUT


class ResultsError(AuditError):
    """A results.json cannot be read (newer schema, inconsistent content)."""

    exit_code = EXIT_INPUT


class RuntimeFailure(AuditError):
    """The work could not run here: missing device, failed export check, out of memory."""

    exit_code = EXIT_RUNTIME


#: errno values that say "this machine cannot do it now" (disk full, quota, I/O error), not "bad flag"
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EIO", "EFBIG", "ENOMEM") if hasattr(errno, n)
)


def is_environment_error(exc: BaseException) -> TypeGuard[OSError]:
    """True for an ``OSError`` caused by the environment (full disk, quota, I/O error)."""
    return isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS


def os_error(exc: OSError, what: str) -> AuditError:
    """The project error for an ``OSError`` on ``what``: full disk and friends are exit 4, the rest exit 2."""
    reason = exc.strerror or str(exc)
    if is_environment_error(exc):
        return RuntimeFailure(f"{what}: {reason}")
    return UsageError(f"{what}: {reason}")
