"""Adversarial sets: generate in batches, quantise to 8 bit, store as PNGs, cache and resume.

A set lives in ``cache_dir/<key>/`` where ``key`` is the SHA-256 of everything
that determines its content: the surrogate checkpoints' SHA-256s, the data
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

Quantisation rounds to the nearest 8-bit level (the reference code floors),
then keeps each pixel on the 8-bit grid inside ``[x - eps, x + eps] ∩ [0, 1]``
so the stored image still satisfies the budget.
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

from auditor.errors import DataError, RuntimeFailure, UsageError

INDEX_FILE = "index.json"
#: tolerance of the budget check after quantisation (float rounding only)
QUANT_TOL = 1e-5


@dataclass
class AdversarialSet:
    """A finished adversarial set (images in the input order) and how it was obtained."""

    images: np.ndarray  #: (N, 1, H, W) float32, multiples of 1/255
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


def _write_png(path: Path, img_u8: np.ndarray) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", img_u8)
    if not ok:
        raise RuntimeFailure(f"{path}: PNG encoding failed")
    _atomic_write_bytes(path, buf.tobytes())


def _read_png(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.dtype != np.uint8 or img.ndim != 2:
        raise DataError(f"{path}: cached adversarial image is unreadable or not 8-bit grey")
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


def quantize(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """Round to 8-bit levels inside ``[x - eps, x + eps] ∩ [0, 1]``; returns uint8 levels.

    Where that interval holds no 8-bit level (``eps`` below half a level and
    ``x`` off the grid) the level nearest to ``x`` is used.
    """
    a = np.asarray(x_adv, dtype=np.float64) * 255.0
    c = np.asarray(x, dtype=np.float64) * 255.0
    e = eps * 255.0
    lo = np.clip(np.ceil(c - e - 1e-6), 0, 255)
    hi = np.clip(np.floor(c + e + 1e-6), 0, 255)
    k = np.clip(np.rint(a), lo, hi)
    k = np.where(lo <= hi, k, np.clip(np.rint(c), 0, 255))
    return k.astype(np.uint8)


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
    of other batches are zero). Raises
    :class:`~auditor.attacks.stm.StyleBackendUnavailable` before any work when
    the STM style backend cannot run.
    """
    import torch

    from auditor import __version__
    from auditor.attacks.registry import make_attack

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
        "surrogate_sha256": list(getattr(surrogate, "identity", {}).get("sha256", [])),
        "surrogate_classes": list(getattr(surrogate, "class_names", ())),
        "manifest_sha256": manifest_sha256,
        "images_sha256": _digest(images),
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
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            cached = index.get("key") == key and index.get("files") == files
        except (OSError, json.JSONDecodeError):
            cached = False
        if cached and all((set_dir / f).is_file() for f in files):
            out = np.stack([_read_png(set_dir / f) for f in files])[:, None].astype(np.float32) / 255.0
            if progress:
                progress(n)
            return AdversarialSet(out, key, set_dir, index.get("params", {}), index.get("label", attack.label), eps,
                                  True, time.perf_counter() - t0, backend, attack.name, tuple(files),
                                  tuple(index.get("notes", ())), str(attack.device), attack.precision, 0,
                                  int(index.get("batches", 0)), 0, {"linf_max": index.get("linf_max")})

    attack.ensure_setup()  # heavy resources (style network) once, before the first batch
    set_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_json(set_dir / "request.json", request)
    result = np.empty_like(images)
    starts = list(range(0, n, batch_size))
    computed = loaded = 0
    linf_max = 0.0
    for b, start in enumerate(starts):
        stop = min(n, start + batch_size)
        if only_batches is not None and b not in only_batches:
            result[start:stop] = 0.0
            continue
        marker = set_dir / "batches" / f"{b:05d}.json"
        done = None
        if marker.is_file():
            try:
                done = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                done = None
        if done and done.get("files") == files[start:stop] and all((set_dir / f).is_file() for f in files[start:stop]):
            result[start:stop] = np.stack([_read_png(set_dir / f) for f in files[start:stop]])[:, None] / 255.0
            linf_max = max(linf_max, float(done.get("linf_max", 0.0)))
            loaded += 1
        else:
            tb = time.perf_counter()
            x = torch.from_numpy(images[start:stop])
            y = torch.from_numpy(labels[start:stop])
            x_adv = attack(x, y, seed=batch_seed(seed, b)).cpu().numpy()
            levels = quantize(x_adv, images[start:stop], eps)
            q = levels.astype(np.float32) / 255.0
            bl = float(np.abs(q.astype(np.float64) - images[start:stop]).max()) if q.size else 0.0
            if bl > max(eps, 0.5 / 255) + QUANT_TOL:
                raise RuntimeFailure(f"{attack.name}: quantised batch {b} exceeds the budget ({bl * 255:.3f}/255 > "
                                     f"{eps * 255:.3f}/255)")
            for i in range(stop - start):
                _write_png(set_dir / files[start + i], levels[i, 0])
            batch_seconds = time.perf_counter() - tb
            _atomic_write_json(marker, {"batch": b, "files": files[start:stop], "linf_max": bl,
                                        "seconds": round(batch_seconds, 3)})
            if on_batch:
                on_batch(stop - start, batch_seconds)
            result[start:stop] = q
            linf_max = max(linf_max, bl)
            computed += 1
        if progress:
            progress(stop - start)

    seconds = time.perf_counter() - t0
    eff = _canonical(attack.params())
    if only_batches is not None:
        return AdversarialSet(result, key, set_dir, eff, attack.label, eps, False, seconds, backend, attack.name,
                              tuple(files), tuple(attack.notes), str(attack.device), attack.precision, computed, loaded,
                              attack.surrogate_rows, {"linf_max": linf_max, "partial": True})
    index = {"key": key, "attack": attack.name, "label": attack.label, "epsilon": eps, "params": eff,
             "files": files, "names": list(names), "n": n, "batches": len(starts), "linf_max": linf_max,
             "notes": list(attack.notes), "tool_version": __version__, "seconds_last_run": round(seconds, 3),
             "device": str(attack.device), "precision": attack.precision}
    _atomic_write_json(index_path, index)
    return AdversarialSet(result, key, set_dir, eff, attack.label, eps, False, seconds, backend, attack.name,
                          tuple(files), tuple(attack.notes), str(attack.device), attack.precision, computed, loaded,
                          attack.surrogate_rows, {"linf_max": linf_max})


def perturbation_stats(x: np.ndarray, x_adv: np.ndarray) -> dict[str, float]:
    """Mean/max L-inf, mean L2, mean SSIM (scikit-image, ``data_range=1``) and mean PSNR (dB, capped at 100).

    Both arrays are ``(N, 1, H, W)`` in ``[0, 1]``; norms are per image, in ``[0, 1]`` units.
    """
    from skimage.metrics import structural_similarity

    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(x_adv, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"shapes differ or are not (N, C, H, W): {a.shape} vs {b.shape}")
    if a.shape[0] == 0:
        return {"linf_mean": 0.0, "linf_max": 0.0, "l2_mean": 0.0, "ssim_mean": 1.0, "psnr_mean": 100.0}
    d = (b - a).reshape(a.shape[0], -1)
    linf = np.abs(d).max(1)
    l2 = np.sqrt((d**2).sum(1))
    mse = (d**2).mean(1)
    psnr = np.where(mse > 0, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)), 100.0).clip(max=100.0)
    ssim = [structural_similarity(a[i, 0], b[i, 0], data_range=1.0) for i in range(a.shape[0])]
    return {"linf_mean": float(linf.mean()), "linf_max": float(linf.max()), "l2_mean": float(l2.mean()),
            "ssim_mean": float(np.mean(ssim)), "psnr_mean": float(psnr.mean())}
