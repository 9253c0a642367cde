"""How much of the epsilon budget survives 8-bit quantisation (issue 9): mean |delta| in grey levels.

Real 8-bit chest X-rays at their own size (float32, as the scan loads them), MI-FGSM on a
random-init ResNet18 (the loss surface matters little here: MI-FGSM puts most pixels on the edge).
Prints, per epsilon, the mean |delta| of the float attack, of the old quantisation (float bounds with
a 1e-6 tolerance) and of :func:`auditor.attacks.quantize.quantize`, and the share of edge pixels lost.

    OMP_NUM_THREADS=1 python bench/quant_budget.py ../shared/data/cxr --n 16
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def old_quantize(x_adv: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """The quantisation before issue 9 (float bounds, 1e-6 tolerance), for comparison only."""
    a, c, e = np.asarray(x_adv, np.float64) * 255, np.asarray(x, np.float64) * 255, eps * 255
    lo = np.clip(np.ceil(c - e - 1e-6), 0, 255)
    hi = np.clip(np.floor(c + e + 1e-6), 0, 255)
    k = np.clip(np.rint(a), lo, hi)
    return np.where(lo <= hi, k, np.clip(np.rint(c), 0, 255)).astype(np.uint8)


def main() -> None:
    from auditor.attacks.mifgsm import MIFGSM
    from auditor.attacks.quantize import budget_levels, quantize
    from auditor.data import load_images, open_dataset
    from auditor.models.torch import TorchClassifier
    from auditor.reference_models.registry import build_model
    from auditor.types import ModelSpec

    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    samples = list(open_dataset(args.data).samples)
    samples = samples[:: max(1, len(samples) // args.n)][: args.n]
    x, kept, _ = load_images(samples, (args.size, args.size))
    g = np.rint(x.astype(np.float64) * 255)
    print(f"{len(kept)} images {args.size}x{args.size}, on the 8-bit grid: {np.abs(x * 255.0 - g).max() < 1e-3}")
    torch.manual_seed(0)
    spec = ModelSpec(channels=1, height=args.size, width=args.size, class_names=("normal", "pneumonia", "pneumothorax"))
    model = TorchClassifier(build_model("resnet18", 3, 1), spec).eval()
    y = torch.from_numpy(np.array([0, 1, 2] * len(kept))[: len(kept)])
    print("eps  mean|d| float  old quantise  new quantise  edge pixels lost (old / new)")
    for e in (4, 8, 16):
        eps = e / 255
        a = MIFGSM(model, epsilon=eps, steps=10)(torch.from_numpy(x), y, seed=0).numpy()
        d = np.abs(a.astype(np.float64) - x) * 255
        edge = np.abs(d - budget_levels(eps)) < 1e-3
        ko, kn = (q(a, x, eps).astype(np.float64) for q in (old_quantize, quantize))
        lost = [float((np.abs(k - g)[edge] != e).mean()) for k in (ko, kn)]
        print(
            f"{e:3d}  {d.mean():13.3f}  {np.abs(ko - g).mean():12.3f}  {np.abs(kn - g).mean():12.3f}"
            f"  {lost[0]:.1%} / {lost[1]:.1%}   (max |k-g|: {int(np.abs(ko - g).max())} / {int(np.abs(kn - g).max())})"
        )


if __name__ == "__main__":
    main()
