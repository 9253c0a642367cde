"""Adversarial sets: generate in batches, quantise to 8 bit, store as PNGs, cache and resume.

A set lives in ``cache_dir/<key>/`` where ``key`` is the SHA-256 of everything
that determines its content: the surrogate checkpoints' SHA-256s (a bare module: its weights), the data
manifest SHA-256 (plus digests of the exact image array, labels and names),
the attack name and all its parameters, the seed, the resolution, the batch
size, the precision and the tool version. Layout::

    <key>/request.json                 what the key was computed from
    <key>/<attack>_eps<e>/<name>.png   one 8-bit PNG per image, named after its source
    <key>/batches/00000.json           done-marker of batch 0 (written after its PNGs)
    <key>/index.json                   written last: the set is complete

Every file is written to a temporary name and moved into place with
``os.replace``, so an interrupted run leaves no half-written file; the next
run with the same key loads the finished batches and computes only the rest.
Batch ``b`` is attacked with a seed derived from ``(seed, b)``, so a resumed
set is identical to an uninterrupted one.

Integrity: a batch's done-marker records the SHA-256 of every PNG written, the
digest of the clean batch and the manifest SHA-256 it was made from. Loading a
batch (also on a full cache hit) re-checks all of them and the ε bound; a batch
that fails is recomputed and the set carries a warning (:attr:`AdversarialSet.warnings`).
A shared cache therefore cannot feed a tampered or corrupted image into a verdict.

Quantisation rounds to the nearest 8-bit level (the reference code floors) in
integer arithmetic: each pixel stays within ``E = eps * 255`` levels of the
clean image's own 8-bit level, so pixels the attack put on the ε edge stay on
it (see :func:`quantize` for clean images that are not on the 8-bit grid).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import numpy as np

from auditor.data.stream import LazyImages, PngImages, stream_digest
from auditor.errors import DataError, RuntimeFailure, UsageError

INDEX_FILE = "index.json"


@dataclass
class AdversarialSet:
    """A finished adversarial set (images in the input order) and how it was obtained."""

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
    extra: dict[str, Any] = field(default_factory=dict)
    #: cached batches that failed their integrity check and were recomputed (one line each)
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- helpers
def _digest(arr: Any) -> str:
    a = np.ascontiguousarray(np.asarray(arr))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    """JSON-compatible form of a parameter; arrays become their digest."""
    if isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else value
        return {"array_sha256": _digest(arr), "shape": list(np.shape(arr))}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        if len(value) > 64:
            return {"array_sha256": _digest(np.asarray(value)), "len": len(value)}
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return f"<{type(value).__name__}:{getattr(value, 'name', '')}>"


def _surrogate_sha256(surrogate: Any) -> list[str]:
    """What identifies the surrogate in a cache key: its checkpoints' SHA-256s (``identity``), or,
    for a bare ``nn.Module`` without one, a digest of its architecture and weights."""
    sha = list(getattr(surrogate, "identity", {}).get("sha256", []))
    if sha:
        return sha
    module = getattr(surrogate, "module", surrogate)
    h = hashlib.sha256(repr(module).encode("utf-8"))
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu()
        h.update(f"{name}:{t.dtype}".encode("utf-8"))
        h.update(_digest((t.double() if t.is_floating_point() else t).numpy()).encode("ascii"))
    return [f"weights:{h.hexdigest()}"]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write_json(path: Path, doc: Any) -> None:
    _atomic_write_bytes(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _write_png(path: Path, img_u8: np.ndarray) -> str:
    """Write an 8-bit grey PNG atomically; returns the SHA-256 of the bytes written."""
    import cv2

    ok, buf = cv2.imencode(".png", img_u8)
    if not ok:
        raise RuntimeFailure(f"{path}: PNG encoding failed")
    data = buf.tobytes()
    _atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _decode_png(data: bytes) -> np.ndarray | None:
    """An 8-bit grey image from PNG bytes, or None when it is anything else."""
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8 or img.ndim != 2:
        return None
    return img


def output_names(names: list[str]) -> list[str]:
    """Relative PNG paths keeping each source's path and file name (``normal/a.dcm`` -> ``normal/a.png``).

    Parts that could leave the folder (``..``, absolute roots, drive letters) are dropped;
    clashes get ``__<index>`` appended to the stem.
    """
    out: list[str] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        parts = [p for p in PurePosixPath(str(name).replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
        parts = [p.replace(":", "_") for p in parts] or [f"image_{i:05d}"]
        rel = PurePosixPath(*parts)
        rel = rel.with_suffix(".png") if rel.suffix else rel.with_name(rel.name + ".png")
        cand = str(rel)
        if cand.lower() in seen:
            cand = str(rel.with_name(f"{rel.stem}__{i}.png"))
        seen.add(cand.lower())
        out.append(cand)
    return out


def budget_levels(eps: float) -> int:
    """The budget ``eps`` in whole 8-bit grey levels: the largest integer ``E`` with ``E / 255 <= eps``.

    ``eps`` is a float, so a budget meant as ``k/255`` may arrive as ``k/255``
    plus or minus one float ulp; values within 1e-6 of a level count as that
    level. This is the only tolerance of the quantisation.
    """
    v = float(eps) * 255.0
    r = round(v)
    return int(r) if abs(v - r) < 1e-6 else int(np.floor(v))


#: A clean value within this many grey levels of an 8-bit level counts as on the grid. float32
#: stores ``k/255`` with an error below 2e-5 levels; so an on-grid pixel may end up to 4e-7 (1e-4/255)
#: beyond eps in float terms, never a whole level.
GRID_TOLERANCE_LEVELS = 1e-4


def allowed_levels(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The range ``[lo, hi]`` of 8-bit levels (``int32``) that keep each pixel within ``eps`` of the clean ``x``.

    With ``E = budget_levels(eps)``: a clean value on the 8-bit grid (level
    ``g``) allows ``[g - E, g + E]`` in exact integer arithmetic; a value off the
    grid (``v = 255 x`` not a whole number: a resized or >8-bit image) allows
    ``[ceil(v - E), floor(v + E)]``, the levels whose float distance to ``x``
    is at most ``E / 255 <= eps``. Both are clipped to ``[0, 255]``. Where the
    range is empty (``E = 0`` off the grid) it is the nearest level alone, and
    the measured L-inf (reported as ``linf_max``) then exceeds ``eps`` by
    less than half a level.
    """
    v = np.asarray(x, dtype=np.float64) * 255.0
    e = budget_levels(eps)
    g = np.rint(v)
    on_grid = np.abs(v - g) <= GRID_TOLERANCE_LEVELS
    lo = np.where(on_grid, g - e, np.ceil(v - e))
    hi = np.where(on_grid, g + e, np.floor(v + e))
    empty = lo > hi
    lo, hi = np.where(empty, g, lo), np.where(empty, g, hi)
    lo = np.clip(lo, 0, 255).astype(np.int32)
    hi = np.clip(hi, 0, 255).astype(np.int32)
    return lo, hi


def quantize(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """8-bit levels of ``x_adv`` that use the whole budget and never exceed it; returns ``uint8``.

    Each pixel is ``rint(255 * x_adv)`` clamped into :func:`allowed_levels`.
    For clean images on the 8-bit grid (8-bit files at the model's size) the
    clamp is integer arithmetic around the clean level, so a pixel the attack
    left on the ε edge stays exactly on the edge whatever the float rounding
    of ``x_adv``, and the stored L-inf is exactly ``eps``. For clean images off
    the grid the stored image stays within ``eps`` of the *float* clean image
    (up to one level of the budget on one side cannot be reached by any 8-bit
    value); callers measure and report the true L-inf.
    """
    lo, hi = allowed_levels(x, eps)
    a = np.rint(np.asarray(x_adv, dtype=np.float64) * 255.0)
    return np.clip(a, lo, hi).astype(np.uint8)


def check_levels(levels: np.ndarray, x: np.ndarray, eps: float) -> float:
    """Check stored ``levels`` against the clean ``x`` (:func:`allowed_levels`); returns the true float L-inf.

    Raises :class:`DataError` when a level lies outside the budget.
    """
    lo, hi = allowed_levels(x, eps)
    k = levels.astype(np.int32)
    over = (k < lo) | (k > hi)
    if over.any():
        raise DataError(f"{int(over.sum())} pixel(s) lie outside the epsilon budget of the clean image "
                        f"({budget_levels(eps)} grey level(s))")
    return _float_linf(levels.astype(np.float32) / 255.0, np.asarray(x, dtype=np.float32))


def batch_seed(seed: int, batch: int) -> int:
    """The attack seed of batch ``batch`` (independent of the batches run before it)."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(batch)]).generate_state(1)[0])


def eps_label(eps: float) -> str:
    """``8/255`` -> ``"8"``; other values keep two decimals (in 1/255 units)."""
    v = eps * 255
    return str(int(round(v))) if abs(v - round(v)) < 1e-6 else f"{v:.2f}"


# --------------------------------------------------------------------------- main API
def build_adversarial_set(attack_name: str, params: dict[str, Any], surrogate: Any, images: np.ndarray,
                          labels: np.ndarray, names: list[str], cache_dir: str | Path, manifest_sha256: str,
                          seed: int, batch_size: int = 8, device: Any = None, precision: str = "fp32",
                          progress: Callable[[int], None] | None = None,
                          only_batches: "set[int] | None" = None,
                          on_batch: Callable[[int, float], None] | None = None) -> AdversarialSet:
    """Attack ``images`` (``(N, 1, H, W)`` float32 in ``[0, 1]``) on ``surrogate``, or load the cached set.

    ``labels`` are target class indices, ``names`` the source file names (kept
    for the PNGs). ``params`` go to :func:`auditor.attacks.registry.make_attack`
    (``epsilon``, ``mask_pool``/``mask_pool_labels`` for USMM, ``style_backend``/
    ``checkpoint_dir`` for STM, ...). ``progress(n)`` is called after every
    finished (or loaded) batch of ``n`` images; ``on_batch(n, seconds)`` after every batch
    *computed* (not loaded), with its wall time. ``only_batches`` (a shard of a
    distributed run, see :mod:`auditor.distributed`) computes just those batches
    and returns a *partial* set (``extra["partial"]``, no index written; images
    of other batches are zero). When ``images`` is a :class:`~auditor.data.stream.LazyImages`,
    the set is built and verified batch by batch and its images come back as a
    :class:`~auditor.data.stream.PngImages` reading the cache (nothing is held in memory). Raises
    :class:`~auditor.attacks.stm.StyleBackendUnavailable` before any work when
    the STM style backend cannot run.
    """
    import torch

    from auditor import __version__
    from auditor.attacks.registry import make_attack

    lazy = isinstance(images, LazyImages)
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
    params = dict(params)
    params.setdefault("precision", precision)
    if device is not None:
        params.setdefault("device", device)
    attack = make_attack(attack_name, surrogate, **params)
    eps = attack.epsilon
    h, w = images.shape[-2:]

    key_params = {k: _canonical(v) for k, v in params.items() if k not in ("device", "mask_pool", "mask_pool_labels")}
    request = {
        "tool_version": __version__,
        "attack": attack.name,
        "params": key_params,
        "effective": _canonical(attack.params()),
        "extras": _canonical(attack.key_extras()),
        "surrogate_sha256": _surrogate_sha256(surrogate),
        "surrogate_classes": list(getattr(surrogate, "class_names", ())),
        "manifest_sha256": manifest_sha256,
        "images_sha256": stream_digest(images) if lazy else _digest(images),
        "labels_sha256": _digest(labels),
        "names_sha256": hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest(),
        "seed": int(seed),
        "resolution": [int(h), int(w)],
        "batch_size": batch_size,
    }
    key = hashlib.sha256(json.dumps(request, sort_keys=True).encode("utf-8")).hexdigest()
    set_dir = Path(cache_dir) / key
    sub = f"{attack.name}_eps{eps_label(eps)}"
    files = [f"{sub}/{p}" for p in output_names(list(names))]
    backend = getattr(attack, "backend_name", None)
    t0 = time.perf_counter()

    index_path = set_dir / INDEX_FILE
    index_ok = False
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            index_ok = index.get("key") == key and index.get("files") == files
        except (OSError, json.JSONDecodeError):
            index_ok = False

    result = None if lazy else np.empty_like(images)
    png_sha256: list[str | None] = [None] * n
    starts = list(range(0, n, batch_size))
    computed = loaded = 0
    linf_max = 0.0
    warnings: list[str] = []
    for b, start in enumerate(starts):
        stop = min(n, start + batch_size)
        if only_batches is not None and b not in only_batches:
            if result is not None:
                result[start:stop] = 0.0
            continue
        marker = set_dir / "batches" / f"{b:05d}.json"
        clean = images[start:stop]
        batch_files = files[start:stop]
        levels = None
        if marker.exists():
            try:
                levels, digests = _verified_batch(set_dir, marker, batch_files, clean, manifest_sha256, eps)
                loaded += 1
            except CacheMismatch as exc:
                warnings.append(f"{sub} batch {b}: {exc}; the batch was recomputed")
        if levels is None:
            if not computed:
                attack.ensure_setup()  # heavy resources (style network) once, before the first computed batch
                set_dir.mkdir(parents=True, exist_ok=True)
                _atomic_write_json(set_dir / "request.json", request)
            tb = time.perf_counter()
            x_adv = attack(torch.from_numpy(clean), torch.from_numpy(labels[start:stop]),
                           seed=batch_seed(seed, b)).cpu().numpy()
            levels = quantize(x_adv, clean, eps)
            try:
                bl = check_levels(levels, clean, eps)
            except DataError as exc:  # cannot happen after quantize: a bug, not bad input
                raise RuntimeFailure(f"{attack.name}: quantised batch {b}: {exc}") from None
            digests = [_write_png(set_dir / f, levels[i, 0]) for i, f in enumerate(batch_files)]
            batch_seconds = time.perf_counter() - tb
            _atomic_write_json(marker, {"batch": b, "files": batch_files, "png_sha256": digests,
                                        "clean_sha256": _digest(clean), "manifest_sha256": manifest_sha256,
                                        "epsilon_levels": budget_levels(eps), "linf_max": bl,
                                        "seconds": round(batch_seconds, 3)})
            if on_batch:
                on_batch(stop - start, batch_seconds)
            computed += 1
        png_sha256[start:stop] = digests
        adv = levels.astype(np.float32) / 255.0
        if result is not None:
            result[start:stop] = adv
        linf_max = max(linf_max, _float_linf(adv, clean))
        if progress:
            progress(stop - start)

    seconds = time.perf_counter() - t0
    if lazy:
        result = PngImages(set_dir, files, (int(h), int(w)), png_sha256)
    cache_hit = index_ok and computed == 0 and only_batches is None
    if cache_hit:
        return AdversarialSet(result, key, set_dir, index.get("params", {}), index.get("label", attack.label), eps,
                              True, seconds, backend, attack.name, tuple(files), tuple(index.get("notes", ())),
                              str(attack.device), attack.precision, 0, loaded, 0, {"linf_max": linf_max})
    eff = _canonical(attack.params())
    if only_batches is not None:
        return AdversarialSet(result, key, set_dir, eff, attack.label, eps, False, seconds, backend, attack.name,
                              tuple(files), tuple(attack.notes), str(attack.device), attack.precision, computed, loaded,
                              attack.surrogate_rows, {"linf_max": linf_max, "partial": True}, tuple(warnings))
    index = {"key": key, "attack": attack.name, "label": attack.label, "epsilon": eps, "params": eff,
             "files": files, "names": list(names), "n": n, "batches": len(starts), "linf_max": linf_max,
             "notes": list(attack.notes), "tool_version": __version__, "seconds_last_run": round(seconds, 3),
             "device": str(attack.device), "precision": attack.precision}
    _atomic_write_json(index_path, index)
    return AdversarialSet(result, key, set_dir, eff, attack.label, eps, False, seconds, backend, attack.name,
                          tuple(files), tuple(attack.notes), str(attack.device), attack.precision, computed, loaded,
                          attack.surrogate_rows, {"linf_max": linf_max}, tuple(warnings))


def _float_linf(q: np.ndarray, x: np.ndarray) -> float:
    return float(np.abs(q.astype(np.float64) - x.astype(np.float64)).max()) if q.size else 0.0


class CacheMismatch(Exception):
    """A cached batch does not match what it claims to be; the message is the reason."""


def _verified_batch(set_dir: Path, marker: Path, files: list[str], clean: np.ndarray, manifest_sha256: str,
                    eps: float) -> tuple[np.ndarray, list[str]]:
    """The ``uint8`` levels ``(n, 1, H, W)`` of a cached batch after checking it, and the PNGs' SHA-256s;
    raises :class:`CacheMismatch`.

    Checks: the done-marker parses and lists these files; it was made from this
    clean batch and manifest; every PNG's SHA-256 is the one recorded when it
    was written; every PNG is 8-bit grey of the clean size; and every pixel is
    within the ε budget of the clean image (:func:`check_levels`).
    """
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CacheMismatch("done-marker unreadable") from None
    if not isinstance(done, dict) or done.get("files") != files:
        raise CacheMismatch("done-marker lists other files")
    if done.get("manifest_sha256") != manifest_sha256 or done.get("clean_sha256") != _digest(clean):
        raise CacheMismatch("made from other clean images")
    digests = done.get("png_sha256")
    if not isinstance(digests, list) or len(digests) != len(files):
        raise CacheMismatch("no SHA-256 recorded for its PNGs")
    out = np.empty(clean.shape, np.uint8)
    for i, (f, want) in enumerate(zip(files, digests)):
        try:
            data = (set_dir / f).read_bytes()
        except OSError:
            raise CacheMismatch(f"{f} missing") from None
        if hashlib.sha256(data).hexdigest() != want:
            raise CacheMismatch(f"{f} changed since it was written (SHA-256 mismatch)")
        img = _decode_png(data)
        if img is None or img.shape != clean.shape[-2:]:
            raise CacheMismatch(f"{f} is not an 8-bit grey image of the set's size")
        out[i, 0] = img
    try:
        check_levels(out, clean, eps)
    except DataError as exc:
        raise CacheMismatch(f"outside the epsilon budget ({exc})") from None
    return out, list(digests)


def perturbation_stats(x, x_adv, batch_size: int = 64) -> dict[str, float]:
    """Mean/max L-inf, mean L2, mean SSIM (scikit-image, ``data_range=1``) and mean PSNR (dB, capped at 100).

    Both are ``(N, 1, H, W)`` in ``[0, 1]`` (arrays or :class:`~auditor.data.stream.LazyImages`, read
    ``batch_size`` images at a time); norms are per image, in ``[0, 1]`` units.
    """
    from skimage.metrics import structural_similarity

    from auditor.data.stream import iter_batches

    if tuple(x.shape) != tuple(x_adv.shape) or len(x.shape) != 4:
        raise ValueError(f"shapes differ or are not (N, C, H, W): {tuple(x.shape)} vs {tuple(x_adv.shape)}")
    if x.shape[0] == 0:
        return {"linf_mean": 0.0, "linf_max": 0.0, "l2_mean": 0.0, "ssim_mean": 1.0, "psnr_mean": 100.0}
    linf, l2, psnr, ssim = [], [], [], []
    for (_, xa), (_, xb) in zip(iter_batches(x, batch_size), iter_batches(x_adv, batch_size)):
        a = np.asarray(xa, dtype=np.float64)
        b = np.asarray(xb, dtype=np.float64)
        d = (b - a).reshape(a.shape[0], -1)
        linf.append(np.abs(d).max(1))
        l2.append(np.sqrt((d**2).sum(1)))
        mse = (d**2).mean(1)
        psnr.append(np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0))
        ssim.extend(structural_similarity(a[i, 0], b[i, 0], data_range=1.0) for i in range(a.shape[0]))
    linf_a, l2_a, psnr_a = np.concatenate(linf), np.concatenate(l2), np.concatenate(psnr)
    return {"linf_mean": float(linf_a.mean()), "linf_max": float(linf_a.max()), "l2_mean": float(l2_a.mean()),
            "ssim_mean": float(np.mean(ssim)), "psnr_mean": float(psnr_a.mean())}
