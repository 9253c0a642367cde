"""Does bf16 keep attack success within 2 points of fp32 on a trained surrogate? (docs/algorithms.md §11)

Usage: python bench/bf16_check.py SURROGATE.pt TARGET.onnx DATA_DIR [--n 40] [--eps 8] [--attacks usmm,mifgsm]
Prints, per attack, the white-box (surrogate) and transfer (target) attack success rates for fp32 and
bf16 and their difference. Not part of the tests.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("surrogate")
    ap.add_argument("target")
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--eps", type=float, default=8)
    ap.add_argument("--attacks", default="usmm,mifgsm")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from auditor.attacks.set_records import SetData, SetRun
    from auditor.attacks.sets import build_adversarial_set
    from auditor.data import fingerprint, load_images, map_labels, open_dataset, stratified_subset
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.surrogate import load_surrogate

    target = OnnxClassifier(args.target, device="cpu")
    spec = target.spec
    ds = open_dataset(args.data)
    keep = stratified_subset(ds.labels, args.n, args.seed)
    samples = [ds.samples[i] for i in keep]
    x, kept, _ = load_images(samples, (spec.height, spec.width))
    samples, manifest = fingerprint([samples[i] for i in kept])
    y = map_labels([s.label for s in samples], spec.class_names)
    sur = load_surrogate(args.surrogate, spec, args.target, "cpu")
    names = [s.rel_path for s in samples]
    print(f"{len(x)} images at {spec.height}px, eps {args.eps}/255, surrogate {sur.identity.get('label')}")
    for attack in args.attacks.split(","):
        row = {}
        for precision in ("fp32", "bf16"):
            with tempfile.TemporaryDirectory() as cache:
                t0 = time.perf_counter()
                params = {"epsilon": args.eps / 255}
                if attack == "usmm":
                    params.update(mask_pool=x, mask_pool_labels=y)
                aset = build_adversarial_set(
                    attack,
                    params,
                    sur,
                    SetData(x, y, names, manifest),
                    SetRun(cache, args.seed, batch_size=8, device="cpu", precision=precision),
                )
                secs = time.perf_counter() - t0
            with torch.inference_mode():
                sp = sur.module(torch.from_numpy(aset.images)).argmax(1).numpy()
            tp = target.predict_proba(aset.images).argmax(1)
            row[precision] = (float(np.mean(sp != y)), float(np.mean(tp != y)), secs / len(x))
        (ws32, ts32, s32), (ws16, ts16, s16) = row["fp32"], row["bf16"]
        print(
            f"{attack}: white-box ASR fp32 {ws32:.3f} bf16 {ws16:.3f} (diff {100 * (ws16 - ws32):+.1f} pt); "
            f"transfer ASR fp32 {ts32:.3f} bf16 {ts16:.3f} (diff {100 * (ts16 - ts32):+.1f} pt); "
            f"s/image {s32:.2f} vs {s16:.2f}"
        )


if __name__ == "__main__":
    main()
