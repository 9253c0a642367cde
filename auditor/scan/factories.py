"""The factories the orchestrator hands to the stages: surrogates (:class:`ScanSurrogates`, a
:data:`SurrogateFactory`) and defenses (:func:`defense_factory`, a :data:`DefenseFactory`).

A stage asks a factory for what it needs instead of building it from a string itself, so a test (or another
front end, such as ``xray-audit attack``) passes its own.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional

from auditor.errors import UsageError
from auditor.scan.options import ScanOptions

#: ``--surrogate`` text (None: the scan's own) -> a fresh :class:`~auditor.models.surrogate.Surrogate`, or None
#: when it cannot be built (the factory has recorded why)
SurrogateFactory = Callable[[Optional[str]], Any]
#: the feature defense's extractor (or None) -> the scan's defenses, each a preprocessor or a
#: :class:`~auditor.types.Skipped`
DefenseFactory = Callable[[Any], list]

_NOT_LOADED = object()


class ScanSurrogates:
    """The surrogates of one scan, each read once (an ONNX target as ``--surrogate target`` means an ONNX→torch
    conversion with an agreement check) and handed out as deep copies, so the attack loop's in-place preparation
    (eval mode, memory format) never reaches the feature defense or BPDA. A conversion that fails is reported
    to ``on_skip(name, reason)`` once, and the factory gives None for it."""

    def __init__(self, target: Any, options: ScanOptions, on_skip: Callable[[str, str], None]) -> None:
        self._target, self._options, self._on_skip = target, options, on_skip
        self._loaded: dict[str, Any] = {}

    def __call__(self, spec: str | None = None) -> Any:
        """A copy of the surrogate ``spec`` (default ``--surrogate``), or None when it cannot be built."""
        from auditor.models.convert import ConversionFailed
        from auditor.models.device import pick_device
        from auditor.models.surrogate import load_surrogate

        name = spec or self._options.surrogate
        if not name:
            raise UsageError("gradient attacks and the feature defense need --surrogate")
        loaded = self._loaded.get(name, _NOT_LOADED)
        if loaded is _NOT_LOADED:
            try:
                loaded = load_surrogate(name, self._target.spec, self._target.path, pick_device(self._options.device))
            except ConversionFailed as exc:
                self._on_skip(f"surrogate {name}", str(exc))
                loaded = None
            self._loaded[name] = loaded
        return None if loaded is None else copy.deepcopy(loaded)


def defense_factory(spec: str | None) -> DefenseFactory:
    """The defenses of ``--defenses spec`` from the registry (:func:`auditor.defenses.registry.parse_defenses`)."""

    def build(feature_extractor: Any) -> list:
        from auditor.defenses.registry import parse_defenses

        return list(parse_defenses(spec, feature_extractor=feature_extractor))

    return build
