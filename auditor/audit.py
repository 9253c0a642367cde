"""The scan orchestrator: data -> clean -> adversarial sets -> defenses -> detector -> AuditResult.

:class:`Auditor` takes its parts as arguments and frozen :class:`ScanOptions`;
the heavy pieces (attacks, defenses, detectors) are imported lazily so a clean
scan never loads torch.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auditor import __version__
from auditor.data import DROP, drop_duplicates, drop_labels, fingerprint, map_labels, open_dataset, stratified_subset
from auditor.data.stream import SampleImages, scan_readable
from auditor.errors import DataError, NonFiniteOutput, UsageError
from auditor.evaluation import Throughput, predict_stream
from auditor.metrics import compute_attack_rates, compute_metrics
from auditor.progress import Reporter
from auditor.transfer import set_diagnostics, transfer_summary
from auditor.types import SCHEMA_VERSION, STATED_CAVEAT_PREFIX, AuditResult, Condition, Skipped

KNOWN_ATTACKS = ("mifgsm", "usmm", "stm", "blend")
BLEND_ALPHAS = (0.1, 0.3, 0.5, 1.0)


@dataclass(frozen=True)
class ScanOptions:
    """Everything that shapes a scan; recorded in results.json as ``parameters``."""

    attacks: tuple[str, ...] = ()
    epsilons: tuple[float, ...] = (4 / 255, 8 / 255, 16 / 255)
    surrogate: str | None = None
    defenses: str | None = None
    bpda: bool = False
    #: attacks the adaptive (BPDA) check runs with; empty = every gradient attack of the scan
    bpda_attacks: tuple[str, ...] = ()
    #: known limitations of the data stated by the auditor (``--caveat``), shown with the tool's own caveats
    caveats: tuple[str, ...] = ()
    detector: bool = True
    seed: int = 0
    batch_size: int = 32
    attack_batch_size: int = 4
    max_images: int | None = None
    n_boot: int = 1000
    device: str = "auto"
    precision: str = "auto"
    cache_dir: str = ".xray-audit-cache"
    style_backend: str = "randconv"
    stm_checkpoint: str | None = None
    style_image: str | None = None
    label_map: dict[str, str] = field(default_factory=dict)
    data_format: str = "auto"
    images_dir: str | None = None
    allow_outside_root: bool = False
    strict: bool = False
    attack_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    ray_address: str | None = None
    workers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary."""
        d = asdict(self)
        d["epsilons"] = [round(e * 255, 4) for e in self.epsilons]
        d["epsilons_unit"] = "1/255 of the [0,1] intensity range"
        return d


def eps_name(eps: float) -> str:
    """``8/255`` -> ``"8"``; non-integer multiples keep two decimals."""
    v = eps * 255
    return str(int(round(v))) if abs(v - round(v)) < 1e-6 else f"{v:.2f}"


def set_name(attack: str, eps: float, style_backend: str | None = None) -> str:
    """Condition name of an adversarial set: ``usmm@8``; STM names its style backend, ``stm[randconv]@16``,
    so no headline passes a substitute off as the paper's style network."""
    backend = f"[{style_backend}]" if attack == "stm" and style_backend else ""
    return f"{attack}{backend}@{eps_name(eps)}"


def environment() -> dict[str, Any]:
    """Host and library versions (no torch import unless already loaded)."""
    import importlib.metadata as md
    import sys

    from auditor.allocator import allocator_name

    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                           "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                           "allocator": allocator_name()}
    for pkg in ("numpy", "onnx", "onnxruntime-gpu", "onnxruntime", "torch", "torchvision", "scikit-learn",
                "scikit-image", "opencv-python-headless", "weasyprint"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        env["cuda_available"] = bool(torch.cuda.is_available())
        if env["cuda_available"]:
            env["gpu"] = torch.cuda.get_device_name(0)
    return env


class _DefenseFailed(Exception):
    """A defense raised while transforming a batch (a skip of that defense, not a crash)."""


def _guarded(pre):
    """``pre`` as a batch transform whose own failures surface as :class:`_DefenseFailed`."""
    def run(x):
        try:
            return pre(x)
        except Exception as exc:
            raise _DefenseFailed(str(exc)) from exc
    return run


@dataclass
class LoadedData:
    """The images of a scan (decoded on access, see :mod:`auditor.data.stream`), their labels and identity."""

    images: SampleImages
    y: np.ndarray
    samples: list
    groups: list
    info: dict[str, Any]


class Auditor:
    """Runs one scan of a target model (plus ``compare`` models on the same inputs)."""

    def __init__(self, target, options: ScanOptions, reporter: Reporter | None = None, command: str = "") -> None:
        self.target = target
        self.options = options
        self.reporter = reporter or Reporter(quiet=True)
        self.command = command
        self.skipped: list[Skipped] = []
        self._sample_names: list[str] = []  #: file of each scored row, for error messages
        #: what ``--precision auto`` measured and chose (set by the attack stage)
        self.precision_choice: dict[str, Any] | None = None
        #: images per second of every stage, per model path (results.json ``environment.seconds_per_stage``)
        self.throughput: dict[str, Throughput] = {}

    # ----------------------------------------------------------------- data
    def load_data(self, data: str) -> LoadedData:
        """Index, sample, fingerprint, decode and label-map the data set."""
        opt, spec = self.options, self.target.spec
        ds = open_dataset(data, opt.data_format, opt.images_dir, allow_outside_root=opt.allow_outside_root)
        samples, dropped = self._drop_classes(list(ds.samples))
        # map labels before decoding so a mismatch fails fast
        map_labels([s.label for s in samples], spec.class_names, opt.label_map)
        if opt.max_images is not None:
            if opt.max_images < 1:
                raise UsageError("--max-images must be at least 1")
            keep = stratified_subset([s.label for s in samples], opt.max_images, opt.seed)
            samples = [samples[i] for i in keep]
        notes: dict[str, list[str]] = {}
        clock = self.throughput.setdefault(self.target.path, Throughput())
        with self.reporter.task("Reading images", len(samples)) as adv, clock.timed("read", len(samples)):
            kept, skipped, on_grid = scan_readable(samples, (spec.height, spec.width), batch_size=opt.batch_size,
                                                   progress=adv, notes=notes)
        samples = [samples[i] for i in kept]
        if not samples:
            raise DataError(f"{data}: none of the images could be read ({len(skipped)} skipped)")
        samples, _ = fingerprint(samples)
        keep, duplicates = drop_duplicates(samples)
        if duplicates:
            samples = [samples[i] for i in keep]
            skipped = skipped + duplicates
        samples, manifest_sha = fingerprint(samples)
        images = SampleImages([s.path for s in samples], (spec.height, spec.width))
        y = map_labels([s.label for s in samples], spec.class_names, opt.label_map)
        per_class = {c: int((y == i).sum()) for i, c in enumerate(spec.class_names)}
        all_skipped = list(ds.skipped) + skipped
        caveats = list(ds.caveats)
        readme = Path(data) / "README.md"
        if readme.is_file() and "SYNTHETIC" in readme.read_text(encoding="utf-8", errors="replace")[:4000]:
            caveats.insert(0, "SYNTHETIC data (procedural phantoms, no patient images): the numbers say nothing "
                              "about performance on radiographs")
        if duplicates:
            caveats.append(f"{len(duplicates)} exact-duplicate file(s) (same SHA-256 as another image of the same "
                           "label) were counted once; they are listed with the skipped files")
        if any(a != "blend" for a in opt.attacks) and not on_grid:
            caveats.append("the scored images are not on the 8-bit grid (resized to the model's size, or a >8-bit "
                           "source): adversarial PNGs keep every pixel within epsilon of the float clean image, so "
                           "some pixels cannot reach the budget's edge exactly (up to one grey level short)")
        for s in all_skipped:
            self.reporter.warn(f"skipped {s.name}: {s.reason}")
        info = {
            "root": str(Path(data).resolve()),
            "format": ds.format,
            "manifest_sha256": manifest_sha,
            "n_images": len(samples),
            "per_class": per_class,
            "skipped": [s.to_dict() for s in all_skipped],
            "conversions": [{"name": k, "notes": notes[k]}
                            for k in (s.rel_path or s.path for s in samples) if k in notes],
            "caveats": [*(STATED_CAVEAT_PREFIX + c for c in opt.caveats), *caveats],
            "patient_ids": sum(1 for s in samples if s.patient_id),
            "sampled_from": len(ds.samples) - sum(dropped.values()) if opt.max_images is not None else None,
            "dropped": dropped,
        }
        groups = [s.patient_id for s in samples]
        self._sample_names = [s.rel_path or s.path for s in samples]
        return LoadedData(images, y, samples, groups, info)

    def _drop_classes(self, samples: list) -> tuple[list, dict[str, int]]:
        """Remove the data labels that ``--label-map LABEL=-`` drops; {label: images dropped}."""
        kept, dropped = drop_labels([s.label for s in samples], self.options.label_map)
        unused = sorted(k for k, v in self.options.label_map.items() if v.strip() == DROP
                        and k.lower() not in {d.lower() for d in dropped})
        if unused:
            have = sorted({s.label for s in samples})
            raise UsageError(f"--label-map drops {unused}, which no image has (data labels: {have})")
        if not kept:
            raise DataError("--label-map drops every image of the data set")
        for label, n in dropped.items():
            self.reporter.info(f"dropped data class {label!r} ({n} images, --label-map {label}=-)")
        return [samples[i] for i in kept], dropped

    # ----------------------------------------------------------------- evaluation helpers
    def _predict(self, model, x, what: str, stage: str = "clean", transform=None) -> np.ndarray:
        """Probabilities of ``model`` on ``x`` (array or lazy images, ``transform`` first), streamed in batches."""
        clock = self.throughput.setdefault(model.path, Throughput())
        try:
            with self.reporter.task(what, len(x)) as adv, clock.timed(stage, len(x)):
                if self.options.ray_address:
                    from auditor.distributed_eval import NotDistributable, predict_on_ray

                    try:
                        return predict_on_ray(model, x, self.options.batch_size, transform=transform,
                                              address=self.options.ray_address, workers=self.options.workers,
                                              progress=adv)
                    except NotDistributable as exc:
                        self.reporter.info(f"{what}: evaluated in this process, {exc}")
                return predict_stream(model, x, self.options.batch_size, transform=transform, progress=adv)
        except NonFiniteOutput as exc:
            names = self._sample_names
            first = names[exc.rows[0]] if exc.rows and len(names) == len(x) else f"row {exc.rows[0] if exc.rows else '?'}"
            raise NonFiniteOutput(f"{model.path}: {what}: the model returned NaN or infinite outputs for "
                                  f"{len(exc.rows)} of {len(x)} image(s); first file: {first}", exc.rows) from None

    def _condition(self, name: str, kind: str, proba: np.ndarray, data: LoadedData, class_names, **kw) -> Condition:
        pred = proba.argmax(1)
        metrics = compute_metrics(data.y, pred, class_names, groups=data.groups if any(data.groups) else None,
                                  seed=self.options.seed, n_boot=self.options.n_boot)
        return Condition(name=name, kind=kind, metrics=metrics, predictions=tuple(int(v) for v in pred),
                         probabilities=tuple(tuple(round(float(p), 6) for p in row) for row in proba), **kw)

    def _rates(self, data: LoadedData, clean_pred: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
        """Attack success and flip rates of ``pred`` against the clean predictions, with patient-wise CIs."""
        return compute_attack_rates(data.y, clean_pred, pred, groups=data.groups if any(data.groups) else None,
                                    seed=self.options.seed, n_boot=self.options.n_boot)

    # ----------------------------------------------------------------- run
    def run(self, data_path: str, compare: list | None = None) -> AuditResult:
        """Run the whole scan and return the result (nothing is written here)."""
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        opt = self.options
        data = self.load_data(data_path)
        self.reporter.info(f"{data.info['n_images']} images, classes {data.info['per_class']}")
        sets = self._adversarial_sets(data) if opt.attacks else []
        preprocessors = self._preprocessors(data) if opt.defenses else []
        if opt.bpda and sets and preprocessors:
            from auditor.defense_stage import build_bpda_sets

            adaptive = build_bpda_sets(self, data, preprocessors, sets)
        else:
            adaptive = []
        models = [self.target] + list(compare or [])
        results = []
        for model in models:
            conditions = self._evaluate_model(model, data, sets, preprocessors, adaptive)
            results.append(conditions)
        detector = self._detector(data, sets) if (opt.detector and sets) else None
        from auditor.examples import build_examples

        set_meta = [st["meta"] for st in sets + adaptive]

        examples = build_examples(data.images, data.y, [s.rel_path for s in data.samples], self.target.spec.class_names,
                                  results[0], sets, preprocessors)
        timings = {"seconds_total": round(time.perf_counter() - t0, 2)}
        finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

        def build(model, conditions, det):
            return AuditResult(
                schema_version=SCHEMA_VERSION, tool_version=__version__, created=created, finished=finished,
                command=self.command, model=model.identity(), data=data.info, conditions=tuple(conditions),
                samples=tuple({"path": s.rel_path or s.path, "label": s.label, "label_index": int(y),
                               "patient_id": s.patient_id, "sha256": s.sha256} for s, y in zip(data.samples, data.y)),
                parameters=opt.to_dict(),
                environment={**environment(), **timings, "onnx_provider": model.provider,
                             "seconds_per_stage": self.throughput.get(model.path, Throughput()).as_dict(),
                             **({"precision_choice": self.precision_choice} if self.precision_choice else {})},
                skipped=tuple(self.skipped), detector=det,
                extras={**({"examples": examples} if model is self.target else {}), "adversarial_sets": set_meta,
                        "transfer": transfer_summary(conditions)},
            )

        compared = tuple(build(m, c, None) for m, c in zip(models[1:], results[1:]))
        main = build(self.target, results[0], detector)
        return AuditResult(**{**main.__dict__, "compared": compared})

    def _evaluate_model(self, model, data: LoadedData, sets: list[dict], preprocessors: list,
                        adaptive: list[dict] = ()) -> list[Condition]:
        names = model.spec.class_names
        if [c.lower() for c in names] != [c.lower() for c in self.target.spec.class_names]:
            raise UsageError(f"{model.path}: classes {list(names)} differ from the target's {list(self.target.spec.class_names)}")
        label = Path(model.path).name
        clean_proba = self._predict(model, data.images, f"Clean inference ({label})")
        clean_pred = clean_proba.argmax(1)
        conditions = [self._condition("clean", "clean", clean_proba, data, names)]
        adv_preds: dict[str, np.ndarray] = {}
        for st in sets:
            proba = self._predict(model, st["images"], f"{st['name']} ({label})", stage="attacked")
            pred = adv_preds[st["name"]] = proba.argmax(1)
            extra = {**self._rates(data, clean_pred, pred), **st["stats"], "label": st["label"],
                     "cache_hit": st["meta"].get("cache_hit"), "backend": st["meta"].get("backend")}
            if st["meta"].get("style_diversity") is not None:
                extra["style_diversity"] = st["meta"]["style_diversity"]
            if st["kind"] == "style_blend":
                extra["opacity"] = st["alpha"]
            if "surrogate_eval" in st:
                ev = st["surrogate_eval"]
                extra["transfer"] = set_diagnostics(data.y, clean_pred, pred, ev["clean_pred"], ev["adv_pred"],
                                                    ev["input_sizes"], (model.spec.height, model.spec.width))
            conditions.append(self._condition(st["name"], st["kind"], proba, data, names, attack=st["attack"],
                                              epsilon=st.get("epsilon"), surrogate=st.get("surrogate"),
                                              threat_model=st.get("threat_model"), extra=extra))
        for pre in preprocessors:
            try:
                proba = self._predict(model, data.images, f"{pre.name}/clean ({label})", stage="defended",
                                      transform=_guarded(pre))
            except _DefenseFailed as exc:  # a defense failing on this data is a skip, not a crash
                self.skipped.append(Skipped(pre.name, f"defense failed on this data: {str(exc)[:160]}", "defense"))
                continue
            pred = proba.argmax(1)
            cost = getattr(pre, "cost_ms_per_image", None)
            conditions.append(self._condition(f"{pre.name}/clean", "defense", proba, data, names, defense=pre.name,
                                              extra={**self._rates(data, clean_pred, pred),
                                                     "cost_ms_per_image": cost}))
            for st in sets:
                dproba = self._predict(model, st["images"], f"{pre.name}/{st['name']} ({label})", stage="defended",
                                       transform=pre)
                dpred = dproba.argmax(1)
                conditions.append(self._condition(
                    f"{pre.name}/{st['name']}", "defense", dproba, data, names, attack=st["attack"],
                    epsilon=st.get("epsilon"), surrogate=st.get("surrogate"), threat_model=st.get("threat_model"),
                    defense=pre.name, extra={**self._rates(data, clean_pred, dpred), "cost_ms_per_image": cost,
                                             "recovered_rate": float(np.mean((dpred == data.y) & (adv_preds[st['name']] != data.y)))}))
        by_name = {c.name: c for c in conditions}
        for st in adaptive:
            pre = st["defense"]
            proba = self._predict(model, st["images"], f"{st['name']} ({label})", stage="adaptive", transform=pre)
            pred = proba.argmax(1)
            cond = self._condition(st["name"], "defense", proba, data, names, attack=st["attack"], epsilon=st["epsilon"],
                                   surrogate=st["surrogate"], threat_model=st["threat_model"], defense=pre.name,
                                   extra={**self._rates(data, clean_pred, pred), **st["stats"],
                                          "adaptive": True, "label": st["label"], "gradient": st["meta"]["gradient"]})
            non_adaptive = by_name.get(f"{pre.name}/{st['base']}")
            if non_adaptive is not None:
                drop = non_adaptive.metrics["accuracy"] - cond.metrics["accuracy"]
                cond.extra["accuracy_drop_vs_non_adaptive"] = drop
                # flag a defense whose benefit largely vanishes once the attacker knows it
                undefended = by_name[st["base"]].metrics["accuracy"]
                benefit = non_adaptive.metrics["accuracy"] - undefended
                cond.extra["benefit_vanishes"] = bool(benefit > 0 and cond.metrics["accuracy"] - undefended < 0.5 * benefit)
            conditions.append(cond)
        return conditions

    # ----------------------------------------------------------------- attacks
    def _adversarial_sets(self, data: LoadedData) -> list[dict]:
        from auditor.attack_stage import build_sets

        return build_sets(self, data)

    def _preprocessors(self, data: LoadedData) -> list:
        from auditor.defense_stage import build_preprocessors

        return build_preprocessors(self, data)

    def _detector(self, data: LoadedData, sets: list[dict]) -> dict | None:
        from auditor.defense_stage import run_detectors

        return run_detectors(self, data, sets)
