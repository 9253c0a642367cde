"""Shared fixtures: the real chest X-ray folder (skipped when absent) and tiny models."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CXR = Path(os.environ.get("XRAY_AUDIT_SHARED", ROOT.parent / "shared")) / "data" / "cxr"

sys.path.insert(0, str(Path(__file__).resolve().parent))

# scans that name no --cache-dir (CLI or ScanOptions) use $XRAY_AUDIT_CACHE: never the user's own cache in tests
os.environ["XRAY_AUDIT_CACHE"] = tempfile.mkdtemp(prefix="xray-audit-test-cache-")
atexit.register(shutil.rmtree, os.environ["XRAY_AUDIT_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def shared_cxr() -> Path:
    """``../shared/data/cxr``; the test is skipped (with the reason) when it is absent."""
    if not (SHARED_CXR / "MANIFEST.csv").is_file():
        pytest.skip(f"real chest X-ray set not present at {SHARED_CXR}")
    return SHARED_CXR
