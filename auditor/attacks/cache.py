"""The cache of adversarial sets: keys, the PNG files of a set, and the checks a cached batch must pass.

A set lives in ``cache_dir/<key>/`` where ``key`` is the SHA-256 of everything
that determines its content (:func:`cache_request`): the surrogate checkpoints' SHA-256s (a bare module: its
weights), the data manifest SHA-256 (plus digests of the exact image array, labels and names),
the attack name and all its parameters, the seed, the resolution, the batch
size and the tool version (the precision is one of the parameters). The folder's layout is owned by
:mod:`auditor.attacks.cache_layout`; the image array's digest of a lazy set comes from
:mod:`auditor.attacks.clean_digest` (stored with the cache, checked against the pixels on use).

Every file is written to a temporary name and moved into place with
``os.replace``, so an interrupted run leaves no half-written file; the next
run with the same key loads the finished batches (see :mod:`auditor.attacks.sets`).

Integrity: a batch's done-marker records the SHA-256 of every PNG written, the
digest of the clean batch and the manifest SHA-256 it was made from; :func:`read_batch`
re-checks all of them (and :mod:`auditor.attacks.sets` the ε bound), raising
:class:`CacheMismatch` with the reason, so a shared cache cannot feed a tampered
or corrupted image into a verdict.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from auditor.atomic import write_atomic
from auditor.attacks.cache_layout import INDEX_FILE, SetLayout
from auditor.attacks.clean_digest import clean_digest
from auditor.errors import RuntimeFailure
from auditor.hashing import array_sha256


class CacheMismatch(Exception):
    """A cached batch does not match what it claims to be; the message is the reason."""


# --------------------------------------------------------------------------- fingerprints
_digest = array_sha256  #: the cache key's array digest (:func:`auditor.hashing.array_sha256`)


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


def cache_request(
    attack: Any,
    params: dict[str, Any],
    surrogate: Any,
    images: Any,
    labels: np.ndarray,
    names: list[str],
    manifest_sha256: str,
    seed: int,
    batch_size: int,
    lazy: bool,
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, Any], str, bool]:
    """What a set's key is computed from (``request.json``), the key, and whether the images' digest in it was
    read from the cache's record and still needs checking against the pixels
    (:func:`auditor.attacks.clean_digest.clean_digest`): ``attack`` is the made attack, ``params`` what it was
    made with (the device and USMM's mask pool do not enter the key)."""
    from auditor import __version__

    h, w = images.shape[-2:]
    images_sha256, unchecked = clean_digest(images, cache_dir) if lazy else (_digest(images), False)
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
        "images_sha256": images_sha256,
        "labels_sha256": _digest(labels),
        "names_sha256": hashlib.sha256("\n".join(names).encode("utf-8")).hexdigest(),
        "seed": int(seed),
        "resolution": [int(h), int(w)],
        "batch_size": batch_size,
    }
    return request, hashlib.sha256(json.dumps(request, sort_keys=True).encode("utf-8")).hexdigest(), unchecked


# --------------------------------------------------------------------------- files
def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Complete or absent, flushed to disk (:func:`auditor.atomic.write_atomic`), its folder made first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)


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


def read_index(set_dir: Path, key: str, files: list[str]) -> dict[str, Any] | None:
    """The finished set's ``index.json`` when it exists and lists this key and these files, else None."""
    index_path = set_dir / INDEX_FILE
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: a depth bomb
        return None
    if not isinstance(index, dict):
        return None
    return index if index.get("key") == key and index.get("files") == files else None


def write_pngs(set_dir: Path, files: list[str], levels: np.ndarray) -> list[str]:
    """Write a computed batch's PNGs (``levels`` ``(n, 1, H, W)`` uint8) atomically; returns their SHA-256s."""
    layout = SetLayout(set_dir)
    return [_write_png(layout.image(f), levels[i, 0]) for i, f in enumerate(files)]


def write_json(path: Path, doc: Any) -> None:
    """Write a cache document (``request.json``, a done-marker, ``index.json``) atomically, keys sorted."""
    _atomic_write_json(path, doc)


def read_batch(
    set_dir: Path, marker: Path, files: list[str], clean: np.ndarray, manifest_sha256: str
) -> tuple[np.ndarray, list[str]]:
    """The ``uint8`` levels ``(n, 1, H, W)`` of a cached batch and the PNGs' SHA-256s; raises :class:`CacheMismatch`.

    Checks: the done-marker parses and lists these files; it was made from this
    clean batch and manifest; every PNG's SHA-256 is the one recorded when it
    was written; every PNG is 8-bit grey of the clean size. (The ε budget is checked by the caller.)
    """
    try:
        done = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: a depth bomb
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
            data = SetLayout(set_dir).image(f).read_bytes()
        except OSError:
            raise CacheMismatch(f"{f} missing") from None
        if hashlib.sha256(data).hexdigest() != want:
            raise CacheMismatch(f"{f} changed since it was written (SHA-256 mismatch)")
        img = _decode_png(data)
        if img is None or img.shape != clean.shape[-2:]:
            raise CacheMismatch(f"{f} is not an 8-bit grey image of the set's size")
        out[i, 0] = img
    return out, list(digests)
