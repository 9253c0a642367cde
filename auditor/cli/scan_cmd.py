"""``xray-audit scan MODEL --data DIR``: the audit."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

import click

from auditor.attack_specs import ATTACKS, default_attacks, help_text, list_attacks
from auditor.cli.options import (
    MAX_ATTACK_BATCH_SIZE,
    MAX_BATCH_SIZE,
    MAX_BOOTSTRAP,
    check_outside_data,
    check_ray_address,
    check_writable,
    common_run_options,
    contract_overrides,
    gate_policy_options,
    model_contract_options,
    parse_epsilons,
    split_list,
)
from auditor.cli.sign_options import load_signing_from, sign_options
from auditor.errors import UsageError
from auditor.scan.options import default_cache_dir

DEFAULT_FORMATS = "json,csv,html,pdf"
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


def run_scan(
    model: str,
    data: str,
    out: str,
    *,
    compare=(),
    formats: str = DEFAULT_FORMATS,
    fail_under: str | None = None,
    strict: bool = False,
    quiet: bool = False,
    progress: bool | None = None,
    overrides: dict | None = None,
    sidecar: str | None = None,
    command: str = "",
    debug: bool = False,
    min_transfer: float | None = None,
    allow_transfer_only: bool = False,
    gate_on: str = "point",
    max_clean_drop: float | None = None,
    signing=None,
    **options,
) -> int:
    """Library entry of the scan command; returns the exit code (0, or 1 for a failed gate or a skip under ``strict``).

    ``signing`` (:class:`auditor.report.sign.Signing`) signs report.pdf (PAdES).

    Reports are written into a staging folder beside ``out`` and moved into
    place only when all of them are complete (see :mod:`auditor.report.staging`).
    Library warnings during the scan go to ``extras.notes`` of results.json
    instead of stderr (``debug=True`` shows them instead).
    """
    from auditor.report.base import parse_formats
    from auditor.report.gates import GatePolicy, check_min_transfer, parse_gates
    from auditor.report.render import FILE_FORMATS
    from auditor.report.staging import StagedOutput

    fmts = split_list(formats)
    parse_formats(fmts)
    gates = parse_gates(fail_under) if fail_under else []
    min_transfer = check_min_transfer(min_transfer, gates)
    policy = GatePolicy(gate_on=gate_on, allow_transfer_only=allow_transfer_only, min_transfer=min_transfer)
    max_clean_drop = check_max_clean_drop(max_clean_drop)
    check_scan_flags(options, gates)
    _check_dir_flag(out, "--out")
    fmt = options.get("data_format", "auto")
    check_outside_data(data, out, "--out", fmt)
    if options.get("attacks") or options.get("bpda"):
        check_outside_data(data, options.get("cache_dir"), "--cache-dir", fmt)
    check_writable(out, "--out", staged_beside=True)
    with StagedOutput(out, managed=FILE_FORMATS.values()) as stage:
        return _run_scan_staged(
            model,
            data,
            stage,
            compare=compare,
            fmts=fmts,
            gates=gates,
            strict=strict,
            quiet=quiet,
            progress=progress,
            overrides=overrides,
            sidecar=sidecar,
            command=command,
            debug=debug,
            policy=policy,
            max_clean_drop=max_clean_drop,
            signing=signing,
            **options,
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


def _run_scan_staged(
    model,
    data,
    stage,
    *,
    compare,
    fmts,
    gates,
    strict,
    quiet,
    progress,
    overrides,
    sidecar,
    command,
    debug,
    policy=None,
    max_clean_drop=None,
    signing=None,
    **options,
) -> int:
    from dataclasses import replace

    from auditor.capture import capture_library_output
    from auditor.data.labels import check_label_targets
    from auditor.models.onnx import OnnxClassifier
    from auditor.models.spec import read_spec
    from auditor.models.spec_graph import INFERRED_NOTE
    from auditor.progress import Reporter
    from auditor.report.contract import strict_contract_status
    from auditor.report.gates import apply_gates, exit_status, gate_notes, skipped_items
    from auditor.report.render import FILE_FORMATS, render_all
    from auditor.scan.options import ScanOptions
    from auditor.scan.pipeline import Auditor
    from auditor.scan.plan import PlanOnly
    from auditor.strength import strength_checks

    reporter = Reporter(quiet=quiet, progress=progress)
    with capture_library_output(show=debug) as notes:
        spec = read_spec(model, sidecar=sidecar, overrides=overrides or {})
        check_gate_classes(gates, spec.class_names)
        check_label_targets(options.get("label_map"), spec.class_names)
        for w in spec.warnings:  # how the scaling was read from the graph is a note, the rest warnings
            (reporter.info if w.startswith(INFERRED_NOTE) else reporter.warn)(w)
        device = options.get("device", "auto")
        target = OnnxClassifier(model, spec=spec, device=device)
        reporter.info(
            f"model {model}: {spec.channels}x{spec.height}x{spec.width} {spec.layout}, classes "
            f"{', '.join(spec.class_names)}; ONNX Runtime provider {target.provider}"
        )
        others = []
        for path in compare:
            cspec = read_spec(path, overrides={k: v for k, v in (overrides or {}).items() if k != "class_names"})
            if [c.lower() for c in cspec.class_names] != [c.lower() for c in spec.class_names]:
                raise UsageError(
                    f"--compare {path}: classes {list(cspec.class_names)} differ from the target's "
                    f"{list(spec.class_names)}"
                )
            others.append(OnnxClassifier(path, spec=cspec, device=device))
        opts = ScanOptions(strict=strict, **options)
        try:
            result = Auditor(target, opts, reporter, command=command).run(data, compare=others)
        except PlanOnly:
            return 0  # --plan: the plan was printed; nothing attacked, no reports
    if notes:
        result = replace(result, extras={**result.extras, "notes": list(notes)})
    result = with_max_clean_drop(result, max_clean_drop)
    result = replace(result, extras={**result.extras, "strength_checks": strength_checks(result)})
    result = apply_gates(result, gates, policy)
    with capture_library_output(show=debug):
        render_all(result, stage.path, fmts, signing=signing)
    written = stage.commit()
    from auditor.report.console import print_summary

    print_summary(result, stream=sys.stdout)
    kinds = {name: fmt.value for fmt, name in FILE_FORMATS.items()}
    for name, path in written.items():
        reporter.info(f"wrote {kinds.get(name, name)}: {path}")
    code, message = exit_status([g.name for g in result.gates if not g.passed], skipped_items(result), strict)
    code, message = strict_contract_status(result, strict, code, message)
    for line in ([message] if message else []) + gate_notes(result):
        click.echo(line, err=True)
    return code


def run_scan_from_demo(
    model_path: str, data_dir: str, out_dir: str, surrogate_path: str | None, quiet: bool = False, **extra
) -> int:
    """The demo's scan: clean + the default transfer attacks (if a surrogate is given) + JPEG defense + detector."""
    from auditor.attacks.registry import default_attacks

    attacks = default_attacks() if surrogate_path else ()
    extra.setdefault("defenses", "jpeg:75,median:3")
    extra.setdefault("cache_dir", str(Path(out_dir).parent / "cache"))
    extra.setdefault("n_boot", 500)
    return run_scan(
        model_path,
        data_dir,
        out_dir,
        quiet=quiet,
        surrogate=surrogate_path,
        attacks=attacks,
        command=f"xray-audit demo --out {shlex.quote(str(Path(out_dir).parent))}",
        **extra,
    )


@click.command("scan")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--data", required=True, type=click.Path(), help="Image folder (root/<class>/...), CSV manifest or NIH table."
)
@click.option("--data-format", type=click.Choice(["auto", "folder", "csv", "nih"]), default="auto", show_default=True)
@click.option("--images-dir", type=click.Path(file_okay=False), help="Where CSV/NIH image paths are relative to.")
@click.option(
    "--allow-outside-root",
    is_flag=True,
    help="Let a CSV/NIH manifest list images whose real location is outside its data root.",
)
@click.option("--label-map", help="Rename data labels to model classes: DATA=MODEL,...; DATA=- drops that data class.")
@click.option("--out", default="xray-audit-out", show_default=True, type=click.Path(file_okay=False))
@model_contract_options
@click.option(
    "--attacks",
    help="Comma list of attacks, or none (default with a surrogate: "
    + ",".join(default_attacks())
    + "). "
    + help_text(),
)
@click.option("--eps", default="4,8,16", show_default=True, help="L-inf budgets, in 1/255 units (or 8/255, 0.03).")
@click.option(
    "--whitebox",
    "whitebox",
    help="Also run these gradient attacks with the target's own gradients (onnx2torch), in the same scan as "
    "--surrogate's transfer attacks, e.g. --surrogate zoo/ --whitebox "
    + ",".join(n for n, s in ATTACKS.items() if s.white_box_bound)
    + ".",
)
@click.option(
    "--queries",
    type=click.IntRange(1, 1_000_000),
    help="Query budget per image of query attacks (default 1000, see README: Square reaches most of its "
    "success within it on undefended models; use 5000 for a tighter bound).",
)
@click.option(
    "--attack-param",
    "attack_param",
    multiple=True,
    help=f"An attack parameter, ATTACK.PARAM=VALUE (repeatable), e.g. {_PARAM_EXAMPLE}.",
)
@click.option(
    "--surrogate", help="Torch checkpoint(s) for transfer attacks (comma = ensemble), or 'target' (white-box)."
)
@click.option(
    "--defenses",
    help="e.g. jpeg, jpeg:75, bitdepth:4, median:3, denoiser:PATH, cyclegan:PATH, feature:REF. "
    "'jpeg' alone sweeps four qualities: jpeg:90, jpeg:75, jpeg:50, jpeg:30.",
)
@click.option(
    "--bpda", is_flag=True, help="Also attack surrogate+defense with straight-through gradients (adaptive check)."
)
@click.option(
    "--caveat",
    "caveats",
    multiple=True,
    help="A known limitation of the data (repeatable), shown in the "
    "report's summary and data section, e.g. a class with its own processing chain.",
)
@click.option(
    "--bpda-attacks",
    help="Run the adaptive check only with these gradient attacks of the scan (default: every one).",
)
@click.option(
    "--plan",
    is_flag=True,
    help="Measure each attack on 2 images, print what the attack stage will cost on this host, and stop.",
)
@click.option(
    "--budget",
    "budget_minutes",
    type=click.FloatRange(min=0.1),
    help="Minutes the attack stage may take: prints the measured plan and, when over, how many images or "
    "which attacks fit; the scan then runs as asked.",
)
@click.option(
    "--probes/--no-probes",
    default=True,
    show_default=True,
    help="Attack-strength probes after the attack stage: a large-epsilon and a longer run of the strongest attack "
    "on 16 images, to spot gradient masking (see README).",
)
@click.option(
    "--detector/--no-detector", default=True, show_default=True, help="Score the edge/SSIM and squeezing detectors."
)
@click.option(
    "--compare", multiple=True, type=click.Path(dir_okay=False), help="Further ONNX models scanned on the same sets."
)
@click.option("--format", "formats", default=DEFAULT_FORMATS, show_default=True, help="json,csv,html,pdf,junit")
@click.option("--fail-under", help="Gates, e.g. accuracy=0.8,robust_accuracy=0.5 (see README).")
@click.option(
    "--min-transfer",
    type=float,
    help="Robustness gates fail when the transfer efficiency "
    "(target / surrogate attack success rate, transfer conditions only) is below this fraction, e.g. 0.5 (see README).",
)
@click.option(
    "--max-clean-drop",
    type=float,
    help="Largest clean-accuracy drop (a fraction) a defense may cause and still be named best "
    "[default: stay within the undefended clean accuracy's 95% CI].",
)
@gate_policy_options("point")
@click.option(
    "--strict",
    is_flag=True,
    help="Any skip (image, attack, defense, BPDA, detector) makes the scan exit 1 after writing its reports.",
)
@click.option("--max-images", type=click.IntRange(1), help="Stratified, seeded subset of at most N images.")
@click.option(
    "--batch-size", type=click.IntRange(1, MAX_BATCH_SIZE), default=32, show_default=True, help="Inference batch size."
)
@click.option(
    "--attack-batch-size",
    type=click.IntRange(1, MAX_ATTACK_BATCH_SIZE),
    default=4,
    show_default=True,
    help="Images per attack batch.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Surrogate arithmetic for attacks; auto times fp32 and bf16 here and checks bf16 on the first batch.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    help="Adversarial-set cache (default: $XRAY_AUDIT_CACHE or ~/.cache/xray-audit).",
)
@click.option(
    "--style-backend",
    type=click.Choice(["randconv", "adain-stats", "ghiasi"]),
    default="randconv",
    show_default=True,
    help="STM style network (ghiasi needs --stm-checkpoint).",
)
@click.option("--stm-checkpoint", type=click.Path(), help="Folder with checkpoint_transformer.pth (+ embeddings).")
@click.option("--style-image", type=click.Path(dir_okay=False), help="Style image of the visible style-blend sets.")
@click.option(
    "--ray-address",
    help="Spread attack batches and the evaluation of every condition over Ray: 'local' "
    "or a cluster address ('auto'); --cache-dir and the data must be on a shared file system.",
)
@click.option(
    "--workers", type=click.IntRange(1), help="Ray workers per adversarial set or condition (default: available CPUs)."
)
@click.option(
    "--n-boot",
    type=click.IntRange(0, MAX_BOOTSTRAP),
    default=1000,
    show_default=True,
    help="Bootstrap resamples for CIs.",
)
@common_run_options
@sign_options
def scan_command(
    model,
    data,
    data_format,
    images_dir,
    label_map,
    out,
    attacks,
    eps,
    whitebox,
    queries,
    attack_param,
    surrogate,
    defenses,
    bpda,
    bpda_attacks,
    caveats,
    plan,
    budget_minutes,
    probes,
    detector,
    compare,
    formats,
    fail_under,
    min_transfer,
    allow_transfer_only,
    gate_on,
    max_clean_drop,
    strict,
    max_images,
    batch_size,
    attack_batch_size,
    precision,
    cache_dir,
    style_backend,
    stm_checkpoint,
    style_image,
    ray_address,
    workers,
    n_boot,
    seed,
    device,
    quiet,
    no_progress,
    allow_outside_root=False,
    **kw,
) -> None:
    """Audit MODEL (ONNX) on the images in --data; write results.json, samples.csv and reports to --out."""
    from auditor.data import parse_label_map

    signing = load_signing_from(kw)  # before the scan: a bad key fails in a second, not after the attacks
    attack_names = _parse_attacks(attacks, surrogate)
    whitebox_names = parse_whitebox(whitebox, attack_names, surrogate)
    attack_params = parse_attack_params(attack_param, attack_names + whitebox_names, queries)
    exit_code = run_scan(
        model,
        data,
        out,
        compare=compare,
        formats=formats,
        fail_under=fail_under,
        min_transfer=min_transfer,
        allow_transfer_only=allow_transfer_only,
        gate_on=gate_on,
        max_clean_drop=max_clean_drop,
        strict=strict,
        quiet=quiet,
        progress=False if no_progress else None,
        overrides=contract_overrides(kw),
        sidecar=kw.get("sidecar"),
        command=" ".join(shlex.quote(a) for a in ["xray-audit", *sys.argv[1:]]),
        attacks=attack_names,
        whitebox_attacks=whitebox_names,
        attack_params=attack_params,
        epsilons=parse_epsilons(eps),
        surrogate=surrogate,
        defenses=defenses,
        bpda=bpda,
        bpda_attacks=_parse_bpda_attacks(bpda_attacks, bpda, attack_names),
        caveats=tuple(c.strip() for c in caveats if c.strip()),
        detector=detector,
        strength_probes=probes,
        plan=plan,
        budget_minutes=budget_minutes,
        seed=seed,
        batch_size=batch_size,
        attack_batch_size=attack_batch_size,
        max_images=max_images,
        n_boot=n_boot,
        device=device,
        precision=precision,
        cache_dir=cache_dir or default_cache_dir(),
        style_backend=style_backend,
        stm_checkpoint=stm_checkpoint,
        style_image=style_image,
        label_map=parse_label_map(label_map),
        data_format=data_format,
        images_dir=images_dir,
        allow_outside_root=allow_outside_root,
        ray_address=ray_address,
        workers=workers,
        debug=bool((click.get_current_context().find_root().obj or {}).get("debug")),
        signing=signing,
    )
    if exit_code:
        click.get_current_context().exit(exit_code)
