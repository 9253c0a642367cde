"""Figures of the HTML/PDF report, as inline ``data:`` URIs (PNG by default, or SVG).

matplotlib is driven through the object API with the Agg canvas (no pyplot,
no global figure state). Every figure has a fixed size and DPI; PNG
``Software`` metadata and SVG ``Date``/``Creator`` are dropped and
``svg.hashsalt`` is fixed, so the same numbers give the same bytes.
Text is never parsed as math (class names may contain ``$``).
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TypeGuard

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

DPI = 150
#: matplotlib settings applied while drawing
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "xray-audit",
    "svg.fonttype": "path",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "path.simplify": True,
}
PALETTE = ("#1f4e79", "#c0504d", "#4f8a3c", "#8064a2", "#d08c20", "#2c8c99", "#7f7f7f", "#b5487a")
INK = "#1d2733"


@contextmanager
def _figure(width: float, height: float) -> Iterator:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        yield fig


def _data_uri(fig, fmt: str = "png") -> str:
    buf = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        mime = "image/svg+xml"
    elif fmt == "png":
        fig.savefig(buf, format="png", metadata={"Software": None})
        mime = "image/png"
    else:
        raise ValueError(f"unknown figure format {fmt!r}")
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _wrap(label: str, width: int = 16) -> str:
    return textwrap.fill(str(label), width=width, break_long_words=True) or str(label)


def _finite(v: Any) -> TypeGuard[float]:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def confusion_matrix_figure(cm: Sequence[Sequence[int]], labels: Sequence[str], title: str, fmt: str = "png") -> str:
    """Counts with row-normalised shading (rows = true class, columns = predicted)."""
    k = len(labels)
    size = 2.2 + 0.55 * k
    with _figure(size, size * 0.92) as fig:
        ax = fig.add_subplot()
        rows = [sum(r) for r in cm]
        shade = [[(v / rows[i]) if rows[i] else 0.0 for v in r] for i, r in enumerate(cm)]
        ax.imshow(shade, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
        for i in range(k):
            for j in range(k):
                frac = shade[i][j]
                ax.text(
                    j,
                    i,
                    f"{cm[i][j]}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if frac > 0.55 else INK,
                    fontweight="bold" if i == j else "normal",
                )
        ticks = list(range(k))
        ax.set_xticks(ticks, [_wrap(lbl, 12) for lbl in labels], rotation=35, ha="right", rotation_mode="anchor")
        ax.set_yticks(ticks, [_wrap(lbl, 14) for lbl in labels])
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(_wrap(title, 40), color=INK)
        for spine in ax.spines.values():
            spine.set_visible(False)
        return _data_uri(fig, fmt)


def accuracy_vs_eps_figure(series: Sequence[dict], clean_accuracy: float | None, fmt: str = "png") -> str | None:
    """Accuracy against ε (in /255) per attack, with 95% CI error bars.

    ``series``: dicts with ``label``, ``eps255`` (list), ``acc``, ``lo``, ``hi``
    (lists, ``None`` allowed for a missing CI), optional ``dashed`` (a defended series, drawn next
    to its undefended one) and optional ``group`` (series of one attack share a colour).
    """
    series = [s for s in series if any(_finite(a) for a in s["acc"])]
    if not series:
        return None
    groups = list(dict.fromkeys(s.get("group", s["label"]) for s in series))
    with _figure(6.4, 3.4) as fig:
        ax = fig.add_subplot()
        if _finite(clean_accuracy):
            ax.axhline(clean_accuracy, color="#7f7f7f", lw=0.9, ls=":", label="clean accuracy")
        for idx, s in enumerate(series):
            pts = [(e, a, lo, hi) for e, a, lo, hi in zip(s["eps255"], s["acc"], s["lo"], s["hi"]) if _finite(a)]
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            err_lo = [max(0.0, p[1] - p[2]) if _finite(p[2]) else 0.0 for p in pts]
            err_hi = [max(0.0, p[3] - p[1]) if _finite(p[3]) else 0.0 for p in pts]
            color = PALETTE[groups.index(s.get("group", s["label"])) % len(PALETTE)]
            marker = "so^vD"[idx % 5] if s.get("dashed") else "o"
            ax.errorbar(
                xs,
                ys,
                yerr=[err_lo, err_hi],
                color=color,
                marker=marker,
                ms=3.5,
                lw=1.4,
                capsize=2.5,
                ls="--" if s.get("dashed") else "-",
                label=s["label"],
            )
        all_x = sorted({x for s in series for x in s["eps255"]})
        ax.set_xticks(all_x, [f"{x:g}/255" for x in all_x])
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("L∞ budget ε")
        ax.set_ylabel("accuracy")
        ax.yaxis.grid(True, color="#e3e6ea", lw=0.6)
        ax.set_axisbelow(True)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return _data_uri(fig, fmt)


def heatmap_figure(
    rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float | None]], title: str, fmt: str = "png"
) -> str | None:
    """Accuracy per (defense row, attack column); missing cells are hatched grey."""
    if not rows or not cols:
        return None
    width = min(9.0, 1.8 + 0.85 * len(cols))
    height = 1.2 + 0.42 * len(rows)
    with _figure(width, height) as fig:
        ax = fig.add_subplot()
        grid = [[v if _finite(v) else math.nan for v in r] for r in values]
        import matplotlib

        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#eeeeee")
        ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        for i, r in enumerate(grid):
            for j, v in enumerate(r):
                ax.text(
                    j, i, "—" if math.isnan(v) else f"{100 * v:.1f}", ha="center", va="center", fontsize=7, color=INK
                )
        ax.set_xticks(range(len(cols)), [_wrap(c, 12) for c in cols], rotation=30, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(rows)), [_wrap(r, 18) for r in rows])
        ax.set_title(title, color=INK)
        for spine in ax.spines.values():
            spine.set_visible(False)
        return _data_uri(fig, fmt)


def roc_figure(curves: Sequence[dict], fmt: str = "png") -> str | None:
    """ROC curves: dicts with ``label``, ``fpr``, ``tpr`` (lists) and optional ``auc``."""
    curves = [c for c in curves if len(c.get("fpr") or []) >= 2 and len(c["fpr"]) == len(c.get("tpr") or [])]
    if not curves:
        return None
    with _figure(4.6, 3.4) as fig:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#9aa3ad", lw=0.8, ls=":")
        for idx, c in enumerate(curves):
            label = c["label"] + (f" (AUC {c['auc']:.3f})" if _finite(c.get("auc")) else "")
            ax.plot(c["fpr"], c["tpr"], color=PALETTE[idx % len(PALETTE)], lw=1.3, label=_wrap(label, 34))
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false-positive rate (benign pairs flagged)")
        ax.set_ylabel("detection rate")
        ax.legend(loc="lower right", frameon=False)
        return _data_uri(fig, fmt)


def before_after_figure(rows: Sequence[dict], fmt: str = "png") -> str | None:
    """Grouped bars per attack condition: before attack, after attack, after the best defense.

    ``rows``: dicts with ``label``, ``before``, ``after``, ``defended`` (``None`` allowed).
    """
    if not rows:
        return None
    width = min(9.0, 2.4 + 0.75 * len(rows))
    with _figure(width, 3.0) as fig:
        ax = fig.add_subplot()
        keys = (
            ("before", "before attack", "#1f4e79"),
            ("after", "after attack", "#c0504d"),
            ("defended", "after defense", "#4f8a3c"),
        )
        bar_w = 0.26
        for k_idx, (key, label, color) in enumerate(keys):
            xs, ys = [], []
            for i, r in enumerate(rows):
                if _finite(r.get(key)):
                    xs.append(i + (k_idx - 1) * bar_w)
                    ys.append(r[key])
            if xs:
                ax.bar(xs, ys, width=bar_w, color=color, label=label)
        ax.set_xticks(range(len(rows)), [_wrap(r["label"], 14) for r in rows])
        ax.set_ylim(0, 1.0)
        ax.set_ylabel("accuracy")
        ax.yaxis.grid(True, color="#e3e6ea", lw=0.6)
        ax.set_axisbelow(True)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=3, frameon=False)
        return _data_uri(fig, fmt)


def fft_figure(spectra: dict, title: str = "", fmt: str = "png") -> str | None:
    """Log-magnitude spectra (clean, suspect, spectrum of the difference) side by side."""
    import numpy as np

    panels = []
    for k in ("clean", "suspect", "difference"):
        try:
            arr = np.asarray(spectra.get(k), dtype=float)
        except (TypeError, ValueError):
            continue
        if arr.ndim == 2 and min(arr.shape) >= 2:
            panels.append((k, arr))
    if not panels:
        return None

    with _figure(2.2 * len(panels) + 0.4, 2.5) as fig:
        for i, (name, arr) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            ax.imshow(np.asarray(arr, dtype=float), cmap="magma", interpolation="nearest")
            ax.set_title(f"{name}", color=INK, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        if title:
            fig.suptitle(title, color=INK, fontsize=8)
        return _data_uri(fig, fmt)
