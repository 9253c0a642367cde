"""The scan pipeline: options, a context built once, the stages, and the orchestrator.

:mod:`~auditor.scan.options` (what shapes a scan and how its sets are named),
:mod:`~auditor.scan.context` (:class:`~auditor.scan.context.ScanContext`: target, options, reporter,
command and the skip and throughput logs; the loaded data), :mod:`~auditor.scan.factories` (the surrogate
and defense factories the stages are given), :mod:`~auditor.scan.jobs` (the one list of attack jobs),
:mod:`~auditor.scan.records` (the typed adversarial sets and the attack stage's result), the stages
:mod:`~auditor.scan.data`, :mod:`~auditor.scan.attack`, :mod:`~auditor.scan.defense`,
:mod:`~auditor.scan.detect` and :mod:`~auditor.scan.evaluate` (each takes its inputs and returns a typed
result; none imports the orchestrator), and :mod:`~auditor.scan.pipeline`
(:class:`~auditor.scan.pipeline.Auditor`, which composes them).
"""
