"""Click options shared by several commands, and their parsing into library values."""

from __future__ import annotations

import functools
import re

import click

from auditor.errors import UsageError
from auditor.types import LAYOUTS, OUTPUT_KINDS, SCALINGS

#: upper bounds of the flags that size work (memory grows with batch x image pixels)
MAX_BATCH_SIZE = 1024
MAX_ATTACK_BATCH_SIZE = 256
MAX_BOOTSTRAP = 100_000


class PositiveFloat(click.ParamType):
    """A finite number > 0 (learning rates): ``nan``, ``inf``, 0 and negatives are usage errors."""

    name = "positive number"

    def __init__(self, maximum: float | None = None) -> None:
        self.maximum = maximum

    def convert(self, value, param, ctx):  # noqa: D102
        import math

        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v) or v <= 0 or (self.maximum is not None and v > self.maximum):
            upper = f" and at most {self.maximum:g}" if self.maximum is not None else ""
            self.fail(f"{value!r} must be a finite number above 0{upper}", param, ctx)
        return v


def model_contract_options(func):
    """Flags that override what the ONNX file says about its input/output contract."""
    opts = [
        click.option("--labels", help="Class names in output order, comma-separated (overrides metadata)."),
        click.option("--layout", type=click.Choice(LAYOUTS), help="Input layout (default: from the graph)."),
        click.option("--channels", type=click.Choice(["1", "3"]), help="Input channels (default: from the graph)."),
        click.option(
            "--scaling",
            type=click.Choice(SCALINGS),
            help="Intensity scaling the model expects (default: metadata, else [0,1] with a warning).",
        ),
        click.option("--mean", help="Custom per-channel mean in [0,1] units, comma-separated (with --scaling custom)."),
        click.option("--std", help="Custom per-channel std in [0,1] units, comma-separated (with --scaling custom)."),
        click.option(
            "--image-size",
            type=click.IntRange(8, 4096),
            help="Input size for models with dynamic height/width (default 224).",
        ),
        click.option(
            "--output-kind", type=click.Choice(OUTPUT_KINDS), help="What the output holds (default: from the graph)."
        ),
        click.option(
            "--sidecar",
            type=click.Path(dir_okay=False),
            help="ModelSpec JSON overriding the model's metadata (default: MODEL.json if present).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _floats(text: str | None, flag: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list of numbers") from None


def contract_overrides(kw: dict) -> dict:
    """CLI values -> ``read_spec`` overrides (None where not given)."""
    return {
        "class_names": [c.strip() for c in kw["labels"].split(",") if c.strip()] if kw.get("labels") else None,
        "layout": kw.get("layout"),
        "channels": int(kw["channels"]) if kw.get("channels") else None,
        "scaling": kw.get("scaling"),
        "mean": _floats(kw.get("mean"), "--mean"),
        "std": _floats(kw.get("std"), "--std"),
        "image_size": kw.get("image_size"),
        "output_kind": kw.get("output_kind"),
    }


def parse_epsilons(text: str) -> tuple[float, ...]:
    """``"4,8,16"`` (units of 1/255), ``"8/255"`` or ``"0.03"`` -> fractions in (0, 1]."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = re.fullmatch(r"([0-9.]+)\s*/\s*255", part)
        try:
            if m:
                v = float(m.group(1)) / 255
            else:
                f = float(part)
                v = f if f < 1 else f / 255  # bare numbers >= 1 are 1/255 units
        except ValueError:
            raise UsageError(f"--eps value {part!r} is not a number") from None
        if not 0 < v <= 1:
            raise UsageError(f"--eps value {part!r} gives epsilon {v:.4f}, outside (0, 1]")
        out.append(v)
    if not out:
        raise UsageError("--eps needs at least one value")
    return tuple(sorted(set(out)))


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` -> ["a", "b", "c"]."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def common_run_options(func):
    """--seed, --device, --quiet, --no-progress."""
    opts = [
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed for sampling, attacks and bootstrap."
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
            help="Where torch work and ONNX Runtime run.",
        ),
        click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary."),
        click.option("--no-progress", is_flag=True, help="No progress bars even on a terminal."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return functools.wraps(func)(func)
