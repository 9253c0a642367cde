"""The flags of ``xray-audit scan`` that are parsed or checked before any work: attack names and
parameters, ``--whitebox``, ``--bpda-attacks``, folders and files, gate classes and ``--max-clean-drop``."""

from __future__ import annotations

import math
from pathlib import Path

from auditor.attack_specs import list_attacks
from auditor.cli.options import check_ray_address, check_writable, split_list
from auditor.errors import UsageError

#: an ``--attack-param`` example: the first gradient attack's iterations
_PARAM_EXAMPLE = f"{list_attacks('gradient')[0]}.steps=20"


def _parse_attacks(text: str | None, surrogate: str | None) -> tuple[str, ...]:
    from auditor.attacks.registry import default_attacks, get_spec
    from auditor.scan.options import KNOWN_ATTACKS

    if text is None:
        return default_attacks() if surrogate else ()
    names = [a.lower() for a in split_list(text)]
    if names in (["none"], []):
        return ()
    unknown = [a for a in names if a not in KNOWN_ATTACKS]
    if unknown:
        raise UsageError(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(KNOWN_ATTACKS)}, none")
    gradient = [a for a in names if get_spec(a).kind == "gradient"]
    if gradient and not surrogate:
        raise UsageError(
            f"{', '.join(gradient)} need(s) a surrogate's gradients: --surrogate CHECKPOINT[,CHECKPOINT...] "
            "or --surrogate target"
        )
    return tuple(dict.fromkeys(names))


def parse_whitebox(text: str | None, attacks: tuple[str, ...], surrogate: str | None) -> tuple[str, ...]:
    """``--whitebox NAME,...``: gradient attacks to run on the converted target besides the transfer ones.

    An attack cannot be in both ``--attacks`` (on the surrogate) and ``--whitebox``: the two sets would
    share a condition name. With ``--surrogate target`` the flag adds nothing and is refused.
    """
    from auditor.attacks.registry import get_spec

    if text is None:
        return ()
    names = tuple(dict.fromkeys(a.lower() for a in split_list(text)))
    if not names:
        raise UsageError("--whitebox needs at least one gradient attack")
    if (surrogate or "").strip().lower() == "target":
        raise UsageError("--whitebox adds white-box attacks to a transfer scan; with --surrogate target use --attacks")
    for name in names:
        if get_spec(name).kind != "gradient":
            raise UsageError(f"--whitebox {name}: not a gradient attack (it needs no gradients of the target)")
        if name in attacks:
            raise UsageError(
                f"--whitebox {name}: also in --attacks; run an attack either on the surrogate or on the target, "
                "or use two scans and report --merge"
            )
    return names


def _param_value(text: str):
    """``12`` -> 12, ``0.5`` -> 0.5, ``ce+dlr`` stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_attack_params(
    items: tuple[str, ...] | list[str], attacks: tuple[str, ...], queries: int | None = None
) -> dict[str, dict]:
    """``--attack-param apgd.steps=50`` (repeatable) and ``--queries N`` -> ``{attack: {param: value}}``.

    Each name must be an attack of this scan and a parameter its class accepts (checked against the
    registry before any data is read); ``epsilon`` comes from ``--eps`` only.
    """
    from auditor.attacks.registry import get_spec

    out: dict[str, dict] = {}
    for item in items:
        head, sep, value = item.partition("=")
        attack, dot, key = head.strip().lower().partition(".")
        if not sep or not dot or not key.strip() or not value.strip():
            raise UsageError(f"--attack-param {item!r}: expected ATTACK.PARAM=VALUE, e.g. {_PARAM_EXAMPLE}")
        key = key.strip()
        if attack not in attacks:
            raise UsageError(f"--attack-param {item!r}: {attack} is not an attack of this scan ({', '.join(attacks)})")
        spec = get_spec(attack)
        accepted = [] if spec.kind == "visible" else [p for p in spec.load().accepted_params() if p != "epsilon"]
        if key not in accepted:
            raise UsageError(
                f"--attack-param {item!r}: {attack} has no parameter {key!r} (accepted: {', '.join(accepted) or 'none'})"
            )
        if key in out.get(attack, {}):
            raise UsageError(f"--attack-param {item!r}: {attack}.{key} is given twice")
        out.setdefault(attack, {})[key] = _param_value(value.strip())
    if queries is not None:
        query = [a for a in attacks if get_spec(a).kind == "query"]
        if not query:
            raise UsageError(f"--queries needs a query attack in --attacks ({', '.join(list_attacks('query'))})")
        for a in query:
            if "queries" in out.get(a, {}):
                raise UsageError(f"--queries and --attack-param {a}.queries both set the query budget")
            out.setdefault(a, {})["queries"] = queries
    return out


def _parse_bpda_attacks(text: str | None, bpda: bool, attacks: tuple[str, ...]) -> tuple[str, ...]:
    """``--bpda-attacks NAME,...``: the scan's gradient attacks the adaptive check runs with (empty: all)."""
    if text is None:
        return ()
    if not bpda:
        raise UsageError("--bpda-attacks needs --bpda")
    names = tuple(dict.fromkeys(a.lower() for a in split_list(text)))
    from auditor.attacks.registry import get_spec

    adaptive = [a for a in attacks if get_spec(a).kind == "gradient" and get_spec(a).adaptive]
    missing = [a for a in names if a not in adaptive]
    if not names or missing:
        usable = ", ".join(adaptive) or "none"
        raise UsageError(f"--bpda-attacks {text}: name gradient attacks of this scan ({usable})")
    return names


def _check_dir_flag(path: str | None, flag: str) -> None:
    """A folder flag must not be, or lie under, an existing regular file (checked before any work)."""
    if not path:
        return
    p = Path(path).expanduser().absolute()
    for q in (p, *p.parents):
        try:
            if q.exists():
                if not q.is_dir():
                    what = "is a file" if q == p else f"lies under the file {q}"
                    raise UsageError(f"{flag} {path}: {what}, not a folder")
                return
        except OSError as exc:
            raise UsageError(f"{flag} {path}: cannot be checked ({exc.strerror or exc})") from None


def _check_file_flag(path: str | None, flag: str) -> None:
    if path and not Path(path).expanduser().is_file():
        raise UsageError(f"{flag} {path}: file not found")


def check_scan_flags(options: dict, gates=()) -> None:
    """Every flag of a scan that can be checked without the model or the data, checked at once.

    Raises :class:`UsageError` (exit 2) before any image is read or attacked; a ``--cache-dir`` that
    cannot be written, or a Ray cluster that cannot be reached, is a :class:`RuntimeFailure` (exit 4).
    """
    from auditor.defenses.registry import check_defenses

    check_defenses(options.get("defenses"))
    if options.get("attacks") or options.get("whitebox_attacks") or options.get("bpda"):
        _check_dir_flag(options.get("cache_dir"), "--cache-dir")
    _check_file_flag(options.get("style_image"), "--style-image")
    # a missing STM style checkpoint is not checked here: it makes the STM attack a Skipped item
    surrogate = options.get("surrogate")
    if surrogate and surrogate.strip().lower() != "target":
        for part in split_list(surrogate):
            if Path(part).expanduser().is_dir():  # a surrogate zoo (xray-audit train surrogates)
                if not (Path(part).expanduser() / "zoo.json").is_file():
                    raise UsageError(
                        f"--surrogate {part}: a folder must be a surrogate zoo with zoo.json "
                        "(xray-audit train surrogates)"
                    )
                continue
            _check_file_flag(part, "--surrogate")
    if options.get("attacks") or options.get("bpda"):
        check_writable(options.get("cache_dir"), "--cache-dir")
    # last: the only check that may wait (a TCP connection to the cluster, with a timeout)
    check_ray_address(options.get("ray_address"))


def check_gate_classes(gates, class_names, where: str = "the model") -> None:
    """``--fail-under sensitivity:<class>`` must name one of the model's classes (case-insensitive)."""
    known = {c.casefold() for c in class_names}
    for g in gates:
        if g.cls is not None and known and g.cls.casefold() not in known:
            raise UsageError(
                f"--fail-under {g.name}: {where} has no class {g.cls!r} (classes: {', '.join(class_names)})"
            )


def check_max_clean_drop(value: float | None) -> float | None:
    """Validate ``--max-clean-drop``: None (the default, the clean CI rules) or a fraction in [0, 1]."""
    if value is not None and (not math.isfinite(value) or not 0.0 <= value <= 1.0):
        raise UsageError(f"--max-clean-drop {value:g} must be a fraction between 0 and 1 (e.g. 0.05)")
    return value


def with_max_clean_drop(result, value: float | None):
    """``result`` with ``parameters.max_clean_drop`` set (read by :mod:`auditor.report.verdicts`); unchanged
    for None."""
    from dataclasses import replace

    if value is None:
        return result
    return replace(result, parameters={**result.parameters, "max_clean_drop": value})
