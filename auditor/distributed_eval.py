"""Evaluation of a condition spread over Ray tasks (https://docs.ray.io), with ``--ray-address``.

A condition (clean, an adversarial set, a defense on either) is cut into shards of whole
batches; each Ray task opens the ONNX model itself (once per worker process), reads its shard
of images from the shared data path or the shared ``--cache-dir`` (the image sources of
:mod:`auditor.data.stream` travel as file lists, never as pixels), applies the defense and
returns the class probabilities. Shards start on a batch boundary and are evaluated with the
same batch size as a single process, so the concatenated outcomes equal a single-process run.

Requirements as for set building (:mod:`auditor.distributed`): Ray on every node, the data
folder, the model and the cache at the same paths on every node.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from auditor.distributed import _init_ray
from auditor.errors import NonFiniteOutput

#: shards per worker and condition (a few, so a slow node does not hold up the rest)
SHARDS_PER_WORKER = 2
_MODELS: dict[tuple[str, str], Any] = {}  #: classifiers opened by this worker process


class NotDistributable(Exception):
    """The condition's images or defense cannot be serialised for Ray; the caller evaluates it locally."""


def _worker_model(path: str, spec_dict: dict, threads: int):
    """The classifier ``path`` with ``spec_dict`` (the driver's spec), opened once per worker process."""
    import json

    key = (path, json.dumps(spec_dict, sort_keys=True))
    if key not in _MODELS:
        from auditor.models.onnx import OnnxClassifier
        from auditor.types import ModelSpec

        _MODELS[key] = OnnxClassifier(path, spec=ModelSpec.from_dict(spec_dict), device="cpu", threads=threads)
    return _MODELS[key]


def _shard_task(
    path: str, spec_dict: dict, images, start: int, stop: int, batch_size: int, transform, threads: int
) -> tuple[np.ndarray, tuple[int, ...]]:
    """One Ray task: probabilities of images ``start:stop`` and the rows (shard-relative) with non-finite outputs."""
    from auditor.data.stream import LazyImages
    from auditor.evaluation import predict_stream

    model = _worker_model(path, spec_dict, threads)
    shard = images.subset(range(start, stop)) if isinstance(images, LazyImages) else images[start:stop]
    try:
        return predict_stream(model, shard, batch_size, transform=transform), ()
    except NonFiniteOutput as exc:
        return np.zeros((stop - start, model.spec.num_classes)), exc.rows


def shard_bounds(n: int, batch_size: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` (at most) contiguous ranges covering ``n`` images, each a whole number of batches."""
    batches = math.ceil(n / batch_size) if n else 0
    per = max(1, math.ceil(batches / max(1, shards)))
    return [(b * batch_size, min(n, (b + per) * batch_size)) for b in range(0, batches, per)]


def predict_on_ray(
    model,
    images,
    batch_size: int,
    transform: Callable | None = None,
    *,
    address: str = "local",
    workers: int | None = None,
    threads_per_worker: int = 1,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``(N, K)`` probabilities of ``model`` on ``images`` (``transform`` first), computed by Ray tasks.

    Raises :class:`NonFiniteOutput` with global row indices, as the single-process path does.
    """
    ray = _init_ray(address, workers)
    n = len(images)
    k = model.spec.num_classes
    if n == 0:
        return np.zeros((0, k))
    n_workers = max(1, workers or int(ray.available_resources().get("CPU", 1)))
    bounds = shard_bounds(n, batch_size if model.spec.dynamic_batch else 1, n_workers * SHARDS_PER_WORKER)
    remote = ray.remote(num_cpus=threads_per_worker, max_retries=2)(_shard_task)
    try:
        images_ref = ray.put(images)
        transform_ref = ray.put(transform)
    except Exception as exc:  # e.g. a defense holding an ONNX Runtime session
        raise NotDistributable(f"cannot send to Ray tasks ({type(exc).__name__}: {str(exc)[:120]})") from None
    spec = model.spec.to_dict()
    refs = [
        remote.remote(str(model.path), spec, images_ref, a, b, batch_size, transform_ref, threads_per_worker)
        for a, b in bounds
    ]
    pending = list(refs)
    sizes = {r: b - a for r, (a, b) in zip(refs, bounds)}
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        if progress:
            progress(sum(sizes[r] for r in done))
    try:
        parts = ray.get(refs)
    except ray.exceptions.RayTaskError as exc:  # a task's own error, as the single-process path raises it
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from None
        raise
    bad = [a + r for (a, _), (_, rows) in zip(bounds, parts) for r in rows]
    if bad:
        raise NonFiniteOutput(
            f"{model.path}: the model returned NaN or infinite outputs for {len(bad)} of "
            f"{n} image(s) (first: row {bad[0]})",
            rows=tuple(bad),
        )
    return np.concatenate([p for p, _ in parts], axis=0)
