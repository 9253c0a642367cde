"""CPU seconds of the cached-attack scan of ``bench/scale.py`` with and without the clean images' spill, alternated
in one process (the spill off by replacing :meth:`auditor.data.spill.ScanScratch.clean_spill`), so that the two
share the host's load; also the decodes of clean files per image and scan.

Needs a root prepared by ``bench/scale.py --attack-sizes N`` (its archive, cache and ``tiny.onnx``):

    OMP_NUM_THREADS=1 python bench/scale.py --sizes "" --attack-sizes 1000 --modes single --root /tmp/R --build-only
    OMP_NUM_THREADS=1 XRAY_AUDIT_JEMALLOC=0 python bench/clean_spill.py --root /tmp/R --size 1000 --reps 3

The first pair also warms the process up (imports, the model's session); compare the later ones.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import auditor.data.stream as stream  # noqa: E402
from auditor.cli import cli  # noqa: E402
from auditor.data.spill import ScanScratch  # noqa: E402


def main() -> None:
    """Run the scans and print one line per scan: mode, own CPU seconds, decodes per image, stage seconds."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="a bench/scale.py root with the attack case built")
    ap.add_argument("--size", type=int, default=1000, help="the attack case's size (archive_<size>, cache_<size>)")
    ap.add_argument("--reps", type=int, default=3, help="pairs of scans (default 3)")
    args = ap.parse_args()
    root = args.root
    common = ["scan", str(root / "tiny.onnx"), "--data", str(root / f"archive_{args.size}"), "--format", "json"]
    common += ["-q", "--batch-size", "32", "--n-boot", "1000", "--attacks", "mifgsm", "--eps", "4,8"]
    common += ["--surrogate", "target", "--cache-dir", str(root / f"cache_{args.size}"), "--attack-batch-size", "64"]
    common += ["--precision", "fp32", "--defenses", "jpeg:75"]
    spill, decode = ScanScratch.clean_spill, stream.load_image_noted
    decodes: collections.Counter = collections.Counter()
    stream.load_image_noted = lambda p, size=None: decodes.update([str(p)]) or decode(p, size)
    for _ in range(args.reps):
        for mode in ("spill", "no spill"):
            ScanScratch.clean_spill = spill if mode == "spill" else (lambda self, n, size: None)
            out = root / f"out_clean_spill_{mode.replace(' ', '_')}"
            decodes.clear()
            before = resource.getrusage(resource.RUSAGE_SELF)
            try:
                cli.main([*common, "--out", str(out)], standalone_mode=False)
            except SystemExit:
                pass
            after = resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            stages = json.loads((out / "results.json").read_text())["environment"]["seconds_per_stage"]
            per_image = sum(decodes.values()) / max(1, len(decodes))
            shown = " ".join(f"{k}={v['seconds']:.2f}" for k, v in sorted(stages.items()) if v["seconds"] >= 0.1)
            print(f"{mode:8s} own CPU {cpu:5.1f} s, {per_image:.1f} decodes per image; {shown}", flush=True)


if __name__ == "__main__":
    main()
