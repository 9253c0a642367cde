"""The click options of ``xray-audit scan``, declared once; those ``xray-audit attack`` shares with it
are module-level decorators it applies too."""

from __future__ import annotations

import click

from auditor.attack_specs import ATTACKS, default_attacks, help_text
from auditor.cli.options import (
    MAX_ATTACK_BATCH_SIZE,
    MAX_BATCH_SIZE,
    MAX_BOOTSTRAP,
    gate_policy_options,
    model_contract_options,
)
from auditor.cli.scan_flags import _PARAM_EXAMPLE

DEFAULT_FORMATS = "json,csv,html,pdf"

#: options ``scan`` and ``attack`` declare alike
data_option = click.option(
    "--data", required=True, type=click.Path(), help="Image folder (root/<class>/...), CSV manifest or NIH table."
)
data_format_option = click.option(
    "--data-format", type=click.Choice(["auto", "folder", "csv", "nih"]), default="auto", show_default=True
)
label_map_option = click.option(
    "--label-map", help="Rename data labels to model classes: DATA=MODEL,...; DATA=- drops that data class."
)
eps_option = click.option(
    "--eps", default="4,8,16", show_default=True, help="L-inf budgets, in 1/255 units (or 8/255, 0.03)."
)
max_images_option = click.option(
    "--max-images", type=click.IntRange(1), help="Stratified, seeded subset of at most N images."
)
images_dir_option = click.option(
    "--images-dir", type=click.Path(file_okay=False), help="Where CSV/NIH image paths are relative to."
)
allow_outside_root_option = click.option(
    "--allow-outside-root",
    is_flag=True,
    help="Let a CSV/NIH manifest list images whose real location is outside its data root.",
)
stm_checkpoint_option = click.option(
    "--stm-checkpoint", type=click.Path(), help="Folder with checkpoint_transformer.pth (+ embeddings)."
)


def attack_batch_size_option(flag: str):
    """Images per attack batch: ``scan``'s ``--attack-batch-size``, ``attack``'s ``--batch-size``."""
    return click.option(
        flag,
        type=click.IntRange(1, MAX_ATTACK_BATCH_SIZE),
        default=4,
        show_default=True,
        help="Images per attack batch.",
    )


_SCAN_OPTIONS = [
    data_option,
    data_format_option,
    images_dir_option,
    allow_outside_root_option,
    label_map_option,
    click.option("--out", default="xray-audit-out", show_default=True, type=click.Path(file_okay=False)),
    model_contract_options,
    click.option(
        "--attacks",
        help="Comma list of attacks, or none (default with a surrogate: "
        + ",".join(default_attacks())
        + "). "
        + help_text(),
    ),
    eps_option,
    click.option(
        "--whitebox",
        "whitebox",
        help="Also run these gradient attacks with the target's own gradients (onnx2torch), in the same scan as "
        "--surrogate's transfer attacks, e.g. --surrogate zoo/ --whitebox "
        + ",".join(n for n, s in ATTACKS.items() if s.white_box_bound)
        + ".",
    ),
    click.option(
        "--queries",
        type=click.IntRange(1, 1_000_000),
        help="Query budget per image of query attacks (default 1000, see README: Square reaches most of its "
        "success within it on undefended models; use 5000 for a tighter bound).",
    ),
    click.option(
        "--attack-param",
        "attack_param",
        multiple=True,
        help=f"An attack parameter, ATTACK.PARAM=VALUE (repeatable), e.g. {_PARAM_EXAMPLE}.",
    ),
    click.option(
        "--surrogate", help="Torch checkpoint(s) for transfer attacks (comma = ensemble), or 'target' (white-box)."
    ),
    click.option(
        "--defenses",
        help="e.g. jpeg, jpeg:75, bitdepth:4, median:3, denoiser:PATH, cyclegan:PATH, feature:REF. "
        "'jpeg' alone sweeps four qualities: jpeg:90, jpeg:75, jpeg:50, jpeg:30.",
    ),
    click.option(
        "--bpda", is_flag=True, help="Also attack surrogate+defense with straight-through gradients (adaptive check)."
    ),
    click.option(
        "--caveat",
        "caveats",
        multiple=True,
        help="A known limitation of the data (repeatable), shown in the "
        "report's summary and data section, e.g. a class with its own processing chain.",
    ),
    click.option(
        "--bpda-attacks",
        help="Run the adaptive check only with these gradient attacks of the scan (default: every one).",
    ),
    click.option(
        "--plan",
        is_flag=True,
        help="Measure each attack on 2 images, print what the attack stage will cost on this host, and stop.",
    ),
    click.option(
        "--budget",
        "budget_minutes",
        type=click.FloatRange(min=0.1),
        help="Minutes the attack stage may take: prints the measured plan and, when over, how many images or "
        "which attacks fit; the scan then runs as asked.",
    ),
    click.option(
        "--probes/--no-probes",
        default=True,
        show_default=True,
        help="Attack-strength probes after the attack stage: a large-epsilon and a longer run of the strongest attack "
        "on 16 images, to spot gradient masking (see README).",
    ),
    click.option(
        "--detector/--no-detector", default=True, show_default=True, help="Score the edge/SSIM and squeezing detectors."
    ),
    click.option(
        "--compare",
        multiple=True,
        type=click.Path(dir_okay=False),
        help="Further ONNX models scanned on the same sets.",
    ),
    click.option("--format", "formats", default=DEFAULT_FORMATS, show_default=True, help="json,csv,html,pdf,junit"),
    click.option("--fail-under", help="Gates, e.g. accuracy=0.8,robust_accuracy=0.5 (see README)."),
    click.option(
        "--min-transfer",
        type=float,
        help="Robustness gates fail when the transfer efficiency "
        "(target / surrogate attack success rate, transfer conditions only) is below this fraction, e.g. 0.5 (see README).",
    ),
    click.option(
        "--max-clean-drop",
        type=float,
        help="Largest clean-accuracy drop (a fraction) a defense may cause and still be named best "
        "[default: stay within the undefended clean accuracy's 95% CI].",
    ),
    gate_policy_options("point"),
    click.option(
        "--strict",
        is_flag=True,
        help="Any skip (image, attack, defense, BPDA, detector) makes the scan exit 1 after writing its reports.",
    ),
    max_images_option,
    click.option(
        "--batch-size",
        type=click.IntRange(1, MAX_BATCH_SIZE),
        default=32,
        show_default=True,
        help="Inference batch size.",
    ),
    attack_batch_size_option("--attack-batch-size"),
    click.option(
        "--precision",
        type=click.Choice(["auto", "fp32", "bf16"]),
        default="auto",
        show_default=True,
        help="Surrogate arithmetic for attacks; auto times fp32 and bf16 here and checks bf16 on the first batch.",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(file_okay=False),
        help="Adversarial-set cache (default: $XRAY_AUDIT_CACHE or ~/.cache/xray-audit).",
    ),
    click.option(
        "--style-backend",
        type=click.Choice(["randconv", "adain-stats", "ghiasi"]),
        default="randconv",
        show_default=True,
        help="STM style network (ghiasi needs --stm-checkpoint).",
    ),
    stm_checkpoint_option,
    click.option("--style-image", type=click.Path(dir_okay=False), help="Style image of the visible style-blend sets."),
    click.option(
        "--ray-address",
        help="Spread attack batches and the evaluation of every condition over Ray: 'local' "
        "or a cluster address ('auto'); --cache-dir and the data must be on a shared file system.",
    ),
    click.option(
        "--workers",
        type=click.IntRange(1),
        help="Ray workers per adversarial set or condition (default: available CPUs).",
    ),
    click.option(
        "--n-boot",
        type=click.IntRange(0, MAX_BOOTSTRAP),
        default=1000,
        show_default=True,
        help="Bootstrap resamples for CIs.",
    ),
]


def scan_options(func):
    """Every option of ``xray-audit scan`` between its MODEL argument and the run and signing options."""
    for opt in reversed(_SCAN_OPTIONS):
        func = opt(func)
    return func
