"""xray-audit's MI-FGSM and USMM side by side with the reference implementation (TransferAttack).

Usage::

    python bench/vs_reference.py --checkpoint /work/runs/k_resnet18_sur_128/model.pt \\
        --data /work/runs/kermany_split/test.csv --n 10 [--target TARGET.onnx] [--eps 8] [--batch 5]

In one process, with the same weights and the same images, it runs the
*unmodified* reference code (``../shared/reference/transferattack``, imported at
run time from that folder, never copied; MIT, Trustworthy-AI-Group/TransferAttack)
and xray-audit's attacks, and prints:

* seconds per image of both (fp32; xray-audit with its defaults: BN folded,
  channels_last, chunked surrogate passes) and their ratio, in wall-clock and
  in process CPU time (run it single-threaded, ``OMP_NUM_THREADS=1``: on a
  shared machine the CPU-time ratio is the steadier one);
* per-image agreement of the adversarial images. The RNG streams *can* be
  aligned for USMM with ``mask_source="batch"``: both draw one ``randperm(N)``
  per copy, 15 per iteration, in the same (mix-major, scale-minor) order; the
  reference draws from torch's global generator, xray-audit from its own
  ``torch.Generator``, so both are seeded with the same number. MI-FGSM has no
  randomness. What is left are float differences (BN folding, memory format,
  chunking), which can flip the sign of near-zero gradients, so the figures
  are the share of pixels within 0.5 grey level (also for an extra xray-audit
  run with the reference's numerics: BN unfolded, NCHW, one chunk), the mean |difference| in
  grey levels, and whether each image's prediction (surrogate, and target if
  ``--target``) agrees; success rates of both with Wilson 95 % intervals;
* the host's measured fp32 and bf16 GEMM peak (the best of ``torch.mm`` and
  numpy/OpenBLAS at 1024² and 2048², this process's thread count) and the
  share of it that the surrogate passes of each implementation reach per CPU
  second (FLOPs counted with ``torch.utils.flop_counter``; backward-to-input
  counted as one more forward); xray-audit's attack is also timed in bf16
  (the reference has no bf16 mode), against the bf16 peak.

Without ``--checkpoint`` a randomly initialised 1-channel ResNet18 is used
(agreement still meaningful, success rates are not). Skips with exit 0 and a
reason when the reference folder or the data is absent. Timings on a shared
machine are noisy: compare the two implementations within one run. Not part of
the tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference" / "transferattack"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kermany"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (Wilson 1927)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (mid - half, mid + half)


def _best_rate(product, n: int, reps: int) -> float:
    """Best GFLOP/s per CPU second of ``product()`` (one n x n by n x n matrix product, 2 n^3 FLOPs)."""
    product()
    times = []
    for _ in range(reps):
        t = time.process_time()
        product()
        times.append(time.process_time() - t)
    return 2 * n**3 / max(min(times), 1e-9) / 1e9


def gemm_peak(dtype, sizes: tuple[int, ...] = (1024, 2048), reps: int = 5) -> tuple[float, dict[str, float]]:
    """The host's measured GEMM peak for ``dtype``: the best rate any GEMM library here reaches.

    Candidates are ``torch.mm`` (MKL / oneDNN) and, for fp32, numpy's ``@``
    (OpenBLAS), each on square matrices of every size in ``sizes``; process CPU
    time, not wall-clock, so that other processes on a shared machine do not
    deflate it (with one thread this is the per-core peak). A single library
    is not a peak: on AMD hosts torch's fp32 GEMM can trail OpenBLAS by 20 %.
    Returns (best GFLOP/s, every candidate's GFLOP/s by name).
    """
    import torch

    rates: dict[str, float] = {}
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        rates[f"torch.mm {n}"] = _best_rate(lambda: torch.mm(a, b), n, reps)  # noqa: B023 - used at once
        if dtype == torch.float32:
            an, bn = a.numpy(), b.numpy()
            rates[f"numpy {n}"] = _best_rate(lambda: an @ bn, n, reps)  # noqa: B023 - used at once
    return max(rates.values()), rates


def forward_flops(model, size: int) -> float:
    """FLOPs of one forward pass of ``model`` on a (1, 1, size, size) image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.rand(1, 1, size, size))
    return float(fc.get_total_flops())


def reference_classes(ref_root: Path):
    """The reference MIFGSM and USMM classes, imported from ``ref_root`` (which holds ``transferattack/``)."""
    sys.path.insert(0, str(ref_root))
    from transferattack.gradient.mifgsm import MIFGSM as RefMIFGSM  # type: ignore[import-not-found]
    from transferattack.input_transformation.usmm import USMM as RefUSMM  # type: ignore[import-not-found]

    return {"mifgsm": RefMIFGSM, "usmm": RefUSMM}


def load_model(checkpoint: str | None, size: int):
    """(surrogate module mapping [0,1] grey images to logits, class names, description)."""
    import torch

    from auditor.models.checkpoints import load_checkpoint
    from auditor.models.torch import TorchClassifier
    from auditor.reference_models.registry import build_model
    from auditor.types import ModelSpec

    if checkpoint:
        m = load_checkpoint(checkpoint)
        return m, tuple(m.spec.class_names), f"{m.meta['arch']} from {checkpoint} (trained)"
    torch.manual_seed(0)
    names = ("normal", "pneumonia")
    spec = ModelSpec(channels=1, height=size, width=size, scaling="unit", mean=(0.0,), std=(1.0,), class_names=names)
    m = TorchClassifier(build_model("resnet18", len(names), 1), spec).eval().requires_grad_(False)
    return m, names, "resnet18, randomly initialised (seed 0): agreement is meaningful, success rates are not"


def load_batch(data: str, names, size: int, n: int, seed: int):
    """(images (N,1,H,W) tensor, labels tensor): a class-stratified seeded subset of ``data``."""
    import torch

    from auditor.data import load_images, map_labels, open_dataset, stratified_subset

    ds = open_dataset(data, allow_outside_root=True)  # a manifest named on the command line may point anywhere
    labels = [s.label for s in ds.samples]
    keep = stratified_subset(labels, n, seed)
    samples = [ds.samples[i] for i in keep]
    x, kept, _ = load_images(samples, (size, size))
    y = map_labels([samples[i].label for i in kept], tuple(names))
    return torch.from_numpy(x), torch.from_numpy(np.asarray(y, dtype=np.int64))


def run_reference(cls, model, x, y, eps: float, seed: int, steps: int = 10):
    """Adversarial images of the reference attack (global RNG seeded with ``seed``) and seconds taken."""
    import torch

    ref = type("Ref" + cls.__name__, (cls,), {"load_model": lambda self, _name: model})(
        "surrogate", epsilon=eps, alpha=eps / steps, epoch=steps, decay=1.0
    )
    torch.manual_seed(seed)
    t, c = time.perf_counter(), time.process_time()
    delta = ref(x, y)
    return (x + delta).clamp(0, 1).detach(), (time.perf_counter() - t, time.process_time() - c)


def run_ours(
    name: str,
    model,
    x,
    y,
    eps: float,
    seed: int,
    reference_numerics: bool = False,
    steps: int = 10,
    precision: str = "fp32",
):
    """Adversarial images of xray-audit's attack (``precision``) with ``seed``, (wall, CPU) seconds and surrogate rows.

    ``reference_numerics`` turns off what changes float rounding but not the
    algorithm (BN folding, channels_last, chunking), to separate algorithmic
    from numerical differences.
    """
    from auditor.attacks.registry import make_attack

    extra = {"mask_source": "batch"} if name == "usmm" else {}
    if reference_numerics:
        extra.update(fold_bn=False, channels_last=False, max_batch_rows=10_000)
    atk = make_attack(name, model, epsilon=eps, steps=steps, precision=precision, **extra)
    atk.ensure_setup()
    t, c = time.perf_counter(), time.process_time()
    out = atk(x, y, seed=seed)
    return out, (time.perf_counter() - t, time.process_time() - c), atk.surrogate_rows


def _success(pred: np.ndarray, y: np.ndarray) -> dict:
    k, n = int((pred != y).sum()), len(y)
    return {"k": k, "n": n, "rate": k / n, "wilson95": list(wilson(k, n))}


def _agreement(a, b) -> dict:
    """Per-pixel and per-image agreement of two adversarial batches (grey levels of 1/255)."""

    diff = (a - b).abs() * 255
    per_img = (diff <= 0.5).float().flatten(1).mean(1)
    return {
        "pixels_within_half_grey_level": float((diff <= 0.5).float().mean()),
        "images_all_pixels_within_half_level": int((per_img == 1.0).sum().item()),
        "mean_abs_diff_grey_levels": float(diff.mean()),
        "max_abs_diff_grey_levels": float(diff.max()),
    }


def compare_one(name, ref_cls, model, x_all, y_all, eps, args, fwd, peaks, tpred) -> dict:
    """Run one attack both ways over the batches; timings, agreement and success rates."""
    import torch

    n, y_np = len(x_all), y_all.numpy()
    adv = {"reference": [], "xray_audit": [], "xray_audit_reference_numerics": [], "xray_audit_bf16": []}
    wall = dict.fromkeys(adv, 0.0)
    cpu = dict.fromkeys(adv, 0.0)
    rows = 0
    for b, s in enumerate(range(0, n, args.batch)):
        xb, yb = x_all[s : s + args.batch], y_all[s : s + args.batch]
        seed = args.seed + b
        t = args.steps
        jobs = [
            ("reference", lambda: run_reference(ref_cls, model, xb, yb, eps, seed, t) + (None,)),
            ("xray_audit", lambda: run_ours(name, model, xb, yb, eps, seed, steps=t)),
        ]
        if b % 2:  # alternate the order so drift in machine load hits both alike
            jobs.reverse()
        if args.numerics_check:
            jobs.append(("xray_audit_reference_numerics", lambda: run_ours(name, model, xb, yb, eps, seed, True, t)))
        if args.bf16:
            jobs.append(
                ("xray_audit_bf16", lambda: run_ours(name, model, xb, yb, eps, seed, steps=t, precision="bf16"))
            )
        for who, job in jobs:
            out, (w, c), r = job()
            adv[who].append(out)
            wall[who] += w
            cpu[who] += c
            if who == "xray_audit":
                rows += r
    adv = {k: torch.cat(v) for k, v in adv.items() if v}
    rate = lambda secs: rows * 2 * fwd / secs / 1e9  # both run the same number of surrogate rows  # noqa: E731
    rec = {
        "wall_seconds_per_image": {k: wall[k] / n for k in adv},
        "cpu_seconds_per_image": {k: cpu[k] / n for k in adv},
        "speedup_wall": wall["reference"] / wall["xray_audit"],
        "speedup_cpu": cpu["reference"] / cpu["xray_audit"],
        "surrogate_rows": rows,
        "surrogate_gflops_cpu_time": {k: rate(cpu[k]) for k in ("reference", "xray_audit")},
        "share_of_fp32_gemm_peak_cpu_time": {k: rate(cpu[k]) / peaks["fp32"] for k in ("reference", "xray_audit")},
        "agreement_default": _agreement(adv["reference"], adv["xray_audit"]),
        "linf_grey_levels": {k: float((v - x_all).abs().max() * 255) for k, v in adv.items()},
    }
    if "xray_audit_bf16" in adv:
        rec["xray_audit_bf16"] = {
            "surrogate_gflops_cpu_time": rate(cpu["xray_audit_bf16"]),
            "share_of_bf16_gemm_peak_cpu_time": rate(cpu["xray_audit_bf16"]) / peaks["bf16"],
            "speedup_cpu_vs_reference_fp32": cpu["reference"] / cpu["xray_audit_bf16"],
        }
    if "xray_audit_reference_numerics" in adv:
        rec["agreement_reference_numerics"] = _agreement(adv["reference"], adv["xray_audit_reference_numerics"])
    with torch.no_grad():
        ps = {k: model(v).argmax(1).numpy() for k, v in adv.items()}
    rec["surrogate_prediction_agreement"] = float((ps["reference"] == ps["xray_audit"]).mean())
    rec["surrogate_success"] = {k: _success(v, y_np) for k, v in ps.items()}
    pt = {k: tpred(v) for k, v in adv.items()}
    if pt["reference"] is not None:
        rec["target_prediction_agreement"] = float((pt["reference"] == pt["xray_audit"]).mean())
        rec["target_success"] = {k: _success(v, y_np) for k, v in pt.items()}
    _print(name, rec, n)
    return rec


def _print(name: str, rec: dict, n: int) -> None:
    w, c = rec["wall_seconds_per_image"], rec["cpu_seconds_per_image"]
    sh = rec["share_of_fp32_gemm_peak_cpu_time"]
    print(
        f"\n{name}: s/image (wall) reference {w['reference']:.3f}, xray-audit {w['xray_audit']:.3f} -> "
        f"{rec['speedup_wall']:.2f}x; CPU s/image {c['reference']:.3f} vs {c['xray_audit']:.3f} -> {rec['speedup_cpu']:.2f}x"
    )
    print(
        f"  surrogate passes: {rec['surrogate_gflops_cpu_time']['reference']:.1f} vs "
        f"{rec['surrogate_gflops_cpu_time']['xray_audit']:.1f} GFLOP/s per CPU second = {sh['reference']:.0%} vs "
        f"{sh['xray_audit']:.0%} of the fp32 GEMM peak"
    )
    if "xray_audit_bf16" in rec:
        b = rec["xray_audit_bf16"]
        print(
            f"  xray-audit in bf16: CPU s/image {c['xray_audit_bf16']:.3f} ({b['speedup_cpu_vs_reference_fp32']:.2f}x the "
            f"reference in fp32); {b['surrogate_gflops_cpu_time']:.1f} GFLOP/s = "
            f"{b['share_of_bf16_gemm_peak_cpu_time']:.0%} of the bf16 GEMM peak"
        )
    for key, label in (
        ("agreement_default", "xray-audit defaults"),
        ("agreement_reference_numerics", "xray-audit, BN unfolded, NCHW, one chunk"),
    ):
        if key in rec:
            a = rec[key]
            print(
                f"  vs reference ({label}): {a['pixels_within_half_grey_level']:.2%} of pixels within 0.5 grey level, "
                f"{a['images_all_pixels_within_half_level']}/{n} images entirely; mean |diff| "
                f"{a['mean_abs_diff_grey_levels']:.3f}, max {a['max_abs_diff_grey_levels']:.1f} levels"
            )
    for where in ("surrogate", "target"):
        if f"{where}_success" in rec:
            parts = ", ".join(
                f"{k} {v['k']}/{v['n']} [{v['wilson95'][0]:.2f}, {v['wilson95'][1]:.2f}]"
                for k, v in rec[f"{where}_success"].items()
            )
            print(f"  {where}: prediction agreement {rec[f'{where}_prediction_agreement']:.0%}; success {parts}")


def main(argv: list[str] | None = None) -> int:  # noqa: C901 - a linear benchmark script
    """Run the comparison; prints a table and (with --json) writes the figures. Returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="xray-audit surrogate checkpoint (model.pt); default: random ResNet18")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="image folder or CSV manifest")
    ap.add_argument("--target", help="target ONNX model for transfer agreement (optional)")
    ap.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="folder holding transferattack/")
    ap.add_argument("--n", type=int, default=10, help="images (class-stratified, seeded)")
    ap.add_argument("--batch", type=int, default=5, help="images per attack batch (same for both)")
    ap.add_argument("--size", type=int, default=128, help="image size without a checkpoint")
    ap.add_argument("--eps", type=float, default=8.0, help="L-inf budget in 1/255 units")
    ap.add_argument("--attacks", default="mifgsm,usmm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--steps",
        type=int,
        default=10,
        help="iterations T of both (10 = official); --steps 1 isolates one step's float differences "
        "from their amplification over T",
    )
    ap.add_argument(
        "--no-numerics-check",
        dest="numerics_check",
        action="store_false",
        help="skip the extra xray-audit run with the reference's numerics (BN unfolded, NCHW, one chunk)",
    )
    ap.add_argument(
        "--no-bf16",
        dest="bf16",
        action="store_false",
        help="skip the extra xray-audit run in bf16 (timed against the bf16 GEMM peak)",
    )
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    ref_root = Path(args.reference)
    if not (ref_root / "transferattack" / "attack.py").is_file():
        print(f"skipped: reference implementation not found in {ref_root}", file=sys.stderr)
        return 0
    if not Path(args.data).exists():
        print(f"skipped: data {args.data} not found", file=sys.stderr)
        return 0
    sys.path.insert(0, str(REPO))
    import torch

    refs = reference_classes(ref_root)
    model, names, desc = load_model(args.checkpoint, args.size)
    size = int(model.size[0])
    x_all, y_all = load_batch(args.data, names, size, args.n, args.seed)
    target = None
    if args.target:
        from auditor.models.onnx import OnnxClassifier

        target = OnnxClassifier(args.target, device="cpu")
    eps = args.eps / 255.0
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
        platform.processor(),
    )
    (peak32, cands32), (peak16, cands16) = gemm_peak(torch.float32), gemm_peak(torch.bfloat16)
    peaks = {"fp32": peak32, "bf16": peak16}
    fwd = forward_flops(model, size)
    print(
        f"host: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), load avg "
        f"{os.getloadavg()[0]:.2f}, LD_PRELOAD={os.environ.get('LD_PRELOAD', '') or '-'}"
    )
    print(f"GEMM peak (best library and size, per CPU second): fp32 {peak32:.1f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s")
    print(
        "  candidates: "
        + ", ".join(f"{k} {v:.1f}" for k, v in {**cands32, **{k + " bf16": v for k, v in cands16.items()}}.items())
    )
    print(f"surrogate: {desc}; {size}x{size}; fwd {fwd / 1e9:.3f} GFLOP/image; {len(x_all)} images; eps {args.eps}/255")

    def tpred(x):
        if target is None:
            return None
        return np.asarray(target.predict_proba(x.numpy())).argmax(1)

    results = {
        "host": cpu,
        "threads": torch.get_num_threads(),
        "gemm_gflops": peaks,
        "gemm_candidates_gflops": {"fp32": cands32, "bf16": cands16},
        "surrogate": desc,
        "size": size,
        "n": len(x_all),
        "eps": args.eps,
        "fwd_gflop": fwd / 1e9,
        "attacks": {},
    }
    for name in args.attacks.split(","):
        if name not in refs:
            print(f"skipped: {name} has no reference counterpart here (choose mifgsm, usmm)")
            continue
        # warm-up both code paths on one image (allocator, oneDNN primitive caches)
        run_reference(refs[name], model, x_all[:1], y_all[:1], eps, args.seed)
        run_ours(name, model, x_all[:1], y_all[:1], eps, args.seed)
        if args.bf16:
            run_ours(name, model, x_all[:1], y_all[:1], eps, args.seed, precision="bf16")
        results["attacks"][name] = compare_one(name, refs[name], model, x_all, y_all, eps, args, fwd, peaks, tpred)

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
