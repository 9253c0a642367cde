"""Adversarial sets: generate in batches, quantise to 8 bit, store in the cache and resume.

:func:`build_adversarial_set` attacks the images batch by batch, quantises each batch to 8-bit levels
within the budget (:func:`auditor.attacks.quantize.quantize`) and stores it in the cache of
:mod:`auditor.attacks.cache` (keys, PNG files, done-markers, integrity checks). Batch ``b`` is attacked
with a seed derived from ``(seed, b)``, so a resumed set is identical to an uninterrupted one. Loading a
batch (also on a full cache hit) re-checks it and the ε bound; a batch that fails is recomputed and the
set carries a warning (:attr:`~auditor.attacks.set_records.GeneratedSet.warnings`). The records live in
:mod:`auditor.attacks.set_records`, the perturbation statistics in :mod:`auditor.attacks.perturbation`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from auditor.attacks.cache import (
    CacheMismatch,
    _canonical,
    _digest,
    cache_request,
    output_names,
    read_batch,
    read_index,
    write_json,
    write_pngs,
)
from auditor.attacks.cache_layout import SetLayout, set_layout
from auditor.attacks.clean_digest import DigestCheck
from auditor.attacks.clean_digest import store as store_digest
from auditor.attacks.perturbation import image_norms
from auditor.attacks.quantize import budget_levels, level_difference, quantize
from auditor.attacks.set_records import GeneratedSet, SetData, SetRun
from auditor.attacks.stats_record import SetStats
from auditor.condition_ids import eps_name
from auditor.data.decode import from_levels
from auditor.data.stream import LazyImages, PngImages, prefetch
from auditor.errors import DataError, RuntimeFailure, UsageError

#: per-image L-inf, L2 and PSNR of a batch (:func:`~auditor.attacks.perturbation.image_norms`)
Norms = tuple[np.ndarray, np.ndarray, np.ndarray]


def batch_seed(seed: int, batch: int) -> int:
    """The attack seed of batch ``batch`` (independent of the batches run before it)."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(batch)]).generate_state(1)[0])


def eps_label(eps: float) -> str:
    """``8/255`` -> ``"8"``; other values keep two decimals (in 1/255 units): the set's folder in the cache."""
    return eps_name(eps)


# --------------------------------------------------------------------------- main API
def build_adversarial_set(
    attack_name: str,
    params: dict[str, Any],
    surrogate: Any,
    data: SetData,
    run: SetRun,
    progress: Callable[[int], None] | None = None,
    only_batches: "set[int] | None" = None,
    on_batch: Callable[[int, float], None] | None = None,
) -> GeneratedSet:
    """Attack ``data.images`` on ``surrogate`` in batches of ``run.batch_size``, or load the cached set.

    ``params`` go to :func:`auditor.attacks.registry.make_attack`
    (``epsilon``, ``mask_pool``/``mask_pool_labels`` for USMM, ``style_backend``/
    ``checkpoint_dir`` for STM, ...; :func:`auditor.scan.jobs.attack_jobs` lists them). ``progress(n)`` is
    called after every finished (or loaded) batch of ``n`` images; ``on_batch(n, seconds)`` after every batch
    *computed* (not loaded), with its wall time. ``only_batches`` (a shard of a
    distributed run, see :mod:`auditor.distributed`) computes just those batches
    and returns a *partial* set (``partial``, no index written; images
    of other batches are zero). When ``images`` is a :class:`~auditor.data.stream.LazyImages`,
    the set is built and verified batch by batch and its images come back as a
    :class:`~auditor.data.stream.PngImages` reading the cache (nothing is held in memory). Raises
    :class:`~auditor.attacks.style.StyleBackendUnavailable` before any work when
    the STM style backend cannot run.

    A whole set (not a shard) is walked once, the clean batches decoded and the cached batches' PNGs read and
    checked ahead on the loader threads (:func:`_walk_ahead`): each batch is used (or attacked) in order, its
    perturbation statistics are added (``perturbation``, see
    :class:`~auditor.attacks.perturbation.PerturbationStats`) and, when the key's image digest came from the
    cache's record, it is hashed to check that digest (:mod:`auditor.attacks.clean_digest`); a stored digest that
    does not match the pixels is replaced and the set built again under the right key.
    """
    aset = _build(attack_name, params, surrogate, data, run, progress, only_batches, on_batch)
    if isinstance(aset, str):  # the stored digest was wrong: now the memo holds the pixels' digest
        again = _build(attack_name, params, surrogate, data, run, progress, only_batches, on_batch)
        assert not isinstance(again, str)
        return again.recomputed((aset,))
    return aset


def _build(
    attack_name: str,
    params: dict[str, Any],
    surrogate: Any,
    data: SetData,
    run: SetRun,
    progress: Callable[[int], None] | None,
    only_batches: "set[int] | None",
    on_batch: Callable[[int, float], None] | None,
) -> GeneratedSet | str:
    """One walk of :func:`build_adversarial_set`; the warning text instead of a set when the stored digest of
    the clean images did not match them."""
    from auditor.attacks.registry import make_attack

    names, batch_size = data.names, run.batch_size
    lazy = isinstance(data.images, LazyImages)
    images, labels = _checked_inputs(data.images, data.labels, names, batch_size, lazy)
    params = dict(params)
    params.setdefault("precision", run.precision)
    if run.device is not None:
        params.setdefault("device", run.device)
    attack = make_attack(attack_name, surrogate, **params)
    request, key, unchecked = cache_request(
        attack,
        params,
        surrogate,
        images,
        labels,
        names,
        data.manifest_sha256,
        run.seed,
        batch_size,
        lazy,
        run.cache_dir,
    )
    state = _Run(
        attack,
        set_layout(run.cache_dir, key).dir,
        request,
        images,
        labels,
        data.manifest_sha256,
        run.seed,
        f"{attack.name}_eps{eps_label(attack.epsilon)}",
    )
    state.files = [f"{state.sub}/{p}" for p in output_names(list(names))]
    state.png_sha256 = [None] * len(state.files)
    t0 = time.perf_counter()
    index = read_index(state.dir, key, state.files)
    result = None if lazy else np.empty_like(images)
    n = images.shape[0]
    whole = only_batches is None
    # a whole walk decodes the clean batches and checks the cached ones ahead on the loader threads; a shard reads
    # just its own batches
    ahead = _walk_ahead(state, images, batch_size) if whole and lazy else None
    check = DigestCheck(images.shape) if whole and unchecked else None
    stats = SetStats(SetLayout(state.dir), whole)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    spill = _spill(run, n, size, state) if whole and lazy else None
    for b, start in enumerate(range(0, n, batch_size)):
        stop = min(n, start + batch_size)
        if only_batches is not None and b not in only_batches:
            if result is not None:
                result[start:stop] = 0.0
            continue
        clean, checked = next(ahead) if ahead is not None else (images[start:stop], None)
        if check is not None:
            check.add(clean)
        adv, levels, norms = _batch(state, b, start, stop, on_batch, clean, checked)
        if spill is not None:
            spill.write(start, levels)  # verified (or just written) levels, read back by the scan's later passes
        stats.add(clean, adv, norms)
        if result is not None:
            result[start:stop] = adv
        if progress:
            progress(stop - start)
    if check is not None:
        actual = check.hexdigest()
        store_digest(images, run.cache_dir, actual)  # checked: the memo for this scan, the record for the next
        if actual != request["images_sha256"]:
            if spill is not None:
                spill.abandon()
            return (
                "the stored digest of the clean images did not match their pixels (a file changed since it was "
                "stored?); the record was replaced and the set looked up under the images' own key"
            )
    if lazy:
        result = PngImages(state.dir, state.files, size, state.png_sha256)
        if spill is not None:
            result = spill.finish(result)  # each row checked on read, else read from this PNG path
    state.perturbation = stats.finish(request["images_sha256"], state.png_sha256, state.computed > 0, images, result)
    return _finish(state, key, index, result, time.perf_counter() - t0, only_batches, names, batch_size)


def _spill(run: SetRun, n: int, size: tuple[int, int], state: "_Run"):
    """A writer of the walk's verified levels into the scan's spill (:mod:`auditor.data.spill`), or None (no
    scan folder, or no room in it)."""
    if run.scratch is None:
        return None
    return run.scratch.spill(n, size)


@dataclass
class _Run:
    """The state of one :func:`build_adversarial_set` call: what it attacks, where it caches, what it did."""

    attack: Any
    dir: Path
    request: dict[str, Any]
    images: Any
    labels: np.ndarray
    manifest_sha256: str
    seed: int
    sub: str  #: the set's folder in the cache entry, ``<attack>_eps<e>``
    files: list[str] = field(default_factory=list)
    png_sha256: list[str | None] = field(default_factory=list)
    computed: int = 0
    loaded: int = 0
    linf_max: float = 0.0
    warnings: list[str] = field(default_factory=list)
    #: per batch, what the attack recorded per image (``batch_record``: a query attack's queries), or None
    records: dict[int, dict[str, list]] = field(default_factory=dict)
    #: the perturbation statistics of a whole set (:class:`~auditor.attacks.perturbation.PerturbationStats`)
    perturbation: dict[str, float] | None = None

    def per_image(self) -> dict[str, list]:
        """The batches' records joined in image order (empty when the attack records nothing)."""
        out: dict[str, list] = {}
        for b in sorted(self.records):
            for k, v in self.records[b].items():
                out.setdefault(k, []).extend(v)
        return out


def _checked_inputs(images, labels, names: list[str], batch_size: int, lazy: bool) -> tuple[Any, np.ndarray]:
    """``images`` (float32 unless lazy) and ``labels`` (int64) after checking their shapes; raises UsageError."""
    if not lazy:
        images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or images.shape[1] != 1:
        raise UsageError(f"images must be (N, 1, H, W), got {images.shape}")
    n = images.shape[0]
    if labels.shape != (n,) or len(names) != n:
        raise UsageError(f"{n} images need {n} labels and names, got {labels.shape[0]} and {len(names)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size {batch_size!r} must be a positive integer")
    return images, labels


def _walk_ahead(run: _Run, images, batch_size: int) -> Iterator[tuple[np.ndarray, Any]]:
    """Per batch of a whole walk, in order: the clean batch, decoded on a loader thread, and what
    :func:`_verified_batch` made of the cached batch there (its result, or the :class:`CacheMismatch`; None when
    the batch had no done-marker). Only these pure checks run ahead; the walk's state changes stay in order."""
    n, eps = images.shape[0], run.attack.epsilon

    def job(b: int, start: int) -> Callable[[], tuple[np.ndarray, Any]]:
        def go() -> tuple[np.ndarray, Any]:
            stop = min(n, start + batch_size)
            clean = np.asarray(images[start:stop], dtype=np.float32)
            marker = SetLayout(run.dir).marker(b)
            if not marker.exists():
                return clean, None
            try:
                return clean, _verified_batch(run.dir, marker, run.files[start:stop], clean, run.manifest_sha256, eps)
            except CacheMismatch as exc:
                return clean, exc

        return go

    return prefetch(job(b, s) for b, s in enumerate(range(0, n, batch_size)))


def _batch(
    run: _Run, b: int, start: int, stop: int, on_batch, clean: np.ndarray, checked: Any = None
) -> tuple[np.ndarray, np.ndarray, Norms]:
    """Batch ``b`` (rows ``start:stop``, clean images ``clean``) as float images, as their ``uint8`` levels and
    their per-image norms against ``clean`` (:func:`~auditor.attacks.perturbation.image_norms`, from the ε check's
    differences): loaded from the cache when it passes its checks (``checked``: their outcome when
    :func:`_walk_ahead` made them already), else attacked, quantised and written."""
    eps = run.attack.epsilon
    marker = SetLayout(run.dir).marker(b)
    batch_files = run.files[start:stop]
    levels = None
    if checked is not None or marker.exists():
        try:
            if isinstance(checked, CacheMismatch):
                raise checked
            levels, digests, norms = checked or _verified_batch(
                run.dir, marker, batch_files, clean, run.manifest_sha256, eps
            )
            record = _marker_record(marker, len(batch_files)) if hasattr(run.attack, "batch_record") else None
            if record is not None:
                run.records[b] = record
            run.loaded += 1
            _add_style_counts(run.attack, marker)
        except CacheMismatch as exc:
            run.warnings.append(f"{run.sub} batch {b}: {exc}; the batch was recomputed")
    if levels is None:
        levels, digests, norms = _attack_batch(run, b, start, stop, marker, on_batch, clean)
    run.png_sha256[start:stop] = digests
    run.linf_max = max(run.linf_max, _linf(norms))  # the float L-inf of exactly these levels and clean images
    return from_levels(levels), levels, norms


def _linf(norms: Norms) -> float:
    """The batch's float L-inf: the largest of its images'."""
    return float(norms[0].max()) if norms[0].size else 0.0


def _checked_norms(levels: np.ndarray, clean: np.ndarray, eps: float) -> Norms:
    """The ε check of ``levels`` against ``clean`` (:func:`level_difference`; raises DataError) and the per-image
    norms of the differences it formed."""
    return image_norms(level_difference(levels, clean, eps))


def _attack_batch(
    run: _Run, b: int, start: int, stop: int, marker: Path, on_batch, clean: np.ndarray
) -> tuple[np.ndarray, list[str], Norms]:
    """Attack batch ``b``, quantise it to 8-bit levels within the budget and write its PNGs and done-marker;
    returns the levels, the PNGs' SHA-256s and the per-image norms from the clean images."""
    import torch

    attack, eps = run.attack, run.attack.epsilon
    if not run.computed:
        attack.ensure_setup()  # heavy resources (style network) once, before the first computed batch
        run.dir.mkdir(parents=True, exist_ok=True)
        write_json(SetLayout(run.dir).request, run.request)
    tb = time.perf_counter()
    counts_before = _style_counts(attack)
    x_adv = (
        attack(torch.from_numpy(clean), torch.from_numpy(run.labels[start:stop]), seed=batch_seed(run.seed, b))
        .cpu()
        .numpy()
    )
    levels = quantize(x_adv, clean, eps)
    try:
        norms = _checked_norms(levels, clean, eps)
    except DataError as exc:  # cannot happen after quantize: a bug, not bad input
        raise RuntimeFailure(f"{attack.name}: quantised batch {b}: {exc}") from None
    batch_files = run.files[start:stop]
    digests = write_pngs(run.dir, batch_files, levels)
    batch_seconds = time.perf_counter() - tb
    record = attack.batch_record() if hasattr(attack, "batch_record") else None
    if record is not None:
        run.records[b] = record
    write_json(
        marker,
        {
            **({"record": record} if record is not None else {}),
            "batch": b,
            "files": batch_files,
            "png_sha256": digests,
            "clean_sha256": _digest(clean),
            "manifest_sha256": run.manifest_sha256,
            "epsilon_levels": budget_levels(eps),
            "linf_max": _linf(norms),
            "seconds": round(batch_seconds, 3),
            **_style_count_delta(attack, counts_before),
        },
    )
    if on_batch:
        on_batch(stop - start, batch_seconds)
    run.computed += 1
    return levels, digests, norms


#: the STM counters behind ``style_diversity`` (style copies, near-affine copies), kept per batch in its
#: done-marker so that a resumed or repaired set reports them over every batch, not only the recomputed ones
_STYLE_COUNTERS = ("style_rows", "near_affine_rows")


def _style_counts(attack) -> tuple[int, int] | None:
    if not all(isinstance(getattr(attack, c, None), int) for c in _STYLE_COUNTERS):
        return None
    style_rows, near_affine_rows = (int(getattr(attack, c)) for c in _STYLE_COUNTERS)
    return style_rows, near_affine_rows


def _style_count_delta(attack, before: tuple[int, int] | None) -> dict[str, int]:
    """This batch's style counters for its done-marker (nothing for attacks without them)."""
    after = _style_counts(attack)
    if before is None or after is None:
        return {}
    return {c: a - b for c, a, b in zip(_STYLE_COUNTERS, after, before)}


def _add_style_counts(attack, marker: Path) -> None:
    """Add a cached batch's style counters (from its done-marker) to the attack's, when both have them."""
    if _style_counts(attack) is None:
        return
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return
    counts = [done.get(c) if isinstance(done, dict) else None for c in _STYLE_COUNTERS]
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
        for c, v in zip(_STYLE_COUNTERS, counts):
            setattr(attack, c, getattr(attack, c) + v)


def _finish(
    run: _Run, key: str, index: dict | None, result, seconds: float, only_batches, names: list[str], batch_size: int
) -> GeneratedSet:
    """The set: from the index on a full cache hit, else as computed (the index written when the set is whole)."""
    from auditor import __version__

    attack, eps = run.attack, run.attack.epsilon
    backend = getattr(attack, "backend_name", None)
    files = tuple(run.files)
    if index is not None and run.computed == 0 and only_batches is None:  # a full cache hit
        return GeneratedSet(
            result,
            key,
            run.dir,
            index.get("params", {}),
            index.get("label", attack.label),
            eps,
            True,
            seconds,
            backend,
            attack.name,
            files,
            tuple(index.get("notes", ())),
            str(attack.device),
            attack.precision,
            0,
            run.loaded,
            0,
            run.linf_max,
            run.per_image() if run.records else None,
            perturbation=run.perturbation,
        )
    eff = _canonical(attack.params())
    out = GeneratedSet(
        result,
        key,
        run.dir,
        eff,
        attack.label,
        eps,
        False,
        seconds,
        backend,
        attack.name,
        files,
        tuple(attack.notes),
        str(attack.device),
        attack.precision,
        run.computed,
        run.loaded,
        attack.surrogate_rows,
        run.linf_max,
        run.per_image() if run.records else None,
        tuple(run.warnings),
        partial=only_batches is not None,
        perturbation=run.perturbation,
    )
    if only_batches is None:
        n = len(run.files)
        write_json(
            SetLayout(run.dir).index,
            {
                "key": key,
                "attack": attack.name,
                "label": attack.label,
                "epsilon": eps,
                "params": eff,
                "files": run.files,
                "names": list(names),
                "n": n,
                "batches": len(range(0, n, batch_size)),
                "linf_max": run.linf_max,
                "notes": list(attack.notes),
                "tool_version": __version__,
                "seconds_last_run": round(seconds, 3),
                "device": str(attack.device),
                "precision": attack.precision,
            },
        )
    return out


def _marker_record(marker: Path, n: int) -> dict[str, list]:
    """The per-image record a query attack stored with a cached batch; a missing or malformed one is a
    :class:`~auditor.attacks.cache.CacheMismatch` (the batch is recomputed)."""
    import json

    try:
        record = json.loads(marker.read_text(encoding="utf-8")).get("record")
    except (OSError, ValueError, AttributeError) as exc:
        raise CacheMismatch(f"unreadable done-marker ({exc})") from None
    if not isinstance(record, dict) or not all(isinstance(v, list) and len(v) == n for v in record.values()):
        raise CacheMismatch("the per-image record of the batch is missing or does not match its images")
    return record


def _verified_batch(
    set_dir: Path, marker: Path, files: list[str], clean: np.ndarray, manifest_sha256: str, eps: float
) -> tuple[np.ndarray, list[str], Norms]:
    """The ``uint8`` levels ``(n, 1, H, W)`` of a cached batch after :func:`auditor.attacks.cache.read_batch`
    checked its files, and after checking every pixel is within the ε budget of the clean image
    (:func:`level_difference`), the PNGs' SHA-256s and the per-image norms of those differences; raises
    :class:`~auditor.attacks.cache.CacheMismatch`."""
    out, digests = read_batch(set_dir, marker, files, clean, manifest_sha256)
    try:
        norms = _checked_norms(out, clean, eps)
    except DataError as exc:
        raise CacheMismatch(f"outside the epsilon budget ({exc})") from None
    return out, digests, norms
