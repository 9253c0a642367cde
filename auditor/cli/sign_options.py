"""``--sign-key/--sign-cert``, ``--sign-p12`` and ``--sign-passphrase-env`` of ``scan`` and ``report``."""

from __future__ import annotations

import os

import click

from auditor.errors import UsageError


def sign_options(func):
    """The options that sign report.pdf with a PAdES signature (see :mod:`auditor.report.sign`)."""
    opts = [
        click.option(
            "--sign-key", type=click.Path(dir_okay=False), help="Sign report.pdf with this private key (PEM)."
        ),
        click.option(
            "--sign-cert", type=click.Path(dir_okay=False), help="The signer's certificate (PEM) for --sign-key."
        ),
        click.option(
            "--sign-p12",
            type=click.Path(dir_okay=False),
            help="Sign with a PKCS#12 bundle (key + certificate) instead.",
        ),
        click.option(
            "--sign-passphrase-env",
            metavar="VAR",
            help="Environment variable holding the passphrase of the key or bundle (never on the command line).",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def load_signing_from(options: dict):
    """A :class:`auditor.report.sign.Signing` from the popped sign options, or None when none was given."""
    key, cert, p12 = options.pop("sign_key", None), options.pop("sign_cert", None), options.pop("sign_p12", None)
    env = options.pop("sign_passphrase_env", None)
    if not (key or cert or p12):
        if env:
            raise UsageError("--sign-passphrase-env needs --sign-key/--sign-cert or --sign-p12")
        return None
    passphrase = None
    if env:
        if env not in os.environ:
            raise UsageError(f"--sign-passphrase-env {env}: the variable is not set")
        passphrase = os.environ[env]
    from auditor.report.sign import load_signing

    return load_signing(key, cert, p12, passphrase)
