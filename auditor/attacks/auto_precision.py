"""``--precision auto``: measure fp32 and bf16 on this host with the scan's own surrogate, then choose.

Whether bf16 pays depends on the host: on one of this project's CPUs bf16 ran USMM 2.2x faster than
fp32, on another 1.25x slower (docs/algorithms.md §11), and bf16 input gradients can differ a lot from fp32 on
some networks. So ``auto`` decides per scan, at the start of the attack stage:

1. **Speed**: a few forward+backward-to-input passes of the actual (BN-folded, channels_last)
   surrogate on one chunk of the first attack's rows, fp32 and bf16 interleaved, best time of each;
2. **Fidelity**, only when bf16 is faster: the first attack is run on the first batch in fp32 and
   in bf16 with the same seed, and the surrogate's (fp32) predictions on both adversarial batches
   are compared; bf16 is used only when they agree on at least :data:`MIN_AGREEMENT` of the batch,
   i.e. bf16's white-box success matches fp32's image by image.

Everything measured goes into the returned record (results.json ``environment.precision_choice``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

#: bf16 must reproduce fp32's white-box predictions on this share of the first batch
MIN_AGREEMENT = 0.95
#: timed passes per precision (after one warm-up each)
TIMED_PASSES = 3


def _one_pass(attack, rows: torch.Tensor, labels: torch.Tensor, precision: str) -> float:
    """Wall time (s) of one surrogate fwd+bwd-to-input over ``rows`` at ``precision``."""
    attack.precision = precision
    t = time.perf_counter()
    attack.surrogate_grad(rows, labels)
    return time.perf_counter() - t


def _timing(attack, x: torch.Tensor, y: torch.Tensor, passes: int) -> dict[str, float]:
    """ms per surrogate row for fp32 and bf16: one warm-up each, then ``passes`` interleaved, best of each."""
    k = max(1, attack.num_copies)
    n_rows = min(attack.chunk_rows(x), k * x.shape[0])
    reps = -(-n_rows // x.shape[0])
    rows = x.repeat(reps, 1, 1, 1)[:n_rows].to(attack.device)
    labels = y.repeat(reps)[:n_rows].to(attack.device)
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for p in best:  # warm-up: oneDNN kernel selection, allocator
        _one_pass(attack, rows, labels, p)
    for _ in range(passes):
        for p in best:
            best[p] = min(best[p], _one_pass(attack, rows, labels, p))
    return {"rows": n_rows, **{f"{p}_ms_per_row": round(best[p] * 1000 / n_rows, 3) for p in best}}


def _surrogate_predictions(attack, x: torch.Tensor) -> np.ndarray:
    """fp32 predictions of the attack's (prepared) surrogate."""
    with torch.no_grad():
        fmt = torch.channels_last if attack.channels_last else torch.contiguous_format
        return attack.model(x.to(attack.device).contiguous(memory_format=fmt)).argmax(1).cpu().numpy()


def choose_precision(attack, x: np.ndarray, y: np.ndarray, seed: int, passes: int = TIMED_PASSES) -> dict[str, Any]:
    """Time fp32/bf16 with ``attack``'s surrogate and check bf16 on the batch ``x``, ``y``; the decision record.

    ``attack`` is the scan's first attack (built with any precision; it is left at the chosen one),
    ``x`` the first attack batch ``(N, 1, H, W)`` in ``[0, 1]`` and ``y`` its labels.
    """
    attack.ensure_setup()
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    t0 = time.perf_counter()
    rec: dict[str, Any] = {
        "requested": "auto",
        "device": str(attack.device),
        "attack": attack.name,
        "timed_passes": passes,
        **_timing(attack, xt, yt, passes),
    }
    rec["bf16_speedup"] = round(rec["fp32_ms_per_row"] / rec["bf16_ms_per_row"], 3) if rec["bf16_ms_per_row"] else None
    if rec["bf16_ms_per_row"] >= rec["fp32_ms_per_row"]:
        rec.update(chosen="fp32", reason="bf16 is not faster than fp32 on this host", check=None)
    else:
        adv = {}
        for p in ("fp32", "bf16"):
            attack.precision = p
            adv[p] = _surrogate_predictions(attack, attack(xt, yt, seed=seed))
        truth = yt.numpy()
        agreement = float(np.mean(adv["fp32"] == adv["bf16"]))
        rec["check"] = {
            "n": int(len(truth)),
            "agreement": round(agreement, 4),
            "min_agreement": MIN_AGREEMENT,
            "success_fp32": round(float(np.mean(adv["fp32"] != truth)), 4),
            "success_bf16": round(float(np.mean(adv["bf16"] != truth)), 4),
        }
        if agreement >= MIN_AGREEMENT:
            rec.update(
                chosen="bf16",
                reason=f"bf16 {rec['bf16_speedup']}x faster and its white-box predictions "
                f"match fp32 on {agreement:.0%} of the first batch",
            )
        else:
            rec.update(
                chosen="fp32",
                reason=f"bf16 is faster but its white-box predictions match fp32 on only "
                f"{agreement:.0%} of the first batch (< {MIN_AGREEMENT:.0%})",
            )
    attack.precision = rec["chosen"]
    rec["seconds"] = round(time.perf_counter() - t0, 2)
    return rec


def _host_cpu() -> str:
    """The CPU model name (Linux /proc/cpuinfo), else the platform's processor string."""
    import platform

    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def decision_key(attack, surrogate_sha256, x: np.ndarray) -> str:
    """What the decision depends on: host CPU, device, torch, surrogate weights, attack, input size, batch."""
    import hashlib
    import json

    facts = {
        "cpu": _host_cpu(),
        "device": str(attack.device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "surrogate": list(surrogate_sha256 or []),
        "attack": attack.name,
        "shape": list(np.shape(x)),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def choose_precision_cached(attack, x: np.ndarray, y: np.ndarray, seed: int, cache_dir, surrogate_sha256) -> dict:
    """:func:`choose_precision`, remembered under ``cache_dir/precision/`` for this host and surrogate.

    A later scan on the same host, surrogate and input size reuses the decision instead of measuring
    again: the same precision every time (so its cached adversarial sets are found, their key includes
    the precision) and no start-up cost. Delete the folder to measure again.
    """
    import json

    from auditor.attacks.cache_layout import precision_record

    path = precision_record(cache_dir, decision_key(attack, surrogate_sha256, x))
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(rec, dict) and rec.get("chosen") in ("fp32", "bf16"):
            attack.ensure_setup()
            attack.precision = rec["chosen"]
            return {**rec, "reused": str(path)}
    except (OSError, ValueError, RecursionError):  # RecursionError: a depth bomb
        pass
    rec = choose_precision(attack, x, y, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only costs the measurement next time
    return rec
