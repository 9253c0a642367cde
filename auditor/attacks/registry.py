"""Attack registry: name -> class, imported lazily (``xray-audit --help`` never imports torch).

``make_attack("usmm", surrogate, epsilon=8/255)`` validates every parameter by
name before constructing: an unknown attack or parameter is a one-line
:class:`~auditor.errors.UsageError` listing what is accepted.
"""

from __future__ import annotations

import importlib
from typing import Any

from auditor.errors import UsageError

#: name -> (module, class)
ATTACKS: dict[str, tuple[str, str]] = {
    "mifgsm": ("auditor.attacks.mifgsm", "MIFGSM"),
    "usmm": ("auditor.attacks.usmm", "USMM"),
    "stm": ("auditor.attacks.stm", "STM"),
}


def list_attacks() -> list[str]:
    """Registered attack names."""
    return list(ATTACKS)


def get_attack_class(name: str):
    """The attack class registered as ``name`` (imports its module)."""
    key = (name or "").strip().lower()
    if key not in ATTACKS:
        raise UsageError(f"unknown attack {name!r}; known attacks: {', '.join(ATTACKS)}")
    module, cls = ATTACKS[key]
    return getattr(importlib.import_module(module), cls)


def make_attack(name: str, surrogate: Any, **params: Any):
    """Build attack ``name`` on ``surrogate`` (a Surrogate or an ``nn.Module``) with validated ``params``."""
    cls = get_attack_class(name)
    accepted = cls.accepted_params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UsageError(f"attack {name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}")
    eps = params.get("epsilon", 16 / 255)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 < float(eps) <= 1:
        raise UsageError(
            f"attack {name}: epsilon {eps!r} is outside (0, 1] (epsilons are fractions of the [0,1] range)"
        )
    module = getattr(surrogate, "module", surrogate)
    return cls(module, **params)
