"""APGD parity (issue 23 item 1): xray-audit's APGD against torchattacks' APGD / APGDT on the same model,
images, budgets, iterations and seeds.

A small CNN (``small_cnn``, or ``resnet18`` with ``--arch``) is trained for a few seconds on synthetic
images whose class is the bin of their mean grey level (so some images sit near a class boundary and the
attack success rate is neither 0 nor 1); the images it classifies right are attacked by

* APGD-CE (ours: ``APGD(losses=("ce",))``; torchattacks: ``APGD(loss="ce")``), K = 3 and K = 2;
* untargeted APGD-DLR, K = 3 (ours: one :meth:`APGD.run` with the DLR loss and no target; torchattacks:
  ``APGD(loss="dlr")``, which needs a third logit);
* targeted APGD-DLR, K = 4 (ours: ``APGD(losses=("dlr",), targets=3)``; torchattacks: ``APGDT(n_classes=4)``;
  APGDT's loss reads a fourth logit, so K = 3 cannot run there),

at ε in {2, 4, 8}/255, the same iterations and one restart. Each row gives both success rates with 95 %
Wilson intervals and says whether each rate lies inside the other's interval ("agree"); the two random
starts differ (ours draws from a seeded ``torch.Generator``, torchattacks from the global RNG seeded the
same), so agreement is statistical, not image-for-image.

    OMP_NUM_THREADS=1 python bench/apgd_parity.py --quick    # 200 images, the CE rows: ~3 min on a loaded 2-core VM
    OMP_NUM_THREADS=1 python bench/apgd_parity.py            # 200 images, every row: ~10 min there
    OMP_NUM_THREADS=1 python bench/apgd_parity.py --images 300   # bench/results/apgd/2026-12-06.txt (16 min)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def host_line() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        model = "?"
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"host: {model}; {os.cpu_count()} CPUs; load average {load}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"


def synthetic(n: int, k: int, size: int, seed: int):
    """Images whose class is the bin of their mean grey level in [0.1, 0.9], with pixel noise and a random
    smooth gradient (so the network has to average, as on the tests' brightness images)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    level = 0.1 + 0.8 * torch.rand(n, generator=g)
    y = torch.clamp(((level - 0.1) / 0.8 * k).long(), max=k - 1)
    ramp = torch.linspace(-1, 1, size)
    tilt = (torch.rand(n, 2, generator=g) - 0.5) * 0.2
    grad = tilt[:, 0, None, None] * ramp[None, :, None] + tilt[:, 1, None, None] * ramp[None, None, :]
    noise = (torch.rand(n, size, size, generator=g) - 0.5) * 0.2
    x = (level[:, None, None] + grad + noise).clamp(0, 1)[:, None]
    return x, y


def train(arch: str, k: int, size: int, steps: int, seed: int):
    import torch
    import torch.nn.functional as F

    from auditor.reference_models.registry import build_model

    torch.manual_seed(seed)
    net = build_model(arch, k, 1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = synthetic(4096, k, size, seed + 100)
    net.train()
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,))
        loss = F.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval(), steps


def fooled(net, x, y):
    import torch

    with torch.no_grad():
        return torch.cat([net(x[s : s + 64]).argmax(1) for s in range(0, len(x), 64)]) != y


def ours(net, x, y, eps, steps, seed, mode, k):
    import torch

    from auditor.attacks.apgd import APGD

    if mode == "dlr":  # one untargeted DLR run (the scan's DLR run is targeted with K >= 3)
        atk = APGD(net, epsilon=eps, steps=steps, losses=("dlr",), device="cpu")
        atk.ensure_setup()
        gen = torch.Generator().manual_seed(seed)
        e = torch.full((len(x), 1, 1, 1), eps)
        x_adv, _ = atk.run(x, y, e, "dlr", gen, None)
        return x_adv
    losses = ("ce",) if mode == "ce" else ("dlr",)
    atk = APGD(net, epsilon=eps, steps=steps, losses=losses, restarts=1, targets=k - 1, device="cpu")
    return atk(x, y, seed=seed)


def theirs(net, x, y, eps, steps, seed, mode, k):
    import torchattacks

    if mode == "dlr-t":
        atk = torchattacks.APGDT(net, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, n_classes=k)
    else:
        atk = torchattacks.APGD(net, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, loss=mode)
    return atk(x, y)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 images, the CE rows only")
    ap.add_argument("--arch", default="small_cnn", choices=["small_cnn", "resnet18"])
    ap.add_argument("--size", type=int, default=None, help="image side (default 32 for small_cnn, 64 for resnet18)")
    ap.add_argument("--images", type=int, default=None, help="attacked images per row (default 200)")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--train-steps", type=int, default=150, help="Adam steps of 64 images (a few seconds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "apgd"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    size = args.size or (32 if args.arch == "small_cnn" else 64)
    n_img = args.images or 200
    rows = [("ce", 3), ("ce", 2)] if args.quick else [("ce", 3), ("ce", 2), ("dlr", 3), ("dlr-t", 4)]
    import torchattacks

    lines = [
        f"APGD parity: xray-audit APGD vs torchattacks {torchattacks.__version__} (torch {torch.__version__})",
        host_line(),
        f"model {args.arch} at {size} px trained {args.train_steps} Adam steps on synthetic grey-level bins; "
        f"{args.steps} iterations, 1 restart, seed {args.seed}; success = share of the right-classified images "
        "misclassified after the attack; 95 % Wilson intervals",
        "",
        f"{'loss':6s} {'K':>2s} {'eps':>6s} {'n':>4s} {'ours':>22s} {'torchattacks':>22s} {'agree':>6s} "
        f"{'only ours':>9s} {'only ta':>8s} {'s ours':>7s} {'s ta':>7s}",
    ]
    print("\n".join(lines), flush=True)
    from auditor.metrics import wilson_interval

    nets: dict[int, object] = {}
    all_agree = True
    for mode, k in rows:
        if k not in nets:
            t_train = time.perf_counter()
            net, steps_done = train(args.arch, k, size, args.train_steps, args.seed)
            t_train = time.perf_counter() - t_train
            xt, yt = synthetic(4 * n_img, k, size, args.seed + 7)
            right = ~fooled(net, xt, yt)
            acc = float(right.float().mean())
            x, y = xt[right][:n_img], yt[right][:n_img]
            nets[k] = (net, x, y)
            msg = f"  (K={k}: {steps_done} training steps in {t_train:.0f} s, clean accuracy {acc:.3f}, {len(x)} right-classified images)"
            print(msg, flush=True)
            lines.insert(4 + len(nets) - 1, msg)
        net, x, y = nets[k]
        for e in (2, 4, 8):
            eps = e / 255
            t0 = time.perf_counter()
            xa = ours(net, x, y, eps, args.steps, args.seed, mode, k)
            t1 = time.perf_counter()
            xb = theirs(net, x, y, eps, args.steps, args.seed, mode, k).detach()
            t2 = time.perf_counter()
            assert float((xa - x).abs().max()) <= eps + 1e-6 and float((xb - x).abs().max()) <= eps + 1e-6
            fa, fb = fooled(net, xa, y), fooled(net, xb, y)
            n = len(y)
            ka, kb = int(fa.sum()), int(fb.sum())
            ca, cb = wilson_interval(ka, n), wilson_interval(kb, n)
            agree = ca[0] <= kb / n <= ca[1] and cb[0] <= ka / n <= cb[1]
            all_agree &= agree
            line = (
                f"{mode:6s} {k:2d} {e:>4d}/255 {n:4d} "
                f"{ka / n:6.3f} [{ca[0]:.3f},{ca[1]:.3f}] {kb / n:6.3f} [{cb[0]:.3f},{cb[1]:.3f}] "
                f"{'yes' if agree else 'NO':>6s} {int((fa & ~fb).sum()):9d} {int((fb & ~fa).sum()):8d} "
                f"{t1 - t0:7.1f} {t2 - t1:7.1f}"
            )
            print(line, flush=True)
            lines.append(line)
    tail = [
        "",
        "dlr = untargeted DLR (one run of ours); dlr-t = targeted DLR over the K-1 other classes (APGDT).",
        f"all rows agree within the 95 % intervals: {'yes' if all_agree else 'NO'}",
        host_line().replace("host:", "at the end:"),
    ]
    print("\n".join(tail))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    suffix = ("-quick" if args.quick else "") + ("" if args.arch == "small_cnn" else f"-{args.arch}")
    path = out / f"{name}{suffix}.txt"
    path.write_text("\n".join(lines + tail) + "\n")
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
