"""PDF/A-3b structure of report.pdf, read with pikepdf (no validator runs here; veraPDF is the reference).

Checked on the plain report and on the same report signed (the signature is an incremental update and
must keep every PDF/A element): the output intent with its ICC profile, the XMP ``pdfaid`` identification,
embedded fonts, no JavaScript anywhere, and results.json as an associated file with ``/AFRelationship /Data``.
"""

from __future__ import annotations

import io

import pytest

from tests.report.test_report_sign import _keypair

pikepdf = pytest.importorskip("pikepdf", reason="pikepdf is a dev dependency (pip install -e .[dev])")


@pytest.fixture(scope="module", params=["unsigned", "signed"])
def pdf(request, pdf_bytes, tmp_path_factory):
    data = pdf_bytes
    if request.param == "signed":
        from auditor.report.sign import load_signing, sign_pdf

        k = _keypair(tmp_path_factory.mktemp("pdfa-keys"), "signer", "PDF/A Signer")
        data = sign_pdf(pdf_bytes, load_signing(k["key"], k["cert"]))
    return pikepdf.open(io.BytesIO(data))


def test_output_intent_carries_an_icc_profile(pdf):
    intents = pdf.Root.OutputIntents
    assert len(intents) >= 1
    pdfa = [oi for oi in intents if oi.S == "/GTS_PDFA1"]
    assert len(pdfa) == 1
    profile = pdfa[0].DestOutputProfile
    assert int(profile.N) == 3  # RGB (sRGB)
    data = profile.read_bytes()
    assert data[36:40] == b"acsp" and data[16:20] == b"RGB "  # an ICC profile header, RGB colour space
    assert str(pdfa[0].OutputConditionIdentifier)


def test_xmp_identifies_pdfa_3b(pdf):
    xmp = pdf.open_metadata()
    assert xmp.get("pdfaid:part") == "3"
    assert xmp.get("pdfaid:conformance") == "B"
    assert xmp.get("dc:title")


def _fonts(pdf):
    seen = {}
    for page in pdf.pages:
        stack = [page.Resources]
        while stack:
            res = stack.pop()
            for _, font in (res.get("/Font") or {}).items():
                seen[font.objgen] = font
            for _, xobj in (res.get("/XObject") or {}).items():
                if xobj.get("/Subtype") == "/Form" and "/Resources" in xobj:
                    stack.append(xobj.Resources)
    return list(seen.values())


def test_every_font_is_embedded(pdf):
    fonts = _fonts(pdf)
    assert fonts
    for font in fonts:
        desc = font.DescendantFonts[0].FontDescriptor if font.Subtype == "/Type0" else font.get("/FontDescriptor")
        assert desc is not None, f"font {font.get('/BaseFont')} has no descriptor"
        assert any(k in desc for k in ("/FontFile", "/FontFile2", "/FontFile3")), (
            f"{font.get('/BaseFont')} not embedded"
        )


def test_no_javascript(pdf):
    assert "/JavaScript" not in (pdf.Root.get("/Names") or {})
    assert "/AA" not in pdf.Root and "/JS" not in (pdf.Root.get("/OpenAction") or {})
    for obj in pdf.objects:
        if isinstance(obj, pikepdf.Dictionary) or isinstance(obj, pikepdf.Stream):
            assert "/JS" not in obj and obj.get("/S") != "/JavaScript", obj.objgen
    assert not pdf.is_encrypted


def test_results_json_is_an_associated_file(pdf):
    af = pdf.Root.AF
    assert len(af) == 1
    spec = af[0]
    assert spec.Type == "/Filespec" and str(spec.F) == "results.json" and str(spec.UF) == "results.json"
    assert spec.AFRelationship == "/Data"
    stream = spec.EF.F
    assert stream.Subtype == "/application/json" and stream.Type == "/EmbeddedFile"
    assert int(stream.Params.Size) == len(stream.read_bytes())
    names = list(pdf.Root.Names.EmbeddedFiles.Names)
    assert names[0] == "results.json" and names[1].objgen == spec.objgen
