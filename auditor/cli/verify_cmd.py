"""``xray-audit verify report.pdf [--cert CERT.pem]``: check a report's signature, attachment and numbers."""

from __future__ import annotations

import click

from auditor.errors import EXIT_GATE_FAILED


@click.command("verify")
@click.argument("pdf", type=click.Path(dir_okay=False))
@click.option(
    "--cert",
    type=click.Path(dir_okay=False),
    help="The signer's certificate (PEM or DER): the signature must be theirs.",
)
def verify_command(pdf: str, cert: str | None) -> None:
    """Check that PDF is an unchanged xray-audit report.

    Checks the PAdES signature (when present) and that nothing changed after signing, that the attached
    results.json hashes to the report ID printed in the PDF and matches the schema, and that the numbers on
    the pages are the ones re-rendered from it. Exit codes: 0 valid, 1 invalid or tampered, 3 unreadable.
    """
    from auditor.capture import capture_library_output
    from auditor.report.verify import verify_pdf

    debug = bool((click.get_current_context().find_root().obj or {}).get("debug"))
    with capture_library_output(show=debug):  # pyHanko logs each path-building attempt
        outcome = verify_pdf(pdf, cert=cert)
    if outcome.ok:
        click.echo(f"valid: {outcome.message}")
        return
    click.echo(f"invalid: {pdf}: {outcome.message}")
    click.get_current_context().exit(EXIT_GATE_FAILED)
