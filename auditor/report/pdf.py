"""``report.pdf``: the HTML report printed by WeasyPrint as PDF/A-3b, with results.json attached.

* ``pdf_variant="pdf/a-3b"`` (archival; WeasyPrint adds the sRGB output intent
  and the ``pdfaid`` XMP entries). WeasyPrint flags PDF/A as experimental:
  validate the output with veraPDF where conformance matters.
* ``pdf_identifier`` is derived from the SHA-256 of results.json, so the same
  results always give the same identifier.
* results.json is embedded with ``AFRelationship /Data`` (not the default
  ``/Unspecified``, which strict validators reject).
* The URL fetcher refuses everything except inline ``data:`` URIs: rendering a
  report never touches the network or the file system.
* Images carry ``image-rendering: crisp-edges`` (no interpolation, as PDF/A
  requires); page numbers and the running header (model SHA-256, date) come
  from CSS ``@page`` margin boxes in ``auditor/templates/report.css``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import functools
from urllib.parse import unquote_to_bytes

from auditor.report.jsonfmt import results_digest, results_json
from auditor.report.renderer import Renderer
from auditor.types import AuditResult

PDF_VARIANT = "pdf/a-3b"
ATTACHMENT_NAME = "results.json"


class RefusedURLError(ValueError):
    """A report tried to load something other than an inline ``data:`` URI."""


def decode_data_uri(url: str) -> tuple[str, bytes]:
    """``data:[<mime>][;base64],<payload>`` -> (mime type, bytes). Raises ValueError if malformed."""
    if not url[:5].lower() == "data:" or "," not in url:
        raise ValueError("not a data: URI")
    header, payload = url[5:].split(",", 1)
    parts = [p.strip() for p in header.split(";")]
    mime = parts[0] or "text/plain"
    if any(p.lower() == "base64" for p in parts[1:]):
        try:
            body = base64.b64decode("".join(unquote_to_bytes(payload).decode("ascii").split()), validate=True)
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"bad base64 payload in data: URI ({exc})") from None
    else:
        body = unquote_to_bytes(payload)
    return mime, body


@functools.lru_cache(maxsize=None)
def _fetcher_class():
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class DataOnlyURLFetcher(URLFetcher):
        """WeasyPrint URL fetcher that serves ``data:`` URIs and refuses every other URL."""

        def __init__(self) -> None:
            super().__init__(allowed_protocols=("data",), allow_redirects=False, fail_on_errors=False)

        def fetch(self, url, headers=None):  # noqa: D401 - WeasyPrint's signature
            if not isinstance(url, str) or url[:5].lower() != "data:":
                raise RefusedURLError(f"refused to load {str(url)[:80]!r}: reports embed data: URIs only")
            mime, body = decode_data_uri(url)
            return URLFetcherResponse(url="data:", body=body, headers={"Content-Type": mime}, status=200)

        def open(self, url, data=None, timeout=None):  # never fall back to urllib's opener
            return self.fetch(getattr(url, "full_url", url))

    return DataOnlyURLFetcher


def make_url_fetcher():
    """A new WeasyPrint URL fetcher that only serves ``data:`` URIs (anything else raises RefusedURLError)."""
    return _fetcher_class()()


def data_only_fetcher(url: str):
    """Fetch ``url`` if it is a ``data:`` URI; raise :class:`RefusedURLError` for http, https, file, ...."""
    return make_url_fetcher().fetch(url)


def pdf_identifier(result: AuditResult) -> bytes:
    """Deterministic PDF file identifier: the first 16 bytes of the results SHA-256, in hex."""
    return results_digest(result)[:32].encode("ascii")


def _parse_time(text: str) -> _dt.datetime:
    try:
        t = _dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)).astimezone(_dt.timezone.utc)


def _dedupe_associated_files(document, pdf) -> None:
    """WeasyPrint 70 lists each attachment twice in the catalog's ``/AF``; keep one reference each."""
    af = pdf.catalog.get("AF")
    if af:
        unique = list(dict.fromkeys(af))
        af.clear()
        af.extend(unique)


def html_to_pdf(html: str, result: AuditResult) -> bytes:
    """Print ``html`` (a report of ``result``) to PDF/A-3b with results.json attached."""
    import weasyprint

    fetcher = make_url_fetcher()
    created = _parse_time(result.created)
    modified = _parse_time(result.finished) if result.finished else created
    attachment = weasyprint.Attachment(
        string=results_json(result).encode("utf-8"),
        name=ATTACHMENT_NAME,
        url_fetcher=fetcher,
        description=f"Machine-readable results of this audit (xray-audit results.json, schema {result.schema_version})",
        created=created,
        modified=modified,
        relationship="Data",
    )
    doc = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher, media_type="print")
    return doc.write_pdf(
        pdf_variant=PDF_VARIANT,
        pdf_identifier=pdf_identifier(result),
        attachments=[attachment],
        uncompressed_pdf=False,
        finisher=_dedupe_associated_files,
    )


class PdfRenderer(Renderer):
    """report.pdf (PDF/A-3b) from the same HTML as report.html."""

    name = "pdf"
    suffix = ".pdf"
    filename = "report.pdf"

    def render(self, result: AuditResult, html: str | None = None, signing=None) -> bytes:
        """``html``: an already rendered report.html of ``result`` (rendered here if omitted).

        ``signing`` (:class:`auditor.report.sign.Signing`): print the signer in the sign-off
        section and sign the PDF/A with a PAdES signature (an incremental update).
        """
        if signing is not None:
            from auditor.report.html import render_html
            from auditor.report.sign import sign_pdf

            signing = signing.now()
            return sign_pdf(html_to_pdf(render_html(result, signature=signing.block()), result), signing)
        if html is None:
            from auditor.report.html import render_html

            html = render_html(result)
        return html_to_pdf(html, result)
