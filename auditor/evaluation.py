"""Streaming evaluation: images -> (defense) -> model -> per-image outcomes, batch by batch.

An evaluated condition keeps only its outcomes (class probabilities, hence predictions) per
image; the images are decoded (or read back from the adversarial-set cache) a batch at a time
by the prefetching loader of :mod:`auditor.data.stream`, so decoding and the defense run on the
loader thread while the model infers the previous batch. Batches start at image 0 and hold
``batch_size`` images, exactly as :meth:`auditor.models.onnx.OnnxClassifier.predict_proba`
batches a whole array, so the outcomes equal those of the in-memory path.

:class:`Throughput` records images per second of every stage for results.json
(``environment.seconds_per_stage``).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from auditor.data.stream import PREFETCH, iter_batches
from auditor.errors import NonFiniteOutput


def predict_stream(
    model,
    images,
    batch_size: int,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: Callable[[int], None] | None = None,
    depth: int = PREFETCH,
) -> np.ndarray:
    """``(N, K)`` class probabilities of ``model`` on ``images`` (array or lazy), ``transform`` applied first.

    Raises :class:`NonFiniteOutput` with the rows (indices into ``images``) whose outputs were
    NaN or infinite, after every batch has run, like ``predict_proba`` on the whole array.
    """
    out: list[np.ndarray] = []
    bad: list[int] = []
    for start, batch in iter_batches(images, batch_size, depth, transform):
        try:
            out.append(model.predict_proba(batch, batch_size=batch_size))
        except NonFiniteOutput as exc:
            bad.extend(start + r for r in exc.rows)
            out.append(np.zeros((len(batch), model.spec.num_classes)))
        if progress:
            progress(len(batch))
    if bad:
        raise NonFiniteOutput(
            f"{model.path}: the model returned NaN or infinite outputs for {len(bad)} of "
            f"{len(images)} image(s) (first: row {bad[0]})",
            rows=tuple(bad),
        )
    return np.concatenate(out, axis=0) if out else np.zeros((0, model.spec.num_classes))


class Throughput:
    """Images and wall seconds per stage; ``as_dict()`` adds images per second.

    Stages nest: a block timed inside another (the clean inference inside the metrics of a model, the image
    read inside the data stage) counts its seconds to itself only, and the enclosing stage keeps the rest (its
    *exclusive* time). So the stages of one record partition the time of its outermost block: nothing is
    counted twice, and with the scan's outermost stage (``scan``, the orchestration between the others) no
    time is left outside a named stage.
    """

    def __init__(self) -> None:
        self._stages: dict[str, list[float]] = {}
        #: seconds of the finished inner blocks of each open block, innermost last
        self._open: list[float] = []

    def add(self, stage: str, images: int, seconds: float) -> None:
        """Count ``images`` processed in ``seconds`` towards ``stage``."""
        rec = self._stages.setdefault(stage, [0, 0.0])
        rec[0] += int(images)
        rec[1] += float(seconds)

    def timed(self, stage: str, images: int = 0):
        """Context manager adding the wall time of its block, less that of the blocks timed inside it, to ``stage``
        (``images`` counted only when the block ends without an exception)."""
        return _Timed(self, stage, images)

    @property
    def total_seconds(self) -> float:
        """Seconds of every stage together."""
        return sum(s for _, s in self._stages.values())

    def as_dict(self) -> dict[str, dict[str, float | None]]:
        """``{stage: {"images", "seconds", "images_per_second"}}`` (rate None without images or time)."""
        return {
            k: {
                "images": int(n),
                "seconds": round(s, 3),
                "images_per_second": round(n / s, 1) if s > 0 and n > 0 else None,
            }
            for k, (n, s) in self._stages.items()
        }


class _Timed:
    def __init__(self, owner: Throughput, stage: str, images: int) -> None:
        self.owner, self.stage, self.images = owner, stage, images

    def __enter__(self):
        self.owner._open.append(0.0)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        elapsed = time.perf_counter() - self.t0
        inner = self.owner._open.pop()
        self.owner.add(self.stage, 0 if exc_type is not None else self.images, elapsed - inner)
        if self.owner._open:
            self.owner._open[-1] += elapsed
        return False
