"""What every stage of one scan reads: :class:`ScanContext` (target, options, reporter, command, and the two
logs the stages append to), and the scan's images once loaded, :class:`LoadedData`.

The stages (:mod:`auditor.scan.data`, :mod:`~auditor.scan.attack`, :mod:`~auditor.scan.defense`,
:mod:`~auditor.scan.detect`, :mod:`~auditor.scan.evaluate`, :mod:`~auditor.scan.probes`,
:mod:`~auditor.scan.plan`) take the context and their inputs (the loaded data, the sets, the factories of
:mod:`auditor.scan.factories`) as arguments and return typed results; the orchestrator
(:mod:`auditor.scan.pipeline`) passes each stage's result on. None of them imports the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from auditor.data.spill import ScanScratch
from auditor.data.stream import SampleImages
from auditor.evaluation import Throughput
from auditor.progress import Reporter
from auditor.scan.options import ScanOptions
from auditor.types import Skipped


@dataclass(frozen=True)
class LoadedData:
    """The images of a scan (decoded on access, see :mod:`auditor.data.stream`), their labels and identity."""

    images: SampleImages
    y: np.ndarray
    samples: Sequence  #: the :class:`~auditor.data.index.SampleIndex` of the scored images
    groups: list
    info: dict[str, Any]
    #: the file of each scored row, for error messages
    names: Sequence[str] = ()


@dataclass(frozen=True)
class InputTarget:
    """What the data stage needs of a target when there is no ONNX model (``xray-audit attack``): a spec
    (classes, input size) and a path naming it."""

    spec: Any
    path: str


@dataclass(frozen=True)
class ScanContext:
    """Target, options, reporter and command of one scan, and the two logs its stages append to: what could not
    run (``skipped``) and the images per second of every stage (``throughput``)."""

    target: Any
    options: ScanOptions
    reporter: Reporter = field(default_factory=lambda: Reporter(quiet=True))
    command: str = ""
    #: what could not run (``--strict`` turns these into exit 1 once the reports are written)
    skipped: list[Skipped] = field(default_factory=list)
    #: images per second of every stage, per model path (results.json ``environment.seconds_per_stage``)
    throughput: dict[str, Throughput] = field(default_factory=dict)
    #: the scan's temporary folder: the verified levels of its cached sets, read back by the later passes
    #: (:mod:`auditor.data.spill`); removed when the scan ends
    scratch: ScanScratch = field(default_factory=ScanScratch)

    def skip(self, name: str, reason: str, kind: str = "attack") -> None:
        """Warn and record a skip."""
        self.reporter.warn(f"skipped {name}: {reason}")
        self.skipped.append(Skipped(name, reason, kind))

    def clock(self, model_path: str) -> Throughput:
        """The throughput record of ``model_path`` (created on first use)."""
        return self.throughput.setdefault(model_path, Throughput())
