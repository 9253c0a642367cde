"""Benchmark of the attack layer on CPU: bare surrogate passes vs MI-FGSM / USMM / STM.

Prints, per surrogate (ResNet50, ResNet18) and resolution (224, 128) and per
variant (fp32 NCHW, fp32 channels_last, bf16 channels_last):

* bare surrogate forward + backward-to-input, images/s and GFLOP/s
  (FLOP counts from docs/algorithms.md §11; backward-to-input = one more forward);
* MI-FGSM, USMM and STM (randconv backend) seconds per image (T = 10) and
  surrogate rows/s; loop overhead = attack time / (its rows at the bare rate) - 1.

Run on a quiet machine and compare ratios within one run. When
``libjemalloc.so.2`` exists (Debian package libjemalloc2) the script re-executes
itself with it in ``LD_PRELOAD`` (glibc malloc returns big activation buffers
to the kernel after every pass, which is slow in VMs); ``--no-jemalloc`` opts out.

    python bench/attacks.py --quick          # ResNet18 @128 only, fewer repeats
    python bench/attacks.py                  # full table (tens of minutes)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)
#: forward GFLOP per image (docs/algorithms.md §11)
FWD_GFLOP = {("resnet50", 224): 8.17, ("resnet50", 128): 2.67, ("resnet18", 224): 3.63, ("resnet18", 128): 1.18}


def _maybe_reexec_with_jemalloc(disabled: bool) -> str:
    pre = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in pre:
        return "jemalloc (LD_PRELOAD)"
    if disabled:
        return "glibc malloc"
    lib = next((p for p in JEMALLOC_PATHS if Path(p).is_file()), None)
    if lib is None:
        return "glibc malloc (libjemalloc.so.2 not found; apt-get install libjemalloc2)"
    env = dict(os.environ, LD_PRELOAD=f"{lib}:{pre}" if pre else lib)
    os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return "unreachable"


def main() -> None:  # noqa: C901 - a linear script
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="ResNet18 @128 only, fewer repeats")
    ap.add_argument("--no-jemalloc", action="store_true", help="do not re-exec with jemalloc")
    ap.add_argument("--archs", default=None, help="comma list, e.g. resnet18,resnet50")
    ap.add_argument("--sizes", default=None, help="comma list, e.g. 224,128")
    ap.add_argument(
        "--variants",
        default="ref,fp32-cl,bf16-cl",
        help="'ref' (fp32, NCHW, batch 20, BN unfolded: the reference implementation's setting) or "
        "precision-layout[-bROWS][-nofold], e.g. fp32-nchw, bf16-cl-b30, fp32-cl-nofold",
    )
    ap.add_argument("--attacks", default="mifgsm,usmm,stm")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    allocator = _maybe_reexec_with_jemalloc(args.no_jemalloc)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import torch

    from auditor.attacks.base import default_batch_rows
    from auditor.attacks.device import cpu_has_native_bf16, precision_context
    from auditor.attacks.registry import make_attack
    from auditor.models.torch import TorchClassifier
    from auditor.reference_models.registry import build_model
    from auditor.types import IMAGENET_MEAN, IMAGENET_STD, ModelSpec

    if args.threads:
        torch.set_num_threads(args.threads)
    archs = (args.archs or ("resnet18" if args.quick else "resnet50,resnet18")).split(",")
    sizes = [int(s) for s in (args.sizes or ("128" if args.quick else "224,128")).split(",")]
    reps = args.reps or (3 if args.quick else 5)
    variants = args.variants.split(",")
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, allocator: {allocator}, "
        f"native bf16: {cpu_has_native_bf16()}, load avg {os.getloadavg()[0]:.2f}"
    )

    def median_time(fn, n: int) -> float:
        fn()  # warm-up
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    for arch in archs:
        for size in sizes:
            gflop = FWD_GFLOP.get((arch, size), float("nan"))
            spec = ModelSpec(
                channels=3,
                height=size,
                width=size,
                scaling="imagenet",
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                class_names=("normal", "pneumonia", "pneumothorax"),
            )
            torch.manual_seed(0)
            model = TorchClassifier(build_model(arch, 3, 3), spec).eval().requires_grad_(False)
            rows = default_batch_rows(size, size)
            print(f"\n== {arch} @{size}  (fwd {gflop} GFLOP/image, surrogate chunk {rows} rows) ==")
            print(
                f"{'variant':<14} {'what':<22} {'img/s':>8} {'rows/s':>8} {'s/img':>7} {'GFLOP/s':>8} {'overhead':>8}"
            )
            for variant in variants:
                if variant == "ref":  # the reference implementation's setting: fp32, NCHW, batch 20, BN unfolded
                    precision, cl, vrows, fold = "fp32", False, 20, False
                else:
                    parts = variant.split("-")
                    precision, cl = parts[0], parts[1] == "cl"
                    vrows = next((int(p[1:]) for p in parts[2:] if p.startswith("b")), rows)
                    fold = "nofold" not in parts
                model.set_channels_last(False)
                fmt = torch.channels_last if cl else torch.contiguous_format
                x_rows = torch.rand(vrows, 1, size, size)
                bare_rate = None
                for name in args.attacks.split(","):
                    per_chunk = {"mifgsm": 1, "usmm": 15, "stm": 20}[name]
                    n_img = max(1, vrows // per_chunk)
                    if args.quick and name != "mifgsm":
                        n_img = min(n_img, 2)
                    x = torch.rand(n_img, 1, size, size)
                    y = torch.arange(n_img) % 3
                    atk = make_attack(
                        name,
                        model,
                        epsilon=8 / 255,
                        precision=precision,
                        channels_last=cl,
                        max_batch_rows=vrows,
                        fold_bn=fold,
                    )
                    atk.ensure_setup()
                    net = atk.model

                    def bare() -> None:
                        leaf = x_rows.clone().contiguous(memory_format=fmt).requires_grad_(True)
                        with precision_context(precision, torch.device("cpu")):
                            out = net(leaf)
                        torch.autograd.grad(out.float().logsumexp(1).sum(), leaf)

                    if bare_rate is None:
                        bare_rate = vrows / median_time(bare, reps)
                        print(
                            f"{variant:<14} {'bare fwd+bwd-to-input':<22} {bare_rate:8.1f} {bare_rate:8.1f} "
                            f"{1 / bare_rate:7.3f} {bare_rate * 2 * gflop:8.1f} {'':>8}",
                            flush=True,
                        )
                    t = median_time(lambda: atk(x, y, seed=0), 1)
                    # bare passes right after, same conditions: the overhead is a ratio within seconds
                    bare_after = vrows / median_time(bare, 2)
                    total_rows = atk.steps * atk.num_copies * n_img
                    rate = total_rows / t
                    overhead = (bare_rate + bare_after) / 2 / rate - 1
                    print(
                        f"{variant:<14} {atk.label[:22]:<22} {n_img / t:8.2f} {rate:8.1f} {t / n_img:7.3f} "
                        f"{rate * 2 * gflop:8.1f} {overhead:8.1%}",
                        flush=True,
                    )
                    bare_rate = bare_after
            model.set_channels_last(False)


if __name__ == "__main__":
    main()
