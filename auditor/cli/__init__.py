"""The ``xray-audit`` command line.

Sub-commands are imported only when used, so ``xray-audit --help`` stays fast
and never imports torch. Every :class:`~auditor.errors.AuditError` becomes one
line on stderr and its documented exit code (see ``auditor.errors``); other
exceptions are internal errors (exit 5) with a traceback only under ``--debug``.
"""

from __future__ import annotations

import importlib
import sys

import click

from auditor import __version__
from auditor.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_USAGE, AuditError, is_environment_error

#: command name -> (module, attribute, short help)
COMMANDS = {
    "inspect": ("auditor.cli.inspect_cmd", "inspect_command", "Print the input/output contract of an ONNX model."),
    "scan": ("auditor.cli.scan_cmd", "scan_command", "Audit an ONNX classifier on a data set and write reports."),
    "report": ("auditor.cli.report_cmd", "report_command", "Re-render reports from a results.json."),
    "attack": ("auditor.cli.attack_cmd", "attack_command", "Build cached adversarial sets with a surrogate."),
    "train": ("auditor.cli.train_cmd", "train_group", "Train the reference model and the defense models."),
    "demo": ("auditor.cli.demo_cmd", "demo_command", "Run the built-in demo on synthetic phantoms."),
    "verify": ("auditor.cli.verify_cmd", "verify_command", "Check a report.pdf: signature, attached results, numbers."),
}


class LazyGroup(click.Group):
    """A group that imports sub-commands on demand and maps errors to exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:  # noqa: D102
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:  # noqa: D102
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # noqa: D102
        debug = bool(ctx.params.get("debug"))
        try:
            return super().invoke(ctx)
        except AuditError as exc:
            from auditor.types import one_line

            _traceback(debug)
            click.echo(f"error: {one_line(str(exc))}", err=True)  # messages quote untrusted names
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: work already finished is kept (cached sets resume on the next run)", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except click.ClickException as exc:
            if debug:
                raise
            # one line, like every other error (click's default adds a usage block)
            hint = f" (see '{exc.ctx.command_path} --help')" if isinstance(exc, click.UsageError) and exc.ctx else ""
            click.echo(f"error: {' '.join(exc.format_message().split())}{hint}", err=True)
            ctx.exit(EXIT_USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            _traceback(debug)
            if is_out_of_memory(exc):
                click.echo("error: out of memory (try --batch-size, --attack-batch-size or --max-images)", err=True)
                ctx.exit(EXIT_RUNTIME)
            if is_environment_error(exc):  # e.g. the cache's disk filled up mid-attack
                where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                click.echo(
                    f"error: {where}{exc.strerror or exc} (a problem of this machine, not of the input)", err=True
                )
                ctx.exit(EXIT_RUNTIME)
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            click.echo(f"internal error: {type(exc).__name__}: {first} (re-run with --debug for a traceback)", err=True)
            ctx.exit(EXIT_INTERNAL)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for Python's MemoryError and torch's allocation failures (``torch.OutOfMemoryError``,
    and the plain RuntimeError its CPU allocator raises), without importing torch."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


def _traceback(debug: bool) -> None:
    """Under ``--debug``, print the traceback of the exception being handled; the exit code stays documented."""
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xray-audit")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Audit chest X-ray classifiers (ONNX) for robustness against USMM and STM transfer attacks.

    Exit codes: 0 ok, 1 gate failed, 2 usage error, 3 invalid model or data,
    4 runtime failure, 5 internal error, 130 interrupted.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:
    """Console-script entry point (re-executes under jemalloc for torch work, see ``auditor.allocator``)."""
    from auditor.allocator import maybe_reexec

    maybe_reexec()
    cli(prog_name="xray-audit")


if __name__ == "__main__":  # pragma: no cover
    main()
