"""report.html in a real browser: Debian's headless Chromium, driven by playwright's Python client.

At a desktop width (1280 px) and a phone width (375 px): nothing overflows horizontally (the
document, every table and everything inside a table), the console stays free of errors, and the
page makes no network request. A full-page screenshot of each width is kept in
``test-artifacts/browser/`` (gitignored) for a human to look at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report.wide_result import build_wide_result

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (pip install -e .[dev])")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium package is not installed (scripts/setup.sh installs it as root)"
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
WIDTHS = (1280, 375)
FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > width) out.push(['document', doc.scrollWidth, width]);
  for (const table of document.querySelectorAll('table')) {
    const name = table.id || table.className || 'table';
    if (table.scrollWidth > table.clientWidth + 1) out.push([name, 'scrolls', table.scrollWidth, table.clientWidth]);
    for (const el of [table, ...table.querySelectorAll('*')]) {
      const r = el.getBoundingClientRect();
      if (r.width > 0 && (r.right > width + 0.5 || r.left < -0.5))
        out.push([name, el.tagName, (el.textContent || '').trim().slice(0, 40), Math.round(r.left), Math.round(r.right)]);
    }
  }
  return out.slice(0, 20);
}"""


@pytest.fixture(scope="module")
def report_url(tmp_path_factory):
    from auditor.report.html import render_html

    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(render_html(build_wide_result()), encoding="utf-8")
    return path.as_uri()


@pytest.mark.parametrize("width", WIDTHS)
def test_report_in_headless_chromium(report_url, width, tmp_path):
    console, requests = [], []
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": width, "height": 900},
            offline=True,
        )
        try:

            def route(r):
                if r.request.url != report_url:
                    requests.append(r.request.url[:120])
                    return r.abort()
                return r.continue_()

            context.route("**/*", route)
            page = context.new_page()
            page.on(
                "console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
            )
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            page.on(
                "request",
                lambda r: None if r.url in (report_url,) or r.url.startswith("data:") else requests.append(r.url),
            )
            page.goto(report_url, wait_until="load")
            assert page.evaluate("document.querySelectorAll('table').length") > 10
            overflow = page.evaluate(OVERFLOW)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"report-{width}px.png"), full_page=True)
        finally:
            context.close()
    assert not overflow, overflow
    assert not console, console
    assert not requests, requests
    assert (ARTIFACTS / f"report-{width}px.png").stat().st_size > 10_000
