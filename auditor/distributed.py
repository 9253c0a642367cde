"""Scale-out of adversarial-set generation on Ray (https://docs.ray.io), an existing distributed engine.

The unit of work is one batch of a set (what :func:`auditor.attacks.sets.build_adversarial_set`
already makes resumable). Each Ray task loads the surrogate itself and computes a shard of
batches (``only_batches``), writing them into the shared cache folder; the driver then loads
the finished set (a cache hit per batch) and writes its index. Requirements:

* ``pip install "xray-audit[distributed]"`` (Ray) on every node;
* ``--cache-dir`` on a file system every node sees (NFS, a mounted bucket, ...), and the
  surrogate checkpoint(s) at the same path on every node;
* ``--ray-address auto`` (an existing cluster) or ``local`` (a local Ray instance; useful on one
  big machine and in tests).

Nothing here schedules work by itself: Ray places the tasks, retries failed ones
(``max_retries``), and an interrupted run resumes from the batches already on disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from auditor.attacks.set_records import SetData, SetRun
from auditor.data.stream import LazyImages
from auditor.errors import UsageError
from auditor.types import ModelSpec


def _init_ray(address: str, num_cpus: int | None):
    try:
        import ray
    except ImportError:
        raise UsageError("--ray-address needs Ray: pip install 'xray-audit[distributed]'") from None
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if address == "local":
            if num_cpus:
                kw["num_cpus"] = num_cpus
            ray.init(**kw)
        else:
            ray.init(address=address, **kw)
    return ray


@dataclass(frozen=True)
class SurrogateRecipe:
    """What a Ray task needs to build the surrogate itself: the ``--surrogate`` text, and the target's contract
    and path (for ``--surrogate target``)."""

    spec: str
    target_spec: ModelSpec
    target_path: str | None = None

    def load(self, device: Any = "cpu"):
        """The surrogate, read here (:func:`auditor.models.surrogate.load_surrogate`)."""
        from auditor.models.surrogate import load_surrogate

        return load_surrogate(self.spec, self.target_spec, self.target_path, device)


def _shard_worker(
    recipe: SurrogateRecipe,
    attack_name: str,
    params: dict,
    data: SetData,
    run: SetRun,
    shard: list[int],
    threads: int,
) -> list[str]:
    """One Ray task: load the surrogate here and compute the batches of ``shard`` of the set that ``data`` and
    ``run`` (the records the single-process path builds with) describe; returns the cache warnings."""
    import torch

    from auditor.attacks.sets import build_adversarial_set

    torch.set_num_threads(max(1, threads))
    aset = build_adversarial_set(attack_name, params, recipe.load("cpu"), data, run, only_batches=set(shard))
    return list(aset.warnings)


def build_set_on_ray(
    attack_name: str,
    params: dict[str, Any],
    surrogate,
    recipe: SurrogateRecipe,
    data: SetData,
    run: SetRun,
    *,
    address: str = "local",
    workers: int | None = None,
    threads_per_worker: int = 1,
    progress: Callable[[int], None] | None = None,
):
    """Build one adversarial set with its batches spread over Ray tasks; returns the finished set.

    ``data`` and ``run`` are the records :func:`auditor.attacks.sets.build_adversarial_set` takes in a single
    process (the set is made on the CPU); every task receives the same two. ``surrogate`` is the driver's own
    copy (used to assemble the set and for the cache key, which is the same on every worker because it depends
    only on content); each task builds its own from ``recipe``.
    """
    from auditor.attacks.cache_layout import SetLayout
    from auditor.attacks.sets import build_adversarial_set

    run = replace(run, device="cpu")
    if not isinstance(data.images, LazyImages):
        data = replace(data, images=np.asarray(data.images))
    data = replace(data, labels=np.asarray(data.labels), names=list(data.names))
    n_batches = math.ceil(len(data.images) / run.batch_size)
    # the batches not yet in the cache (the driver's own key; nothing is computed or verified here):
    # only they go to Ray tasks, so a finished set starts no worker (and loads no surrogate there)
    probe = build_adversarial_set(attack_name, params, surrogate, data, run, only_batches=set())
    layout = SetLayout(Path(probe.dir))
    todo = [b for b in range(n_batches) if not layout.marker(b).is_file()]
    del probe
    worker_warnings = (
        _run_shards(
            attack_name,
            params,
            recipe,
            data,
            replace(run, scratch=None),  # a shard writes PNGs only; the driver's walk below spills the set
            todo,
            address=address,
            workers=workers,
            threads_per_worker=threads_per_worker,
            progress=progress,
        )
        if todo
        else []
    )
    aset = build_adversarial_set(attack_name, params, surrogate, data, run, progress=progress)
    if worker_warnings:
        aset = aset.recomputed(worker_warnings)
    return aset


def _run_shards(
    attack_name: str,
    params: dict[str, Any],
    recipe: SurrogateRecipe,
    data: SetData,
    run: SetRun,
    todo: list[int],
    *,
    address: str,
    workers: int | None,
    threads_per_worker: int,
    progress: Callable[[int], None] | None,
) -> list[str]:
    """Compute the batches ``todo`` of a set in Ray tasks (written into the cache); returns their cache warnings."""
    ray = _init_ray(address, workers)
    n_workers = max(1, min(workers or int(ray.available_resources().get("CPU", 1)), len(todo)))
    shards = [todo[k::n_workers] for k in range(n_workers)]
    # max_calls=1: a worker process that loaded torch and the surrogate exits after its shard, so the
    # evaluation tasks that follow run in fresh workers that never import torch (~1 GB less per worker)
    remote = ray.remote(num_cpus=threads_per_worker, max_retries=2, max_calls=1)(_shard_worker)
    # one copy of the set's records in the object store; a lazy image set travels as its file list and each
    # task reads the images it attacks
    data_ref, run_ref = ray.put(data), ray.put(run)
    refs = [
        remote.remote(recipe, attack_name, params, data_ref, run_ref, shard, threads_per_worker) for shard in shards
    ]
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        if progress:
            progress(0)
    return [w for ws in ray.get(refs) for w in ws]  # re-raises a worker's error here
