"""PAdES signatures on report.pdf (pyHanko), added as an incremental update after the PDF/A-3b is built.

The signature is a PAdES baseline-B signature (ETSI EN 319 142-1; ``/SubFilter
/ETSI.CAdES.detached``) over the whole PDF/A-3b file as WeasyPrint wrote it, with
results.json attached: the signed revision is appended to the file, so the PDF/A
structure (XMP ``pdfaid``, output intent, the ``/AF`` attachment) is left as it was.

The signer's name (the certificate subject's common name) and the signing time are
printed in the report's sign-off section; the same time is the signature's own
signing-time attribute, so the page and the signature agree to the second.
Keys come from PEM files (``--sign-key`` and ``--sign-cert``) or a PKCS#12 bundle
(``--sign-p12``). The signature is not timestamped by a TSA (no network access while
rendering), so the signing time is the signer's clock (see README, "Signed reports").
"""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from auditor.errors import UsageError

#: name of the signature form field
FIELD_NAME = "xray-audit-signature"


@dataclass(frozen=True)
class Signing:
    """A loaded signing key and certificate, and the time the report will be signed at (UTC, whole seconds)."""

    signer: Any  #: a ``pyhanko.sign.signers.SimpleSigner``
    name: str
    fingerprint: str  #: SHA-256 of the certificate (hex)
    time: _dt.datetime

    @property
    def time_text(self) -> str:
        """The signing time as printed in the report: ``2026-12-06 07:01:02 UTC``."""
        return self.time.strftime("%Y-%m-%d %H:%M:%S UTC")

    def now(self) -> "Signing":
        """The same signer, signing at the current time (the keys are loaded before a scan that may take hours)."""
        return replace(self, time=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0))

    def block(self) -> dict[str, str]:
        """What the sign-off section shows."""
        return {"name": self.name, "time": self.time_text, "fingerprint": self.fingerprint}


def subject_name(cert) -> str:
    """The common name of an asn1crypto certificate's subject (the whole subject when it has none)."""
    subject = cert.subject.native
    return str(subject.get("common_name") or cert.subject.human_friendly)


def load_signing(
    key: str | None = None, cert: str | None = None, p12: str | None = None, passphrase: str | None = None
) -> Signing:
    """Load ``key`` + ``cert`` (PEM or DER) or a PKCS#12 bundle ``p12``; a missing or unreadable one is a UsageError."""
    if p12 and (key or cert):
        raise UsageError("--sign-p12 replaces --sign-key/--sign-cert: give one or the other")
    if not p12 and bool(key) != bool(cert):
        raise UsageError("--sign-key and --sign-cert go together (or use --sign-p12)")
    for flag, path in (("--sign-key", key), ("--sign-cert", cert), ("--sign-p12", p12)):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: no such file")
    import_pyhanko()
    from pyhanko.sign import signers

    pw = passphrase.encode() if passphrase is not None else None
    try:
        if p12:
            signer = signers.SimpleSigner.load_pkcs12(p12, passphrase=pw)
        else:
            signer = signers.SimpleSigner.load(key, cert, key_passphrase=pw)
    except Exception as exc:  # noqa: BLE001 - pyHanko raises many kinds for a bad key file
        raise UsageError(f"cannot load the signing key ({type(exc).__name__}: {str(exc)[:120]})") from None
    if signer is None or signer.signing_cert is None:
        what = p12 or f"{key} / {cert}"
        raise UsageError(f"cannot load the signing key from {what} (wrong passphrase or not a key/certificate)")
    c = signer.signing_cert
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    return Signing(signer=signer, name=subject_name(c), fingerprint=c.sha256.hex(), time=now)


def import_pyhanko() -> None:
    """Import pyHanko without the DSA deprecation warning its import raises (this tool never uses DSA)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*DSA.*", category=Warning)
        import pyhanko.sign.signers  # noqa: F401


def _fixed_time_signer(signing: Signing, meta):
    """A pyHanko PdfSigner whose signing session uses ``signing.time`` (the time printed on the page)."""
    from pyhanko.sign import signers

    class FixedTimePdfSigner(signers.PdfSigner):
        """PdfSigner with the signing time set by the caller instead of read from the clock."""

        def init_signing_session(self, pdf_out, existing_fields_only=False):  # noqa: D102
            session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
            session.system_time = signing.time
            return session

    return FixedTimePdfSigner(meta, signer=signing.signer)


def sign_pdf(pdf: bytes, signing: Signing) -> bytes:
    """``pdf`` with a PAdES signature appended as an incremental update (in a new field if one is taken)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    taken = {name for name, _, _ in fields.enumerate_sig_fields(writer)}
    candidates = [FIELD_NAME] + [f"{FIELD_NAME}-{i}" for i in range(2, len(taken) + 3)]
    field_name = next(name for name in candidates if name not in taken)
    meta = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        name=signing.name,
        reason="xray-audit report sign-off",
    )
    out = io.BytesIO()
    _fixed_time_signer(signing, meta).sign_pdf(writer, output=out)
    return out.getvalue()
