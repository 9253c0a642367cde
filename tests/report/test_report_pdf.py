"""report.pdf: PDF/A-3b, attached results.json, deterministic identifier, data:-only fetching."""

from __future__ import annotations

import io
import json
import re
import socket
import urllib.request

import pytest

from auditor.report.jsonfmt import results_digest
from auditor.report.pdf import RefusedURLError, data_only_fetcher, decode_data_uri, make_url_fetcher, pdf_identifier


def _reader(data: bytes):
    from pypdf import PdfReader

    return PdfReader(io.BytesIO(data))


def test_results_json_is_attached(result, pdf_bytes):
    reader = _reader(pdf_bytes)
    attachments = reader.attachments
    assert list(attachments) == ["results.json"]
    assert json.loads(attachments["results.json"][0]) == json.loads(json.dumps(result.to_dict(with_predictions=True)))
    root = reader.trailer["/Root"]
    names = root["/Names"]["/EmbeddedFiles"]["/Names"]
    filespec = names[1].get_object()
    assert filespec["/AFRelationship"] == "/Data"
    assert filespec["/EF"]["/F"].get_object()["/Subtype"] == "/application/json"
    assert [a.get_object()["/F"] for a in root["/AF"]] == ["results.json"]


def test_pdfa_3b_metadata(result, pdf_bytes):
    reader = _reader(pdf_bytes)
    xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data().decode("utf-8")
    assert re.search(r'pdfaid:part(="|>)3', xmp)
    assert re.search(r'pdfaid:conformance(="|>)B', xmp)
    assert reader.metadata.title.startswith("Adversarial robustness audit")
    assert reader.metadata.author == f"xray-audit {result.tool_version}"
    assert (
        pdf_identifier(result).decode() in pdf_bytes.decode("latin-1").lower()
        or pdf_identifier(result).hex() in pdf_bytes.decode("latin-1").lower()
    )
    assert pdf_identifier(result) == results_digest(result)[:32].encode()


def test_first_page_text(result, pdf_bytes):
    reader = _reader(pdf_bytes)
    first = reader.pages[0].extract_text()
    assert "85.0%" in first
    assert "Page 1 of" in first
    assert result.model["sha256"][:12] in first  # running header


def test_fetcher_refuses_everything_but_data():
    for url in (
        "https://example.com/x.png",
        "http://example.com/x.png",
        "file:///etc/passwd",
        "ftp://h/x",
        "/etc/passwd",
    ):
        with pytest.raises(RefusedURLError):
            data_only_fetcher(url)
    response = data_only_fetcher("data:text/plain;base64,aGVsbG8=")
    assert response.read() == b"hello" and response.content_type == "text/plain"
    assert decode_data_uri("data:,a%20b") == ("text/plain", b"a b")


def test_rendering_never_touches_the_network(monkeypatch, result):
    from auditor.report import pdf as pdf_module
    from auditor.report.pdf import html_to_pdf

    cls = pdf_module._fetcher_class()
    asked: list[str] = []
    original = cls.fetch

    def spy(self, url, headers=None):
        asked.append(url)
        return original(self, url, headers)

    monkeypatch.setattr(cls, "fetch", spy)

    def boom(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", boom)
    html = (
        '<html><head><title>t</title><link rel="stylesheet" href="https://example.com/s.css"></head><body>'
        '<img src="https://example.com/x.png"><img src="file:///etc/passwd">'
        '<p style="background: url(http://example.com/b.png)">hello</p></body></html>'
    )
    pdf = html_to_pdf(html, result)
    assert pdf.startswith(b"%PDF")
    assert "https://example.com/x.png" in asked and "file:///etc/passwd" in asked  # asked, and refused
    fetcher = make_url_fetcher()
    with pytest.raises(RefusedURLError):
        fetcher.open("https://example.com/x.png")
