"""Archive-scale benchmark (issue 16): wall time, images/s and peak RSS of whole scans at 1k / 10k / 100k images.

Synthetic archives are made by re-using the real Kermany radiographs of ``../shared/data/kermany``
(224x224 JPEGs, two classes), cycled in a seeded order into a temporary root. Each copy gets a
unique trailer after the JPEG end-of-image marker (decoders ignore it): its pixels are the
source's, but its SHA-256 differs, so the scan's exact-duplicate check does not fold the copies
back into the 5,190 originals (hard links would be folded). No link points out of the root.

Per archive size and mode (``single``: one process; ``ray``: ``--ray-address local`` with
``--workers``) the script runs ``python -m auditor scan`` in a subprocess and prints:

* wall seconds of the whole scan and images/s (archive images / wall);
* ``clean img/s``: the clean-inference stage from results.json (``environment.seconds_per_stage``);
* peak RSS: the scan process's own maximum (``getrusage``, exact) and, sampled every 0.2 s, the
  peak of the summed RSS of its whole process tree (for Ray: driver, raylet, GCS and workers);
* own CPU s: user + system CPU seconds of the scan process and its threads (``getrusage``; not its Ray
  workers), which a loaded host distorts less than wall seconds.

Every run prints the host (``lscpu`` model name) and, per case, the targets of issue 28: the wall time over
the sum of the inference stages (``clean``, ``attacked``, ``defended``, ``adaptive``; target <= 1.3 for the
cached-attack case), the share of the wall time outside every named stage (target 0), and with ``--ratio``
the clean stage over a bare session (target >= 0.5 decode-bound, >= 0.95 inference-bound). ``--code DIR``
runs the scans with another checkout's ``auditor`` (e.g. the commit before a change, for before/after tables).

``--ratio`` also times a bare ONNX Runtime session (same model, batch size and session options,
images decoded beforehand) and prints the clean stage's images/s as a fraction of it.
``--attack-sizes`` adds a case with two cached MI-FGSM sets (eps 4 and 8, ``--surrogate target``,
``--attack-batch-size 64 --precision fp32``) and one defense (JPEG q75): a first scan builds the
sets (not reported; no defense, detector or bootstrap), the reported scan finds them in the cache
(printed per set), so it measures evaluation of clean + 2 attacked + 3 defended conditions with
every attacked image read back from the cache. ``--build-only`` stops after building;
``--sets-built`` skips the build scan (for sets built by an earlier ``--build-only`` run).
``--attack-steps`` sets the MI-FGSM steps of those sets (a cached scan's cost does not depend on them; 1 step
builds 100k sets in a tenth of the time of the default 10).

Models (random weights; the figures are about cost, not accuracy): ``tiny`` (two strided
convolutions, ~0.05 GFLOP per image, so a scan is decode-bound) and ``resnet18`` (torchvision
ResNet-18, 1.8 GFLOP per 224 px image, so a scan is inference-bound).

    OMP_NUM_THREADS=1 python bench/scale.py --sizes 1000,10000 --ratio
    OMP_NUM_THREADS=1 python bench/scale.py --sizes 100000 --modes single --model tiny
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the checkout whose ``auditor`` runs the scans (``--code``)
CODE = [ROOT]
#: the inference stages of results.json ``environment.seconds_per_stage``
INFERENCE_STAGES = ("clean", "attacked", "defended", "adaptive")
KERMANY = Path(os.environ.get("XRAY_AUDIT_SHARED", ROOT.parent / "shared")) / "data" / "kermany"
CLASSES = ("normal", "pneumonia")


def make_archive(root: Path, n: int, seed: int = 0) -> Path:
    """``root/archive_<n>/<class>/<stem>__<i>.jpeg``: ``n`` byte-distinct copies of Kermany images (kept between runs)."""
    out = root / f"archive_{n}"
    if (out / ".complete").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    sources = sorted((c, p) for c in CLASSES for p in (KERMANY / c).glob("*.jpeg"))
    random.Random(seed).shuffle(sources)
    for c in CLASSES:
        (out / c).mkdir(parents=True)
    for i in range(n):
        cls, src = sources[i % len(sources)]
        (out / cls / f"{src.stem}__{i}.jpeg").write_bytes(src.read_bytes() + f"xray-audit-scale-copy-{i}".encode())
    (out / ".complete").write_text(str(n))
    return out


def make_model(path: Path, kind: str) -> Path:
    """A random-weight 224 px two-class ONNX classifier (grey input, ImageNet-free ``unit`` scaling)."""
    if path.is_file():
        return path
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(0)
    if kind == "tiny":
        net = nn.Sequential(
            nn.Conv2d(1, 8, 7, stride=4, padding=3),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 2),
        )
    else:
        from torchvision.models import resnet18

        net = resnet18(num_classes=2)
        net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    net.eval()
    torch.onnx.export(
        net,
        torch.zeros(1, 1, 224, 224),
        str(path),
        input_names=["pixels"],
        output_names=["logits"],
        dynamic_axes={"pixels": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    model = onnx.load(str(path))
    for k, v in {"class_names": json.dumps(list(CLASSES)), "scaling": "unit"}.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_scan(model: Path, archive: Path, out: Path, mode: str, workers: int, extra: list[str]) -> dict:
    """One ``xray-audit scan`` in a subprocess: wall seconds, peak RSS (own and process tree), stage figures."""
    cmd = [
        sys.executable,
        "-m",
        "auditor",
        "scan",
        str(model),
        "--data",
        str(archive),
        "--out",
        str(out),
        "--format",
        "json",
        "-q",
        "--batch-size",
        "32",
        *extra,
    ]
    if mode == "ray":
        cmd += ["--ray-address", "local", "--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(CODE[0]), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.perf_counter()
    # run from the checkout: ``python -m`` puts the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=CODE[0])
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            stop.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    log = proc.stdout.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"scan failed ({status}):\n{log[-2000:]}")
    doc = json.loads((out / "results.json").read_text())
    return {
        "seconds_total": doc["environment"].get("seconds_total"),
        "wall": wall,
        "own_rss": usage.ru_maxrss * 1024,
        # CPU seconds of the scan process and its threads (not its Ray workers): less sensitive to the host's load
        "own_cpu": usage.ru_utime + usage.ru_stime,
        "tree_rss": peak[0],
        "n": doc["data"]["n_images"],
        "stages": doc["environment"].get("seconds_per_stage", {}),
        "conditions": [c["name"] for c in doc["conditions"]],
        "sets": doc.get("extras", {}).get("adversarial_sets", []),
        "outcomes": [(c["name"], c["probabilities"], c["metrics"]) for c in doc["conditions"]],
    }


def bare_ort(model: Path, archive: Path, batch: int, n: int = 512, repeats: int = 3) -> float:
    """Images/s of a bare ONNX Runtime session (the scan's session options) on pre-decoded images."""
    import numpy as np

    sys.path.insert(0, str(CODE[0]))
    from auditor.data import load_image
    from auditor.models.onnx import make_session

    paths = sorted(archive.glob("*/*.jpeg"))[:n]
    x = np.stack([load_image(p, (224, 224)) for p in paths])[:, None].astype(np.float32)
    sess = make_session(model, "cpu")
    name = sess.get_inputs()[0].name
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            sess.run(None, {name: x[i : i + batch]})
        best = max(best, len(x) / (time.perf_counter() - t0))
    return best


def ratio_in_process(model: Path, archive: Path, batch: int = 32, n: int = 512, rounds: int = 3) -> tuple[float, float]:
    """Median images/s of the scan's streamed clean inference (decoding on the loader threads) and of a bare
    ONNX Runtime session on the same images decoded beforehand, alternated in one process."""
    import statistics

    import numpy as np

    sys.path.insert(0, str(CODE[0]))
    from auditor.data.stream import SampleImages
    from auditor.evaluation import predict_stream
    from auditor.models.onnx import OnnxClassifier, make_session

    paths = sorted(archive.glob("*/*.jpeg"))[:n]
    lazy = SampleImages(paths, (224, 224))
    x = np.asarray(lazy)
    clf = OnnxClassifier(model, device="cpu")
    sess = make_session(model, "cpu")
    name = sess.get_inputs()[0].name
    streamed, bare = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        predict_stream(clf, lazy, batch)
        streamed.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            sess.run(None, {name: x[i : i + batch]})
        bare.append(n / (time.perf_counter() - t0))
    return statistics.median(streamed), statistics.median(bare)


def host_model() -> str:
    """The host's CPU as ``lscpu`` names it (``Model name``), or the platform's processor string."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def target_line(r: dict, kind: str) -> str:
    """Wall time over the inference stages (target <= 1.3 for the cached-attack case) and time outside stages."""
    stages = r["stages"]
    inference = sum(stages.get(k, {}).get("seconds", 0.0) for k in INFERENCE_STAGES)
    named = sum(v.get("seconds", 0.0) for v in stages.values())
    total = r.get("seconds_total") or 0.0
    ratio = r["wall"] / inference if inference else float("nan")
    outside = max(0.0, total - named)
    return (
        f"targets: wall / inference stages = {r['wall']:.1f} / {inference:.1f} = {ratio:.2f}"
        f"{' (target <= 1.3)' if kind == 'attack' else ''}; "
        f"in-scan seconds outside named stages {outside:.1f} of {total:.1f} (target 0)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="archive sizes, comma-separated (default 1000,10000)")
    ap.add_argument("--modes", default="single,ray", help="single, ray or both (default)")
    ap.add_argument("--model", choices=("tiny", "resnet18"), default="tiny")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (default 2)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--ratio", action="store_true", help="also time a bare ONNX Runtime session")
    ap.add_argument(
        "--ratio-only",
        action="store_true",
        help="only the in-process ratio: streamed clean inference vs a bare session, alternated",
    )
    ap.add_argument("--attack-sizes", default="", help="sizes of the cached-attack case (e.g. 1000,10000)")
    ap.add_argument(
        "--sets-built",
        action="store_true",
        help="the attack case's sets are in the cache already: skip the build run (cache hits are printed)",
    )
    ap.add_argument("--build-only", action="store_true", help="only build (or find) the attack case's cached sets")
    ap.add_argument(
        "--attack-steps",
        type=int,
        default=10,
        help="MI-FGSM steps of the attack case's sets (default 10; part of the cache key). A cached scan's cost does "
        "not depend on it, so 100k sets can be built with fewer steps in a fraction of the time",
    )
    ap.add_argument("--root", type=Path, help="folder for archives and models (default: a temporary folder)")
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose auditor runs the scans (default: this one)")
    args = ap.parse_args(argv)
    CODE[0] = args.code.resolve()
    print(f"host: {host_model()}; code: {CODE[0]}", flush=True)
    if not (KERMANY / "normal").is_dir():
        print(f"skipped: the Kermany images are not present at {KERMANY}")
        return 0
    root = args.root or Path(tempfile.mkdtemp(prefix="xray-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    model = make_model(root / f"{args.model}.onnx", args.model)
    if args.ratio_only:
        archive = make_archive(root, 1000)
        streamed, bare = ratio_in_process(model, archive)
        print(
            f"model {args.model}, batch 32, 512 images, median of 3 alternated rounds: streamed (decode overlapped) "
            f"{streamed:.1f} img/s, bare ONNX Runtime on pre-decoded images {bare:.1f} img/s, ratio {streamed / bare:.2f}"
        )
        return 0
    print(f"model {args.model}, batch 32, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, root {root}")
    print(
        f"{'case':<28} {'images':>7} {'wall s':>8} {'img/s':>7} {'clean img/s':>11} {'own RSS':>8} {'tree RSS':>8} "
        f"{'own CPU s':>9}"
    )
    cases = [(int(s), m, "clean") for s in args.sizes.split(",") if s for m in args.modes.split(",")]
    cases += [(int(s), m, "attack") for s in args.attack_sizes.split(",") if s for m in args.modes.split(",")]
    first: dict[tuple[int, str], list] = {}
    for size, mode, kind in cases:
        archive = make_archive(root, size)
        extra = ["--n-boot", str(args.n_boot)]
        if kind == "attack":
            cache = root / f"cache_{size}"
            attack = [
                "--attacks",
                "mifgsm",
                "--eps",
                "4,8",
                "--surrogate",
                "target",
                "--cache-dir",
                str(cache),
                "--attack-batch-size",
                "64",
                "--precision",
                "fp32",
                *(["--attack-param", f"mifgsm.steps={args.attack_steps}"] if args.attack_steps != 10 else []),
            ]
            extra += [*attack, "--defenses", "jpeg:75"]
        else:
            extra += ["--attacks", "none"]
        if kind == "attack" and not args.sets_built:
            # builds the sets (not reported; a cache hit when they exist): no defense, detector or bootstrap
            build = run_scan(
                model, archive, root / "out_build", "single", args.workers, [*attack, "--n-boot", "0", "--no-detector"]
            )
            print(
                f"  sets built or found in {build['wall']:.1f} s: "
                + ", ".join(f"{s['name']} {s.get('seconds_per_image')} s/image" for s in build["sets"]),
                flush=True,
            )
        if args.build_only:
            continue
        r = run_scan(model, archive, root / f"out_{size}_{mode}_{kind}", mode, args.workers, extra)
        clean = (r["stages"].get("clean") or {}).get("images_per_second")
        print(
            f"{kind + ' ' + mode:<28} {r['n']:>7} {r['wall']:>8.1f} {r['n'] / r['wall']:>7.1f} {clean or 0:>11.1f} "
            f"{r['own_rss'] / 2**30:>6.2f}GB {r['tree_rss'] / 2**30:>6.2f}GB {r['own_cpu']:>9.1f}",
            flush=True,
        )
        if kind == "attack":
            print(
                f"  conditions: {', '.join(r['conditions'])}; sets from the cache: "
                + ", ".join(f"{st['name']} {st.get('cache_hit')}" for st in r["sets"])
            )
        other = first.setdefault((size, kind), r["outcomes"])
        if other is not r["outcomes"]:
            print(f"  outcomes (probabilities, metrics) equal to the first mode's: {other == r['outcomes']}")
        print(f"  stages: {json.dumps(r['stages'])}")
        print("  " + target_line(r, kind))
        if args.ratio and kind == "clean" and mode == "single":
            bare = bare_ort(model, archive, 32)
            print(f"  bare ONNX Runtime {bare:.1f} img/s; clean stage / bare = {clean / bare:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
