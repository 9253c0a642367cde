"""``xray-audit verify report.pdf``: is this the report the auditor produced, unchanged?

Four checks, in order; the first that fails names the problem:

1. **Signature** (when the PDF carries one): every PAdES signature is intact (the signed
   bytes hash to the signed digest) and cryptographically valid, the last one covers the
   whole file (nothing was appended after signing), and, with ``--cert``, the signer is the
   holder of that certificate. pyHanko does the validation.
2. **Attachment**: results.json is attached, and its SHA-256 equals the report ID printed
   on the first page (the report ID *is* that digest, see :func:`auditor.report.jsonfmt.results_digest`).
3. **Schema**: the attached results.json reads as a results document
   (:func:`auditor.report.io.load_results`: JSON, schema, metric consistency).
4. **Key numbers**: the report's text is re-rendered from the attached results (the same
   template, without the figures) and its decimal numbers (accuracies, confidence
   intervals, rates, gate values, ...) are compared, as a multiset, with those of the
   PDF's page text, running headers aside. A number edited on the page, or added or
   removed, fails the check. The comparison assumes the PDF was rendered by this
   version of xray-audit's template; a report from another version may differ in wording.

A PDF that cannot be read as a PDF is an input error (exit 3); every failed check is
"invalid" (exit 1). An unsigned report that passes checks 2-4 is valid but reported as
unsigned: anyone can produce one.
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from auditor.errors import ResultsError
from auditor.report.pdf import ATTACHMENT_NAME

#: the largest PDF ``verify`` reads
MAX_PDF_BYTES = 512 * 1024 * 1024
_NUMBER = re.compile(r"\d+\.\d+%?")
_REPORT_ID = re.compile(r"ReportID\(resultsSHA-256\)([0-9a-f]{64})")


@dataclass
class Verification:
    """The outcome of :func:`verify_pdf`: ``ok``, and one line saying why (or what was checked)."""

    ok: bool
    message: str
    signed: bool = False
    signers: list[str] = field(default_factory=list)
    report_id: str | None = None


class _BodyText(HTMLParser):
    """The text a printed report shows: no ``<head>``, no running header (it repeats on every page
    as a margin box) and no screen-only footer."""

    SKIP_CLASSES = {"running", "doc-footer"}
    VOID = {"br", "img", "wbr", "meta", "link", "input", "hr", "col", "area", "base", "source"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.running: list[str] = []
        self._stack: list[str] = []  # "skip", "running" or "" per open element

    def handle_starttag(self, tag, attrs) -> None:  # noqa: D102
        if tag in self.VOID:
            return
        classes = set((dict(attrs).get("class") or "").split())
        kind = "running" if "running" in classes else "skip" if (classes & self.SKIP_CLASSES or tag == "head") else ""
        self._stack.append(kind or (self._stack[-1] if self._stack else ""))

    def handle_endtag(self, tag) -> None:  # noqa: D102
        if tag not in self.VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data) -> None:  # noqa: D102
        where = self._stack[-1] if self._stack else ""
        if where == "running":
            self.running.append(data)
        elif where != "skip":
            self.parts.append(data)


def numbers(text: str) -> Counter:
    """The decimal numbers of ``text`` (``85.0%``, ``0.4567``; a CI ``70.0–95.0%`` gives two)."""
    return Counter(_NUMBER.findall(text))


def expected_text(result) -> tuple[str, str]:
    """(body text, running-header text) of the report of ``result``, re-rendered without figures."""
    from auditor.report.html import TEMPLATE, environment, label_cells
    from auditor.report.html_context import build_context

    html = label_cells(environment().get_template(TEMPLATE).render(**build_context(result, with_figures=False)))
    parser = _BodyText()
    parser.feed(html)
    parser.close()
    return " ".join(parser.parts), " ".join(parser.running)


def _read(path: str | Path) -> bytes:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PDF_BYTES:
            raise ResultsError(f"{p}: {size} bytes, larger than the {MAX_PDF_BYTES} bytes verify reads")
        data = p.read_bytes()
    except OSError as exc:
        raise ResultsError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if not data.lstrip()[:5] == b"%PDF-":
        raise ResultsError(f"{p}: not a PDF file")
    return data


def _load_cert(path: str):
    from auditor.report.sign import import_pyhanko

    import_pyhanko()
    from pyhanko.keys import load_cert_from_pemder

    try:
        return load_cert_from_pemder(path)
    except Exception as exc:  # noqa: BLE001 - asn1crypto/pyHanko raise several kinds for a bad file
        raise ResultsError(f"--cert {path}: not a PEM or DER certificate ({type(exc).__name__})") from None


def _check_signatures(data: bytes, where: str, cert) -> tuple[str | None, list[str]]:
    """(why the signatures fail or None, the signers' descriptions); ``[]`` when unsigned."""
    from auditor.report.sign import import_pyhanko, subject_name

    import_pyhanko()
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        sigs = list(reader.embedded_regular_signatures)
    except Exception as exc:  # noqa: BLE001 - a PDF pyHanko cannot parse is unreadable, whatever the cause
        raise ResultsError(f"{where}: unreadable PDF ({type(exc).__name__}: {str(exc)[:100]})") from None
    signers: list[str] = []
    for i, sig in enumerate(sigs):
        try:
            signer_cert = sig.signer_cert
        except Exception:  # noqa: BLE001
            return f"signature {i + 1} carries no readable signer certificate", signers
        name = subject_name(signer_cert)
        when = sig.self_reported_timestamp
        signers.append(f"{name} on {when:%Y-%m-%d %H:%M:%S %Z}".strip() if when else name)
        roots = [cert] if cert is not None else [signer_cert]
        vc = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail")
        try:
            status = validate_pdf_signature(sig, vc)
        except Exception as exc:  # noqa: BLE001 - a malformed signature dictionary or CMS blob
            return f"signature of {name} cannot be validated ({type(exc).__name__}: {str(exc)[:80]})", signers
        if not (status.intact and status.valid):
            return f"signature of {name} does not match the document: the signed bytes were changed", signers
        if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            after = f" (later signed by {subject_name(sigs[i + 1].signer_cert)})" if i + 1 < len(sigs) else ""
            return f"the document was changed after {name} signed it{after}", signers
        if cert is not None and signer_cert.sha256 != cert.sha256 and not status.trusted:
            return f"signed by {name}, not by the holder of the certificate given with --cert", signers
    return None, signers


def _attachment(data: bytes, where: str) -> bytes | None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        files = PdfReader(io.BytesIO(data)).attachments
        found = files.get(ATTACHMENT_NAME) or []
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{where}: unreadable PDF ({type(exc).__name__}: {str(exc)[:100]})") from None
    return found[0] if len(found) == 1 else None


def _page_text(data: bytes, where: str) -> list[str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        return [page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{where}: unreadable page text ({type(exc).__name__}: {str(exc)[:100]})") from None


def _difference(expected: Counter, found: Counter) -> str:
    extra = sorted((found - expected).items())
    missing = sorted((expected - found).items())
    parts = []
    if extra:
        parts.append("on the page but not in results.json: " + ", ".join(f"{k} (×{n})" for k, n in extra[:4]))
    if missing:
        parts.append("in results.json but not on the page: " + ", ".join(f"{k} (×{n})" for k, n in missing[:4]))
    return "; ".join(parts)


def verify_pdf(path: str | Path, cert: str | None = None) -> Verification:
    """Run the checks of the module docstring on ``path``; ``cert``: the signer's certificate (PEM/DER).

    Raises :class:`~auditor.errors.ResultsError` (exit 3) when the file is not a readable PDF.
    """
    from auditor.report.io import load_results

    where = str(path)
    data = _read(path)
    cert_obj = _load_cert(cert) if cert else None
    why, signers = _check_signatures(data, where, cert_obj)
    signed = bool(signers)
    if why:
        return Verification(False, why, signed=signed, signers=signers)
    if cert_obj is not None and not signed:
        return Verification(False, "unsigned, but --cert asks for a signature by that certificate")
    attached = _attachment(data, where)
    if attached is None:
        return Verification(False, f"no {ATTACHMENT_NAME} attached (or more than one)", signed, signers)
    digest = hashlib.sha256(attached).hexdigest()
    pages = _page_text(data, where)
    if not pages:
        raise ResultsError(f"{where}: the PDF has no pages")
    m = _REPORT_ID.search("".join(pages[0].split()))
    if m is None:
        return Verification(False, "no report ID on the first page", signed, signers)
    if m.group(1) != digest:
        return Verification(
            False,
            f"{ATTACHMENT_NAME} was changed: its SHA-256 is {digest[:16]}…, the report ID printed is {m.group(1)[:16]}…",
            signed,
            signers,
            m.group(1),
        )
    with tempfile.TemporaryDirectory(prefix="xray-audit-verify-") as tmp:
        attached_path = Path(tmp) / ATTACHMENT_NAME
        attached_path.write_bytes(attached)
        try:
            result = load_results(attached_path)
        except ResultsError as exc:
            reason = str(exc).replace(str(attached_path), f"attached {ATTACHMENT_NAME}")
            return Verification(False, reason, signed, signers, digest)
    body, running = expected_text(result)
    found = numbers(" ".join(pages))
    for key, n in numbers(running).items():  # the running header repeats on every page
        found[key] -= n * len(pages)
    found = +found
    diff = _difference(numbers(body), found)
    if diff:
        return Verification(
            False, f"the page text disagrees with the attached {ATTACHMENT_NAME}: {diff}", signed, signers, digest
        )
    checked = sum(numbers(body).values())
    who = (
        f"signed by {'; '.join(signers)}"
        + (" (matches --cert)" if cert_obj is not None else " (signer not checked: no --cert)")
        if signed
        else "unsigned"
    )
    return Verification(
        True,
        f"{who}; {ATTACHMENT_NAME} SHA-256 = report ID {digest[:16]}…; {checked} numbers on the pages match it",
        signed,
        signers,
        digest,
    )
