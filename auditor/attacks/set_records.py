"""The records of an adversarial set: what it is made from (:class:`SetData`), where and how
(:class:`SetRun`), and the finished set (:class:`GeneratedSet`) that
:func:`auditor.attacks.sets.build_adversarial_set` returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from auditor.data.stream import PngImages
from auditor.result_records import AttackSetMeta


@dataclass(frozen=True)
class GeneratedSet:
    """A finished adversarial set (images in the input order) and how it was obtained (cache key, timing)."""

    #: (N, 1, H, W) float32, multiples of 1/255; read lazily from the cache (:class:`PngImages`)
    #: when the clean images were lazy
    images: np.ndarray | PngImages
    key: str
    dir: Path
    params: dict[str, Any]
    label: str
    epsilon: float
    cache_hit: bool
    seconds: float
    backend: str | None  #: style backend (STM), else None
    attack: str = ""
    files: tuple[str, ...] = ()  #: PNG paths relative to ``dir``
    notes: tuple[str, ...] = ()
    device: str = ""
    precision: str = ""
    batches_computed: int = 0
    batches_loaded: int = 0
    surrogate_rows: int = 0
    #: the largest L-inf distance of any image from its clean original
    linf_max: float = 0.0
    #: what the attack recorded per image (a query attack: ``queries`` used and ``fooled``), or None
    per_image: Mapping[str, list] | None = None
    #: cached batches that failed their integrity check and were recomputed (one line each)
    warnings: tuple[str, ...] = ()
    #: only some batches were asked for (``only_batches``): no index was written
    partial: bool = False
    #: the perturbation statistics computed on the builder's walk of a whole set
    #: (:class:`~auditor.attacks.perturbation.PerturbationStats`), None for a shard or a set built elsewhere
    perturbation: Mapping[str, float] | None = None

    def recomputed(self, warnings: tuple[str, ...] | list[str]) -> "GeneratedSet":
        """This set with ``warnings`` (batches that were built again, by this walk or by workers) put before its own,
        and no longer a cache hit."""
        return replace(self, warnings=tuple(warnings) + self.warnings, cache_hit=False)

    def meta(self, name: str, surrogate: Mapping[str, Any], seconds_per_image: float | None) -> AttackSetMeta:
        """The set's entry in results.json ``extras.adversarial_sets`` as the scan condition ``name``, made on the
        model whose identity is ``surrogate``; ``seconds_per_image`` as the stage clock measured it (else this
        run's average, None on a cache hit)."""
        return AttackSetMeta(
            name=name,
            key=self.key,
            dir=str(self.dir),
            cache_hit=self.cache_hit,
            seconds=round(self.seconds, 2),
            seconds_per_image=seconds_per_image
            or (None if self.cache_hit else round(self.seconds / max(len(self.images), 1), 4)),
            backend=self.backend,
            cache_warnings=tuple(self.warnings),
            style_diversity=self.params.get("style_diversity"),
            surrogate=surrogate,
            params={k: v for k, v in self.params.items() if not k.startswith("mask_pool")},
        )


@dataclass(frozen=True)
class SetData:
    """The clean images a set is made from and what identifies them in its cache key."""

    #: ``(N, 1, H, W)`` float32 in ``[0, 1]``: an array or a :class:`~auditor.data.stream.LazyImages`
    images: Any
    labels: Any  #: target class indices, one per image
    names: list[str]  #: the source file names (kept for the PNGs)
    manifest_sha256: str  #: the data set's manifest SHA-256


@dataclass(frozen=True)
class SetRun:
    """Where and how a set is made: the cache folder, the seed, the batch size, the device and the precision."""

    cache_dir: str | Path
    seed: int
    batch_size: int = 8
    device: Any = None
    precision: str = "fp32"
    #: the scan's temporary folder (:class:`~auditor.data.spill.ScanScratch`): a whole lazy set's verified levels
    #: are spilled there and read back by the scan's later passes; None keeps every pass on the PNGs
    scratch: Any = None
