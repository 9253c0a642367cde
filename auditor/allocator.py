"""Run the torch-heavy commands under jemalloc when it is installed, and say which allocator ran.

glibc's malloc hands the large activation buffers of every surrogate pass
back to the kernel and faults them in again on the next pass; in a VM that
shows up as most of an attack's time spent in the kernel. jemalloc keeps them.
:func:`maybe_reexec` re-executes the CLI process once with
``LD_PRELOAD=libjemalloc.so.2`` when

* the command runs torch work (``scan``, ``attack``, ``train``, ``demo``) and
  is not a help/version request,
* ``libjemalloc.so.2`` exists (Debian/Ubuntu package ``libjemalloc2``),
* jemalloc is not loaded already, and ``XRAY_AUDIT_JEMALLOC`` is not ``0``.

``XRAY_AUDIT_JEMALLOC_TRIED=1`` is set in the new process so it never loops.
Unless ``MALLOC_CONF`` is set already, the new process gets
:data:`DEFAULT_MALLOC_CONF`, which turns jemalloc's time-based purging off:
with its defaults jemalloc kept returning freed activation pages and faulting
them back in (measured on the project's CPU: 2.6 times the page faults and
twice the system time of glibc on a white-box ResNet18 attack; with purging
off, half the page faults of glibc). Memory then goes back to the system when
the process ends; the peak is the same.
:func:`allocator_name` reads ``/proc/self/maps``, so results.json records the
allocator that actually ran, however it was loaded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
)
#: sub-commands that run torch work
TORCH_COMMANDS = frozenset({"scan", "attack", "train", "demo"})
OPT_OUT = "XRAY_AUDIT_JEMALLOC"
TRIED = "XRAY_AUDIT_JEMALLOC_TRIED"
_HELP = frozenset({"-h", "--help", "--version"})
#: jemalloc options of the re-executed process (no decay-based purging)
DEFAULT_MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1"


def find_jemalloc(paths: Sequence[str] = JEMALLOC_PATHS) -> str | None:
    """The first existing ``libjemalloc.so.2`` of ``paths``, or None."""
    return next((p for p in paths if Path(p).is_file()), None)


def jemalloc_loaded() -> bool:
    """True when jemalloc is mapped into this process (Linux ``/proc/self/maps``)."""
    try:
        return "libjemalloc" in Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return "jemalloc" in os.environ.get("LD_PRELOAD", "")


def allocator_name() -> str:
    """``"jemalloc"`` (plus its ``MALLOC_CONF``) or ``"system malloc"``, for ``environment.allocator``."""
    if not jemalloc_loaded():
        return "system malloc"
    conf = os.environ.get("MALLOC_CONF")
    return f"jemalloc (MALLOC_CONF={conf})" if conf else "jemalloc"


def _command(args: Sequence[str]) -> str | None:
    """The sub-command of a CLI argument list (global options such as ``--debug`` skipped)."""
    return next((a for a in args if not a.startswith("-")), None)


def reexec_plan(
    args: Sequence[str], environ: Mapping[str, str], library: str | None, loaded: bool
) -> dict[str, str] | None:
    """The environment to re-execute with, or None to run as is (see the module docstring)."""
    if library is None or loaded or environ.get(OPT_OUT, "1") == "0" or environ.get(TRIED) == "1":
        return None
    if _command(args) not in TORCH_COMMANDS or any(a in _HELP for a in args):
        return None
    pre = environ.get("LD_PRELOAD", "")
    return {
        "MALLOC_CONF": DEFAULT_MALLOC_CONF,
        **environ,
        "LD_PRELOAD": f"{library}:{pre}" if pre else library,
        TRIED: "1",
    }


def maybe_reexec(args: Sequence[str] | None = None) -> None:
    """Replace this process by the same command under jemalloc when :func:`reexec_plan` says so."""
    args = list(sys.argv[1:] if args is None else args)
    if not sys.platform.startswith("linux"):
        return
    env = reexec_plan(args, os.environ, find_jemalloc(), jemalloc_loaded())
    if env is None:
        return
    argv = [sys.executable, *getattr(sys, "orig_argv", [sys.executable, *sys.argv])[1:]]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    except OSError:  # cannot exec (odd sandbox): run on with the system allocator
        return
