"""Signed reports (PAdES, pyHanko) and ``xray-audit verify``: a valid report passes, each tampered copy fails."""

from __future__ import annotations

import datetime as dt
import io
import json
import re

import pytest
from click.testing import CliRunner

from auditor.cli import cli
from auditor.report.jsonfmt import results_digest

pytest.importorskip("pyhanko", reason="pyhanko is a dependency of report signing (pip install -e .)")
pikepdf = pytest.importorskip("pikepdf", reason="pikepdf is a dev dependency (pip install -e .[dev])")

SIGNER = "Dr. Test Signer"


def _keypair(tmp, stem: str, common_name: str, passphrase: bytes | None = None) -> dict:
    """A self-signed RSA key and certificate (PEM), and the same as a PKCS#12 bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = {k: tmp / f"{stem}.{k}" for k in ("key", "cert", "p12")}
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    paths["p12"].write_bytes(pkcs12.serialize_key_and_certificates(stem.encode(), key, cert, None, enc))
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    return {"auditor": _keypair(tmp, "auditor", SIGNER, b"s3cret"), "mallory": _keypair(tmp, "mallory", "Mallory")}


def _signing(k: dict):
    from auditor.report.sign import load_signing

    return load_signing(k["key"], k["cert"])


def _quick_pdf(result, edit=None) -> bytes:
    """The report PDF without its figures (faster; verify reads the text and the attachment only)."""
    from auditor.report.html import TEMPLATE, environment, label_cells
    from auditor.report.html_context import build_context
    from auditor.report.pdf import html_to_pdf

    html = label_cells(environment().get_template(TEMPLATE).render(**build_context(result, with_figures=False)))
    return html_to_pdf(edit(html) if edit else html, result)


@pytest.fixture(scope="module")
def unsigned(plain_result) -> bytes:
    return _quick_pdf(plain_result)


@pytest.fixture(scope="module")
def signed(plain_result, keys) -> bytes:
    """The full report, signed the way ``report --sign-key`` signs it."""
    from auditor.report.pdf import PdfRenderer

    return PdfRenderer().render(plain_result, signing=_signing(keys["auditor"]))


def _verify(tmp_path, data: bytes, *args: str):
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    r = CliRunner().invoke(cli, ["verify", str(path), *args])
    return r.exit_code, r.output.strip()


def test_signed_report_names_its_signer_and_verifies(tmp_path, signed, keys, plain_result):
    from pypdf import PdfReader

    text = " ".join((p.extract_text() or "") for p in PdfReader(io.BytesIO(signed)).pages)
    when = re.search(r"by " + re.escape(SIGNER) + r" on (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", " ".join(text.split()))
    assert when, "the sign-off section names the signer and the signing time"
    code, out = _verify(tmp_path, signed, "--cert", keys["auditor"]["cert"])
    assert code == 0, out
    assert out.startswith(f"valid: signed by {SIGNER} on {when.group(1)} UTC (matches --cert)")
    assert results_digest(plain_result)[:16] in out
    code, out = _verify(tmp_path, signed)
    assert code == 0 and "signer not checked" in out, out


def test_signature_is_an_incremental_pades_update_keeping_pdfa(signed, plain_result):
    pdf = pikepdf.open(io.BytesIO(signed))
    fields = [f for f in pdf.Root.AcroForm.Fields if f.get("/FT") == "/Sig"]
    assert len(fields) == 1
    sig = fields[0].V
    assert sig.SubFilter == "/ETSI.CAdES.detached" and sig.Filter == "/Adobe.PPKLite"
    assert int(fields[0].get("/F", 0)) & 4, "the (invisible) signature widget is printable, as PDF/A requires"
    rect = [float(v) for v in fields[0].Rect]
    assert "/AP" in fields[0] or (rect[2] - rect[0]) * (rect[3] - rect[1]) == 0  # PDF/A: an appearance, or no area
    # one revision appended: the PDF/A-3b file WeasyPrint wrote is a prefix of the signed file
    assert signed.count(b"%%EOF") == 2
    xmp = pdf.open_metadata()
    assert xmp.get("pdfaid:part") == "3" and xmp.get("pdfaid:conformance") == "B"
    assert [str(f.F) for f in pdf.Root.AF] == ["results.json"]


def test_unsigned_report_is_valid_and_says_unsigned(tmp_path, unsigned):
    code, out = _verify(tmp_path, unsigned)
    assert code == 0, out
    assert out.startswith("valid: unsigned;")
    code, out = _verify(tmp_path, unsigned, "--cert", __file__)  # not a certificate
    assert code == 3 and "not a PEM or DER certificate" in out


def test_unsigned_report_with_cert_is_invalid(tmp_path, unsigned, keys):
    code, out = _verify(tmp_path, unsigned, "--cert", keys["auditor"]["cert"])
    assert code == 1 and "unsigned" in out, out


def _attachment_stream(pdf):
    return pdf.Root.AF[0].EF.F


def test_one_byte_changed_in_the_attachment_of_a_signed_report(tmp_path, signed):
    pdf = pikepdf.open(io.BytesIO(signed))
    raw = _attachment_stream(pdf).read_raw_bytes()
    at = signed.find(raw)
    assert at > 0
    i = at + len(raw) // 2
    tampered = signed[:i] + bytes([signed[i] ^ 0x01]) + signed[i + 1 :]
    code, out = _verify(tmp_path, tampered)
    assert code == 1, out
    assert out.startswith("invalid:") and "signed bytes were changed" in out and len(out.splitlines()) == 1


def test_one_byte_changed_in_the_attachment_of_an_unsigned_report(tmp_path, unsigned):
    pdf = pikepdf.open(io.BytesIO(unsigned))
    stream = _attachment_stream(pdf)
    data = stream.read_bytes()
    i = data.index(b'"accuracy": 0.') + len(b'"accuracy": 0.')
    changed = data[:i] + (b"9" if data[i : i + 1] != b"9" else b"8") + data[i + 1 :]
    assert len(changed) == len(data) and json.loads(changed)  # one byte, still valid JSON
    stream.write(changed)
    out_buf = io.BytesIO()
    pdf.save(out_buf)
    code, out = _verify(tmp_path, out_buf.getvalue())
    assert code == 1, out
    assert "results.json was changed" in out


def test_one_number_changed_in_the_page_text(tmp_path, plain_result):
    original = 'id="clean-accuracy">85.0%<'

    def edit(html: str) -> str:
        assert original in html
        return html.replace(original, 'id="clean-accuracy">95.0%<')

    code, out = _verify(tmp_path, _quick_pdf(plain_result, edit))
    assert code == 1, out
    assert "page text disagrees" in out and "95.0%" in out and "85.0%" in out


def test_resigned_with_another_key(tmp_path, unsigned, signed, keys):
    from auditor.report.sign import sign_pdf

    mallory = sign_pdf(unsigned, _signing(keys["mallory"]))
    code, out = _verify(tmp_path, mallory, "--cert", keys["auditor"]["cert"])
    assert code == 1 and "signed by Mallory, not by the holder of the certificate" in out, out
    code, out = _verify(tmp_path, mallory)  # without --cert the copy is intact: it is Mallory's own signature
    assert code == 0 and "signed by Mallory" in out, out
    # a second signature appended to the auditor's signed report changes the document after it was signed
    countersigned = sign_pdf(signed, _signing(keys["mallory"]))
    code, out = _verify(tmp_path, countersigned)
    assert code == 1 and f"changed after {SIGNER} signed it (later signed by Mallory)" in out, out


def test_unreadable_pdf_exits_3(tmp_path, unsigned):
    code, out = _verify(tmp_path, b"not a pdf at all")
    assert code == 3 and "not a PDF file" in out
    code, out = _verify(tmp_path, unsigned[:1000])
    assert code in (1, 3) and out.startswith(("error:", "invalid:")), out


def test_report_command_signs_with_a_pkcs12_bundle(tmp_path, plain_result, keys, monkeypatch):
    from auditor.report.jsonfmt import results_json

    src = tmp_path / "in" / "results.json"
    src.parent.mkdir()
    src.write_text(results_json(plain_result))
    monkeypatch.setenv("XRAY_AUDIT_TEST_PASS", "s3cret")
    out_dir = tmp_path / "out"
    args = ["report", str(src), "--out", str(out_dir), "--format", "pdf", "--sign-p12", keys["auditor"]["p12"]]
    r = CliRunner().invoke(cli, [*args, "--sign-passphrase-env", "XRAY_AUDIT_TEST_PASS"])
    assert r.exit_code in (0, 1), r.output  # 1: the fixture has a failing gate
    code, out = _verify(tmp_path, (out_dir / "report.pdf").read_bytes(), "--cert", keys["auditor"]["cert"])
    assert code == 0 and SIGNER in out, out
    r = CliRunner().invoke(cli, [*args, "--sign-passphrase-env", "XRAY_AUDIT_NO_SUCH_VAR"])
    assert r.exit_code == 2 and "is not set" in r.output
    r = CliRunner().invoke(cli, [*args, "--sign-cert", keys["auditor"]["cert"]])
    assert r.exit_code == 2 and "--sign-p12 replaces" in r.output


def test_scan_signs_its_pdf_and_refuses_a_bad_key_before_scanning(tmp_path, keys):
    from tests.onnx_factory import make_classifier, write_image_folder

    data = write_image_folder(tmp_path / "data", n_per_class=2)
    model = make_classifier(tmp_path / "m.onnx", class_names=["normal", "pneumonia", "pneumothorax"])
    base = ["scan", str(model), "--data", str(data), "--image-size", "32", "--n-boot", "20", "-q", "--format", "pdf"]
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "bad"), "--sign-key", keys["auditor"]["cert"]])
    assert r.exit_code == 2 and "--sign-key and --sign-cert go together" in r.output
    assert not (tmp_path / "bad").exists()  # refused before the scan ran
    signed = ["--sign-key", keys["mallory"]["key"], "--sign-cert", keys["mallory"]["cert"]]
    r = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "out"), *signed])
    assert r.exit_code == 0, r.output
    code, out = _verify(tmp_path, (tmp_path / "out" / "report.pdf").read_bytes(), "--cert", keys["mallory"]["cert"])
    assert code == 0 and out.startswith("valid: signed by Mallory"), out
