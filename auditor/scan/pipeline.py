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
import time
from dataclasses import replace
from typing import Any, cast

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
        """Run the whole scan and return the result (nothing is written here)."""
        from auditor.examples import build_examples

        ctx, opt = self.context, self.options
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        data = load_data(ctx, data_path)
        ctx.reporter.info(f"{data.info['n_images']} images, classes {data.info['per_class']}")
        rates = {}
        if opt.plan or opt.budget_minutes is not None:
            from auditor.scan.plan import PlanOnly, plan_attack_stage, plan_lines

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

            probes = run_strength_probes(ctx, data, self.surrogates, sets)
        models = [self.target] + list(compare or [])
        results = [evaluate_model(ctx, data, model, sets, preprocessors, adaptive) for model in models]
        detector = None
        if opt.detector and sets:
            from auditor.scan.detect import run_detectors

            detector = run_detectors(ctx, data, sets)
        examples = build_examples(
            cast(np.ndarray, data.images),  # read a few rows at a time
            data.y,
            [s.rel_path for s in data.samples],
            self.target.spec.class_names,
            results[0],
            sets,
            preprocessors,
        )
        stamps = {
            "created": created,
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds_total": round(time.perf_counter() - t0, 2),
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
        return AuditResult(**{**main.__dict__, "compared": compared})

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
        """The attack stage (the adversarial sets), the defenses and the adaptive (BPDA) sets of the scan."""
        ctx, opt = self.context, self.options
        stage, preprocessors, adaptive = AttackStage(), [], []
        if opt.attacks or opt.whitebox_attacks:
            from auditor.scan.attack import build_sets

            stage = build_sets(ctx, data, self.surrogates, rates)
        if opt.defenses:
            from auditor.scan.defense import build_preprocessors

            preprocessors = build_preprocessors(ctx, data, self.defenses, self.surrogates)
        if opt.bpda and stage.sets and preprocessors:
            from auditor.scan.defense import build_bpda_sets

            precision = stage.precision(opt.precision)
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
