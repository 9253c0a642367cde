"""Shared fixtures: the real chest X-ray folder (skipped when absent) and tiny models."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
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


#: the classes of the scan fixture's data, target and surrogate unless a test names others
SCAN_CLASSES = ("normal", "pneumonia", "pneumothorax")


@dataclass(frozen=True)
class ScanSetup:
    """What a CLI scan test needs: a tiny image folder, a brightness ONNX target and a SmallCNN surrogate checkpoint.

    ``root`` is the setup's own temporary folder (outputs and caches go below it unless a test says otherwise).
    """

    root: Path
    data: Path
    target: Path
    surrogate: Path
    classes: tuple[str, ...]

    @staticmethod
    def write_surrogate(path: Path, classes, seed: int = 0, size: int = 32) -> Path:
        """A ``small_cnn`` checkpoint (grey, ``size`` px, unit scaling, logits) with torch's seed ``seed``; returns
        ``path``."""
        import torch

        from auditor.reference_models.registry import build_model, make_checkpoint
        from auditor.types import ModelSpec

        spec = ModelSpec(
            input_name="input", channels=1, height=size, width=size, scaling="unit", class_names=tuple(classes)
        )
        torch.manual_seed(seed)
        net = build_model("small_cnn", len(classes), 1).eval()
        torch.save(make_checkpoint(net, "small_cnn", len(classes), 1, spec.to_dict()), path)
        return path

    def args(
        self,
        out,
        *extra,
        target=None,
        surrogate=None,
        cache=None,
        n_boot: int = 20,
        formats: str = "json",
        quiet: bool = True,
    ) -> list[str]:
        """``scan TARGET --data DATA --out ROOT/out --surrogate SUR --cache-dir CACHE --n-boot N [-q] --format F EXTRA``.

        ``out`` below ``root`` unless absolute; ``cache`` defaults to ``root/cache``.
        """
        args = ["scan", target or self.target, "--data", self.data, "--out", self.root / out]
        args += ["--surrogate", surrogate or self.surrogate, "--cache-dir", cache or self.root / "cache"]
        args += ["--n-boot", n_boot, *(["-q"] if quiet else []), "--format", formats, *extra]
        return [str(a) for a in args]


@pytest.fixture(scope="session")
def scan_setup(tmp_path_factory):
    """Factory of :class:`ScanSetup`: ``scan_setup(name, classes=..., n_per_class=4, size=32, channels=1, ...)``.

    The data are ``size`` px brightness images (``onnx_factory.write_image_folder``), the target is
    ``onnx_factory.make_classifier`` (32 px, ``channels`` input channels) and the surrogate a seed-0 ``small_cnn``.
    """
    from onnx_factory import make_classifier, write_image_folder

    def make(
        name: str,
        classes=SCAN_CLASSES,
        n_per_class: int = 4,
        size: int = 32,
        channels: int = 1,
        patient_manifest: bool = False,
    ) -> ScanSetup:
        classes = tuple(classes)
        root = tmp_path_factory.mktemp(name)
        data = write_image_folder(
            root / "data", classes=classes, n_per_class=n_per_class, size=size, patient_manifest=patient_manifest
        )
        target = make_classifier(
            root / "target.onnx", channels=channels, num_classes=len(classes), class_names=list(classes)
        )
        surrogate = ScanSetup.write_surrogate(root / "surrogate.pt", classes)
        return ScanSetup(root, data, target, surrogate, classes)

    return make
