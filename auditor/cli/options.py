"""Click options shared by several commands, and their parsing into library values."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import click

from auditor.errors import RuntimeFailure, UsageError
from auditor.types import LAYOUTS, OUTPUT_KINDS, SCALINGS

#: upper bounds of the flags that size work (memory grows with batch x image pixels)
MAX_BATCH_SIZE = 1024
MAX_ATTACK_BATCH_SIZE = 256
MAX_BOOTSTRAP = 100_000
#: largest ``--seed`` (numpy's legacy and torch's generators take seeds below 2**32)
MAX_SEED = 2**32 - 1
#: the smallest budget: half a grey level of an 8-bit image (a smaller one rounds every pixel back)
MIN_EPSILON = 0.5 / 255
#: seconds a scan waits for a Ray cluster's address to accept a connection before giving up (exit 4)
RAY_CONNECT_TIMEOUT = 10.0


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


def gate_policy_options(gate_on_default: str | None):
    """``--allow-transfer-only`` and ``--gate-on``, declared once for ``scan`` and ``report`` (``report``'s
    ``--gate-on`` defaults to None: without it the stored gates are not re-evaluated)."""

    def wrap(func):
        func = click.option(
            "--gate-on",
            type=click.Choice(["point", "ci"]),
            default=gate_on_default,
            show_default=gate_on_default is not None,
            help="Decide gates on the point estimate (default) or fail gates whose 95% CI holds the threshold (ci).",
        )(func)
        return click.option(
            "--allow-transfer-only",
            is_flag=True,
            help="Let robustness gates pass on transfer attacks alone (a lower bound on the vulnerability; "
            "see README).",
        )(func)

    return wrap


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
    """``"4,8,16"`` (units of 1/255), ``"8/255"`` or ``"0.03"`` -> fractions in ``[0.5/255, 1]``.

    Budgets below :data:`MIN_EPSILON` (half a grey level) are usage errors: an 8-bit adversarial
    image rounds every such change back to the clean pixel, so the condition would be a copy of
    clean under an attack's name.
    """
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
        if v < MIN_EPSILON:
            raise UsageError(
                f"--eps value {part!r} is {v * 255:.3g}/255, below half a grey level (0.5/255): "
                "8-bit adversarial images cannot hold it"
            )
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
            "--seed",
            type=click.IntRange(0, MAX_SEED),
            default=0,
            show_default=True,
            help="Seed for sampling, attacks and bootstrap (0 to 2**32-1).",
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


_RAY_HOST_PORT = re.compile(
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})"
)


def _ray_current_cluster() -> str | None:
    """The address ``--ray-address auto`` connects to: ``$RAY_ADDRESS``, else the one ``ray start`` left
    in ``$RAY_TMPDIR/ray/ray_current_cluster`` (default ``/tmp``), else None."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env:
        return env
    marker = Path(os.environ.get("RAY_TMPDIR") or "/tmp") / "ray" / "ray_current_cluster"
    try:
        first = marker.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return None
    return first[0].strip() if first else None


def check_ray_address(text: str | None, timeout: float | None = None) -> str | None:
    """``--ray-address``: ``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``, checked before any work.

    A malformed address (or an ``http://`` dashboard address) is a :class:`UsageError` (exit 2); a
    cluster address that does not accept a TCP connection within ``timeout`` seconds (default
    :data:`RAY_CONNECT_TIMEOUT`), or ``auto`` with no cluster to find, is a :class:`RuntimeFailure`
    (exit 4). Returns the address as given (stripped).
    """
    if text is None:
        return None
    address = text.strip()
    if address.lower() == "local":
        return "local"
    if address.lower() == "auto":
        found = _ray_current_cluster()
        if found is None:
            raise RuntimeFailure(
                "--ray-address auto: no running Ray cluster found ($RAY_ADDRESS is unset and `ray start` "
                "left no address on this machine); give HOST:PORT, or 'local'"
            )
        _probe_ray(_ray_host_port(found, f"--ray-address auto (found {found!r})"), timeout, "auto")
        return "auto"
    _probe_ray(_ray_host_port(address, f"--ray-address {address!r}"), timeout, address)
    return address


def _ray_host_port(address: str, what: str) -> tuple[str, int]:
    rest = address[len("ray://") :] if address.lower().startswith("ray://") else address
    m = _RAY_HOST_PORT.fullmatch(rest)
    port = int(m.group("port")) if m else 0
    if not m or not 1 <= port <= 65535:
        hint = " (a dashboard URL; Ray needs the cluster's GCS address HOST:6379 or ray://HOST:10001)"
        raise UsageError(
            f"{what} is not local, auto, HOST:PORT or ray://HOST:PORT"
            + (hint if "://" in address and not address.lower().startswith("ray://") else "")
        )
    return m.group("host").strip("[]"), port


#: the client connection preface of HTTP/2 (RFC 9113 section 3.4); Ray's GCS and client server speak gRPC
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _probe_ray(host_port: tuple[str, int], timeout: float | None, address: str) -> None:
    """Connect to the cluster address and expect the HTTP/2 SETTINGS frame every gRPC server sends first;
    each step waits at most ``timeout`` seconds (a closed port, a silent host and a non-gRPC service all fail)."""
    import socket

    wait = RAY_CONNECT_TIMEOUT if timeout is None else timeout
    where = f"--ray-address {address}: {host_port[0]}:{host_port[1]}"
    try:
        with socket.create_connection(host_port, timeout=wait) as conn:
            conn.sendall(_HTTP2_PREFACE)
            head = conn.recv(9)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise RuntimeFailure(f"{where} did not accept a Ray connection within {wait:g} s ({reason})") from None
    if len(head) < 4 or head[3] != 0x04:  # frame type 4: SETTINGS
        raise RuntimeFailure(f"{where} answers, but not as a Ray cluster (no gRPC reply)")


def check_writable(path: str | os.PathLike | None, flag: str, *, staged_beside: bool = False) -> None:
    """A folder flag (``--out``, ``--cache-dir``) must be writable, checked before any work by creating and
    removing a probe file in it (or in its nearest existing parent); a read-only file system or missing
    permission is a :class:`RuntimeFailure` (exit 4, a problem of this machine, like a full disk).

    ``staged_beside``: outputs are staged in a hidden folder beside ``path`` and moved into it, so its
    parent must be writable too.
    """
    import tempfile

    if not path:
        return
    p = Path(path).expanduser().absolute()
    places = [p.parent, p] if staged_beside else [p]
    for place in places:
        q = next((a for a in (place, *place.parents) if a.exists()), None)
        if q is None or not q.is_dir():
            continue  # a file on the way is reported by the caller's own check (exit 2)
        try:
            with tempfile.TemporaryFile(dir=q, prefix=".xray-audit-probe-"):
                pass
        except OSError as exc:
            raise RuntimeFailure(f"{flag} {path}: cannot write in {q} ({exc.strerror or exc})") from None


def check_outside_data(
    data: str | os.PathLike, folder: str | os.PathLike | None, flag: str, data_format: str = "auto"
) -> None:
    """An output folder (``--out``, ``--cache-dir``) must not lie inside a data *folder*: a later scan
    would discover its PNGs as images of the class folder they sit in (:class:`UsageError`, exit 2).

    Symlinks are resolved on both sides. A CSV or NIH manifest lists its images one by one, so outputs
    beside it are allowed.
    """
    if not folder:
        return
    root = Path(data).expanduser()
    if data_format in ("csv", "nih") or not root.is_dir():
        return
    base = os.path.realpath(root)
    real = os.path.realpath(Path(folder).expanduser())
    if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
        raise UsageError(
            f"{flag} {folder} lies inside the data folder {data}: a later scan would read its images "
            "as data; choose a folder outside it"
        )
