"""The scan pipeline: options, a context built once, the stages, and the orchestrator.

:mod:`~auditor.scan.options` (what shapes a scan and how its sets are named),
:mod:`~auditor.scan.context` (:class:`~auditor.scan.context.ScanContext`: target, options, reporter,
skip list, the surrogate loaded once, the loaded data), :mod:`~auditor.scan.jobs` (the one list of
attack jobs), :mod:`~auditor.scan.records` (the typed adversarial sets), the stages
:mod:`~auditor.scan.data`, :mod:`~auditor.scan.attack`, :mod:`~auditor.scan.defense`,
:mod:`~auditor.scan.detect` and :mod:`~auditor.scan.evaluate` (functions of the context; none imports
the orchestrator), and :mod:`~auditor.scan.pipeline` (:class:`~auditor.scan.pipeline.Auditor`, which
runs them in order).
"""
