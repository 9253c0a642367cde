"""The scan orchestrator: data -> clean -> adversarial sets -> defenses -> detector -> AuditResult.

:class:`Auditor` takes its parts as arguments and frozen :class:`~auditor.scan.options.ScanOptions`, builds
one :class:`~auditor.scan.context.ScanContext` and the factories of surrogates and defenses
(:mod:`auditor.scan.factories`), and composes the stages: each takes the loaded data and the results of the
stages before it and returns its own. The heavy pieces (attacks, defenses, detectors) are imported lazily so a
clean scan never loads torch.
"""

from __future__ import annotations

import copy
import datetime as _dt
import platform
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Iterator, cast

import numpy as np

from auditor import __version__
from auditor.detector_records import DetectorResult
from auditor.evaluation import Throughput
from auditor.models.contract_check import SUGGEST_MAX_IMAGES, contract_check, suggest_scaling
from auditor.outcomes import SampleTable
from auditor.progress import Reporter
from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.data import load_data
from auditor.scan.evaluate import evaluate_model
from auditor.scan.factories import DefenseFactory, ScanSurrogates, SurrogateFactory, defense_factory
from auditor.scan.options import ScanOptions
from auditor.scan.records import AdversarialSet, AttackStage
from auditor.transfer import transfer_summary
from auditor.types import SCHEMA_VERSION, AuditResult, Condition


def host_and_versions() -> dict[str, Any]:
    """Host and library versions (no torch import unless already loaded)."""
    import importlib.metadata as md
    import sys

    from auditor.allocator import allocator_name

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "allocator": allocator_name(),
    }
    for pkg in (
        "numpy",
        "onnx",
        "onnxruntime-gpu",
        "onnxruntime",
        "torch",
        "torchvision",
        "scikit-learn",
        "scikit-image",
        "opencv-python-headless",
        "weasyprint",
    ):
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


class Auditor:
    """Runs one scan of a target model (plus ``compare`` models on the same inputs)."""

    def __init__(
        self,
        target,
        options: ScanOptions,
        reporter: Reporter | None = None,
        command: str = "",
        surrogates: SurrogateFactory | None = None,
        defenses: DefenseFactory | None = None,
    ) -> None:
        self.context = ScanContext(target, options, reporter or Reporter(quiet=True), command)
        #: builds the scan's surrogates (default: each read once per scan, handed out as copies)
        self.surrogates = surrogates or ScanSurrogates(target, options, lambda n, r: self.context.skip(n, r))
        #: builds the scan's defenses (default: ``--defenses`` from the registry)
        self.defenses = defenses or defense_factory(options.defenses)

    @property
    def target(self):
        """The model under audit."""
        return self.context.target

    @property
    def options(self) -> ScanOptions:
        """The options of the scan."""
        return self.context.options

    @property
    def skipped(self):
        """What the scan could not run so far."""
        return self.context.skipped

    def run(self, data_path: str, compare: list | None = None) -> AuditResult:
        """Run the whole scan and return the result (nothing is written here).

        Every step is a named stage of the target's :class:`~auditor.evaluation.Throughput` (results.json
        ``environment.seconds_per_stage``): ``data`` (index, fingerprint; ``read`` decodes inside it), ``plan``,
        ``sets`` (build or load and verify; ``surrogate`` predictions inside), ``defenses``, ``bpda``,
        ``probes``, ``metrics`` (per model: bootstrap CIs and rates; ``clean``, ``attacked``, ``defended``,
        ``adaptive`` inference inside), ``compared`` (the other models, on their own records), ``detector``,
        ``examples``, ``results`` (assembly, contract check) and ``scan``, the orchestration between them. A
        stage's seconds exclude those of the stages inside it, so they add up to ``seconds_total``.
        """
        ctx = self.context
        clock = ctx.clock(self.target.path)
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        try:
            with clock.timed("scan"):
                main, compared = self._run(data_path, list(compare or []), created)
        finally:
            with clock.timed("scan"):
                ctx.scratch.close()  # the spilled sets (their reads fall back to the PNGs from now on)
        total = round(clock.total_seconds, 2)
        return AuditResult(
            **{
                **self._timings(main, total).__dict__,
                "compared": tuple(self._timings(r, total) for r in compared),
            }
        )

    def _timings(self, result: AuditResult, total: float) -> AuditResult:
        """``result`` with the final stage timings of its model and the scan's total (known once the scan ended)."""
        clock = self.context.throughput.get(result.model.get("path", ""), Throughput())
        env = {**result.environment, "seconds_total": total, "seconds_per_stage": clock.as_dict()}
        return replace(result, environment=env)

    def _run(self, data_path: str, compare: list, created: str) -> tuple[AuditResult, tuple[AuditResult, ...]]:
        """The stages of :meth:`run`: the target's result and the compared models' results."""
        from auditor.examples import build_examples

        ctx, opt = self.context, self.options
        clock = ctx.clock(self.target.path)
        with clock.timed("data"):
            data = load_data(ctx, data_path)
        ctx.reporter.info(f"{data.info['n_images']} images, classes {data.info['per_class']}")
        rates = {}
        if opt.plan or opt.budget_minutes is not None:
            from auditor.scan.plan import PlanOnly, plan_attack_stage, plan_lines

            with clock.timed("plan"):
                plan = plan_attack_stage(ctx, data, self.surrogates)
            for line in plan_lines(plan.rows, opt.budget_minutes):
                ctx.reporter.info(line)
            if opt.plan:
                raise PlanOnly(plan.rows)
            rates = plan.rates
        stage, preprocessors, adaptive = self._sets_and_defenses(data, rates)
        sets = list(stage.sets)
        probes = []
        if opt.strength_probes and sets:
            from auditor.scan.probes import run_strength_probes

            with clock.timed("probes"):
                probes = run_strength_probes(ctx, data, self.surrogates, sets)
        models = [self.target] + list(compare)
        results = []
        for model in models:
            with clock.timed("compared" if model is not self.target else "metrics"):
                with ctx.clock(model.path).timed("metrics") if model is not self.target else _nothing():
                    results.append(evaluate_model(ctx, data, model, sets, preprocessors, adaptive))
        detector = None
        if opt.detector and sets:
            from auditor.scan.detect import run_detectors

            with clock.timed("detector"):
                detector = run_detectors(ctx, data, sets)
        with clock.timed("examples"):
            examples = build_examples(
                cast(np.ndarray, data.images),  # read a few rows at a time
                data.y,
                [s.rel_path for s in data.samples],
                self.target.spec.class_names,
                results[0],
                sets,
                preprocessors,
            )
        with clock.timed("results"):
            stamps = {
                "created": created,
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "seconds_total": None,  # set by run() once every stage has ended
            }
            set_meta = [st.meta.to_json() for st in sets + adaptive]
            rows = _sample_rows(data)  # one compact table, shared by every model's result
            env = {"stamps": stamps, "precision_choice": stage.precision_choice}
            compared = tuple(
                self._result(m, c, None, data, rows, env, set_meta, None) for m, c in zip(models[1:], results[1:])
            )
            main = self._result(self.target, results[0], detector, data, rows, env, set_meta, examples)
            if probes:
                main = replace(main, extras={**main.extras, "strength_probes": probes})
            main = self._contract_caveat(main, data, results[0][0])
        return main, compared

    def _contract_caveat(self, main: AuditResult, data: LoadedData, clean: Condition) -> AuditResult:
        """``main`` with the clean-stage contract check (:func:`~auditor.models.contract_check.contract_check`) recorded:
        ``extras.contract_check`` and a ``data.caveats`` line, and a warning on stderr naming the fix."""
        spec = self.target.spec
        check = contract_check(spec, data.y, np.asarray(clean.probabilities))
        if check is None:
            return main
        idx = np.unique(np.linspace(0, len(data.y) - 1, min(len(data.y), SUGGEST_MAX_IMAGES)).astype(int))
        images = data.images[idx]

        def predict(alt):  # the target fed with another scaling (the same ONNX session)
            probe = copy.copy(self.target)
            probe.spec = alt
            return probe.predict_proba(images)

        check = suggest_scaling(check, spec, data.y[idx], predict)
        text = f"the input contract looks wrong: {check['reason']}; {check['fix']}"
        self.context.reporter.warn(text)
        caveats = [f"CONTRACT GUESSED: {text}", *main.data.get("caveats", [])]
        return replace(main, data={**main.data, "caveats": caveats}, extras={**main.extras, "contract_check": check})

    def _sets_and_defenses(self, data: LoadedData, rates: dict) -> tuple[AttackStage, list, list[AdversarialSet]]:
        """The attack stage (the adversarial sets), the defenses and the adaptive (BPDA) sets of the scan (stages
        ``sets``, ``defenses``, ``bpda``)."""
        ctx, opt = self.context, self.options
        clock = ctx.clock(self.target.path)
        stage, preprocessors, adaptive = AttackStage(), [], []
        if opt.attacks or opt.whitebox_attacks:
            from auditor.scan.attack import build_sets

            with clock.timed("sets"):
                stage = build_sets(ctx, data, self.surrogates, rates)
        if opt.defenses:
            from auditor.scan.defense import build_preprocessors

            with clock.timed("defenses"):
                preprocessors = build_preprocessors(ctx, data, self.defenses, self.surrogates)
        if opt.bpda and stage.sets and preprocessors:
            from auditor.scan.defense import build_bpda_sets

            precision = stage.precision(opt.precision)
            with clock.timed("bpda"):
                adaptive = build_bpda_sets(ctx, data, self.surrogates, preprocessors, stage.sets, precision)
        return stage, preprocessors, adaptive

    def _result(
        self,
        model,
        conditions: list[Condition],
        det: DetectorResult | None,
        data: LoadedData,
        rows: SampleTable,
        env: dict[str, Any],
        set_meta: list[dict],
        examples: list | None,
    ) -> AuditResult:
        """The :class:`AuditResult` of one model (``examples`` only for the target); ``env`` holds the scan's time
        stamps and what ``--precision auto`` chose."""
        ctx, stamps, choice = self.context, env["stamps"], env["precision_choice"]
        return AuditResult(
            schema_version=SCHEMA_VERSION,
            tool_version=__version__,
            created=stamps["created"],
            finished=stamps["finished"],
            command=ctx.command,
            model=model.identity(),
            data=data.info,
            conditions=tuple(conditions),
            samples=rows,
            parameters=self.options.to_dict(),
            environment={
                **host_and_versions(),
                "seconds_total": stamps["seconds_total"],
                "onnx_provider": model.provider,
                "seconds_per_stage": ctx.throughput.get(model.path, Throughput()).as_dict(),
                **({"precision_choice": choice} if choice else {}),
            },
            skipped=tuple(ctx.skipped),
            detector=det,
            extras={
                **({"examples": examples} if examples is not None else {}),
                "adversarial_sets": set_meta,
                "transfer": transfer_summary(conditions),
            },
        )


@contextmanager
def _nothing() -> Iterator[None]:
    """A block timed by no record (the target's metrics are its own ``metrics`` stage already)."""
    yield


def _sample_rows(data: LoadedData) -> SampleTable:
    """The results' sample rows, built one at a time into the compact table (never a dict per image at once)."""
    return SampleTable(
        {
            "path": s.rel_path or s.path,
            "label": s.label,
            "label_index": int(y),
            "patient_id": s.patient_id,
            "sha256": s.sha256,
        }
        for s, y in zip(data.samples, data.y)
    )
