"""What shapes a scan (:class:`ScanOptions`) and how its adversarial sets are named."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from auditor.attacks.registry import get_spec, list_attacks
from auditor.attacks.style_blend import BLEND_ALPHAS
from auditor.condition_ids import SetId, eps_name

__all__ = [
    "ADAPTIVE_ATTACKS",
    "BLEND_ALPHAS",
    "GRADIENT_ATTACKS",
    "KNOWN_ATTACKS",
    "QUERY_ATTACKS",
    "ScanOptions",
    "VISIBLE_ATTACKS",
    "default_cache_dir",
    "eps_name",
    "set_name",
]

#: every registered attack (:mod:`auditor.attacks.registry`)
KNOWN_ATTACKS = tuple(list_attacks())
#: the attacks that need a torch model's gradients (a surrogate, or the converted target)
GRADIENT_ATTACKS = tuple(list_attacks("gradient"))
#: the attacks that only query the target through ONNX Runtime
QUERY_ATTACKS = tuple(list_attacks("query"))
#: the gradient attacks the adaptive (BPDA) check may run through a defense
ADAPTIVE_ATTACKS = tuple(n for n in GRADIENT_ATTACKS if get_spec(n).adaptive)
#: the attacks that need no model (visible manipulations)
VISIBLE_ATTACKS = tuple(list_attacks("visible"))


def default_cache_dir() -> str:
    """The adversarial-set cache of a scan that names none (CLI and library alike): ``$XRAY_AUDIT_CACHE``,
    else ``$XDG_CACHE_HOME/xray-audit``, else ``~/.cache/xray-audit``."""
    import os

    if os.environ.get("XRAY_AUDIT_CACHE"):
        return os.environ["XRAY_AUDIT_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xray-audit")


@dataclass(frozen=True)
class ScanOptions:
    """Everything that shapes a scan; recorded in results.json as ``parameters``."""

    attacks: tuple[str, ...] = ()
    epsilons: tuple[float, ...] = (4 / 255, 8 / 255, 16 / 255)
    surrogate: str | None = None
    defenses: str | None = None
    #: gradient attacks run with the target's own gradients (``--whitebox``) besides the surrogate's
    whitebox_attacks: tuple[str, ...] = ()
    bpda: bool = False
    #: attacks the adaptive (BPDA) check runs with; empty = every gradient attack of the scan
    bpda_attacks: tuple[str, ...] = ()
    #: known limitations of the data stated by the auditor (``--caveat``), shown with the tool's own caveats
    caveats: tuple[str, ...] = ()
    detector: bool = True
    #: print the attack stage's measured plan and stop (``--plan``), or print it against a budget (``--budget``)
    plan: bool = False
    budget_minutes: float | None = None
    #: run the attack-strength probes (:mod:`auditor.scan.probes`) after the attack stage
    strength_probes: bool = True
    seed: int = 0
    batch_size: int = 32
    attack_batch_size: int = 4
    max_images: int | None = None
    n_boot: int = 1000
    device: str = "auto"
    precision: str = "auto"
    #: the set cache; default :func:`default_cache_dir` (read when the options are made), as the CLI's
    cache_dir: str = field(default_factory=default_cache_dir)
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


def set_name(attack: str, eps: float, style_backend: str | None = None) -> str:
    """Condition name of an adversarial set: ``usmm@8``; STM names its style backend, ``stm[randconv]@16``
    (:class:`~auditor.condition_ids.SetId`)."""
    from auditor.attacks.registry import get_spec

    return SetId(attack, eps, style_backend if get_spec(attack).names_style_backend else None).name
