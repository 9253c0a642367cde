"""The state of one scan, built once and handed to every stage: :class:`ScanContext`.

The stages (:mod:`auditor.scan.data`, :mod:`~auditor.scan.attack`, :mod:`~auditor.scan.defense`,
:mod:`~auditor.scan.detect`, :mod:`~auditor.scan.evaluate`) are functions of the context; they
record skips on it and read the loaded data from it, and none of them imports the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from auditor.data.stream import SampleImages
from auditor.evaluation import Throughput
from auditor.progress import Reporter
from auditor.scan.options import ScanOptions
from auditor.types import Skipped


@dataclass
class LoadedData:
    """The images of a scan (decoded on access, see :mod:`auditor.data.stream`), their labels and identity."""

    images: SampleImages
    y: np.ndarray
    samples: Sequence  #: the :class:`~auditor.data.index.SampleIndex` of the scored images
    groups: list
    info: dict[str, Any]


@dataclass(frozen=True)
class InputTarget:
    """What the data stage needs of a target when there is no ONNX model (``xray-audit attack``): a spec
    (classes, input size) and a path naming it."""

    spec: Any
    path: str


_NOT_LOADED = object()


@dataclass
class ScanContext:
    """Target, options, reporter, skip list, timings and (once loaded) the data and surrogate of one scan."""

    target: Any
    options: ScanOptions
    reporter: Reporter = field(default_factory=lambda: Reporter(quiet=True))
    command: str = ""
    #: what could not run (``--strict`` turns these into exit 1 once the reports are written)
    skipped: list[Skipped] = field(default_factory=list)
    #: images per second of every stage, per model path (results.json ``environment.seconds_per_stage``)
    throughput: dict[str, Throughput] = field(default_factory=dict)
    #: what ``--precision auto`` measured and chose (set by the attack stage)
    precision_choice: dict[str, Any] | None = None
    #: the scan's images, set by :func:`auditor.scan.data.load_data`
    data: LoadedData | None = None
    #: file of each scored row, for error messages
    sample_names: list[str] = field(default_factory=list)
    #: seconds per image of each (surrogate source, attack) measured by the plan's probe (:mod:`auditor.scan.plan`)
    attack_rates: dict[tuple[str | None, str], float] = field(default_factory=dict)
    #: surrogates loaded so far, by their ``--surrogate`` text (None: could not be built, a skip)
    _surrogates: dict[str, Any] = field(default_factory=dict, repr=False)

    def skip(self, name: str, reason: str, kind: str = "attack") -> None:
        """Warn and record a skip."""
        self.reporter.warn(f"skipped {name}: {reason}")
        self.skipped.append(Skipped(name, reason, kind))

    def clock(self, model_path: str) -> Throughput:
        """The throughput record of ``model_path`` (created on first use)."""
        return self.throughput.setdefault(model_path, Throughput())


def load_scan_surrogate(ctx: ScanContext, spec: str | None = None):
    """The surrogate of the scan (or ``spec``, e.g. ``target`` for ``--whitebox``), or None (recorded as
    skipped, once) when it cannot be built.

    Read and converted once per scan (an ONNX target as ``--surrogate target`` means an ONNX→torch
    conversion with an agreement check); every caller gets its own deep copy, so the attack loop's
    in-place preparation (eval mode, memory format) never reaches the feature defense or BPDA.
    """
    import copy

    from auditor.models.convert import ConversionFailed
    from auditor.models.device import pick_device
    from auditor.models.surrogate import load_surrogate

    opt = ctx.options
    spec = spec or opt.surrogate
    cache = ctx._surrogates
    loaded = cache.get(spec, _NOT_LOADED)
    if loaded is _NOT_LOADED:
        try:
            loaded = load_surrogate(spec, ctx.target.spec, ctx.target.path, pick_device(opt.device))
        except ConversionFailed as exc:
            ctx.skip(f"surrogate {spec}", str(exc))
            loaded = None
        cache[spec] = loaded
    return None if loaded is None else copy.deepcopy(loaded)
