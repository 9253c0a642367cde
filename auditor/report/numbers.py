"""How the numbers of a report are written: percentages, confidence intervals, budgets, plain values.

The one set of formatters of every human-readable output (the HTML report, the console
summary, the defense verdicts, the transfer sentences), so all show a figure in the same
form; a missing or non-finite number is written ``—``. The numbers themselves are worked out
in :mod:`auditor.report.summary`.
"""

from __future__ import annotations

import json
import math
from typing import Any, TypeGuard


def _finite(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_pct(v: Any, digits: int = 1, signed: bool = False, points: bool = False) -> str:
    """0.853 -> ``85.3%`` (``points``: ``85.3 pp``); None -> ``—``."""
    if not _finite(v):
        return "—"
    text = f"{100 * v:+.{digits}f}" if signed else f"{100 * v:.{digits}f}"
    return text + (" pp" if points else "%")


def fmt_ci(ci: Any, digits: int = 1) -> str:
    """[0.7, 0.95] -> ``70.0–95.0%``; missing -> ``—``."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or not all(_finite(v) for v in ci):
        return "—"
    return f"{100 * ci[0]:.{digits}f}–{100 * ci[1]:.{digits}f}%"


def fmt_num(v: Any, digits: int = 3) -> str:
    """A plain number with ``digits`` decimals; ints stay ints; None -> ``—``."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if not _finite(v):
        return "—"
    return f"{v:.{digits}f}"


def fmt_eps(eps: Any) -> str:
    """8/255 (as a float in [0, 1]) -> ``8/255``; 2.5/255 -> ``2.5/255``."""
    if not _finite(eps):
        return "—"
    v = eps * 255
    if abs(v - round(v)) < 1e-6:
        return f"{int(round(v))}/255"
    return f"{v:.2f}".rstrip("0").rstrip(".") + "/255"


def fmt_value(v: Any) -> str:
    """Any parameter/environment value as one line of text."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float, str)):
        return str(v)
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float, str)) and not isinstance(x, bool) for x in v):
        return ", ".join(str(x) for x in v) if v else "—"
    return json.dumps(v, sort_keys=True, default=str)
