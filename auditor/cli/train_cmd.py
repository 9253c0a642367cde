"""``xray-audit train ...``: the reference model and the defense models.

Every sub-command writes, into ``--out``: the ONNX model (contract in its
metadata, checked against torch), the torch checkpoint (usable as a
surrogate), a model card (Markdown + JSON), ``history.json`` and the per-epoch
training state used by ``--resume``. The training code lives in the
``training`` package, imported only when a sub-command runs.
"""

from __future__ import annotations

import functools

import click

from auditor.attacks.registry import TRAINING_BANK_ATTACK, list_attacks
from auditor.cli.options import PositiveFloat, parse_epsilons, split_list

#: the default perturbations of a defense's training bank (auditor.training.imagepairs.KINDS, without importing torch)
_BANK_KINDS = ",".join(("noop", "noise", "fgsm", TRAINING_BANK_ATTACK))


def _common(func):
    """Options every recipe shares."""
    opts = [
        click.option("--data", required=True, type=click.Path(), help="Image folder root/<class>/... or CSV manifest."),
        click.option(
            "--out", required=True, type=click.Path(file_okay=False), help="Output folder (one model per folder)."
        ),
        click.option("--epochs", type=click.IntRange(1), help="Training epochs (recipe default if omitted)."),
        click.option("--batch-size", type=click.IntRange(2), help="Batch size (recipe default if omitted)."),
        click.option(
            "--seed", type=int, default=42, show_default=True, help="Split, shuffling and initialisation seed."
        ),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--resume", is_flag=True, help="Continue from the last finished epoch in --out."),
        click.option("--overwrite", is_flag=True, help="Replace a different model already in --out."),
        click.option("--max-steps", type=click.IntRange(1), help="At most N batches per epoch (quick runs)."),
        click.option(
            "--n-boot", type=click.IntRange(0), default=1000, show_default=True, help="Bootstrap resamples for CIs."
        ),
        click.option("-q", "--quiet", is_flag=True, help="Only errors and the final summary."),
        click.option("--no-progress", is_flag=True, help="No progress bars even on a terminal."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return functools.wraps(func)(func)


def _classifier_options(func):
    opts = [
        click.option(
            "--arch",
            type=click.Choice(["resnet50", "resnet18", "small_cnn", "densenet121"]),
            default="resnet50",
            show_default=True,
        ),
        click.option(
            "--image-size",
            type=click.IntRange(16, 1024),
            default=224,
            show_default=True,
            help="Square input size (128 for quick CPU runs).",
        ),
        click.option(
            "--pretrained",
            type=click.Choice(["none", "imagenet"]),
            default="none",
            show_default=True,
            help="ImageNet weights, only from the local torch hub cache (never downloaded).",
        ),
        click.option("--lr", type=PositiveFloat(maximum=10.0), help="Adam learning rate of phase 2 (default 1e-4)."),
        click.option(
            "--head-epochs",
            type=click.IntRange(0),
            help="Phase-1 epochs, head only (default 2 with ImageNet weights, else 0).",
        ),
        click.option(
            "--patience",
            type=click.IntRange(1),
            default=3,
            show_default=True,
            help="Early-stopping patience (val loss).",
        ),
        click.option(
            "--min-epochs",
            type=click.IntRange(0),
            default=0,
            show_default=True,
            help="Phase-2 epochs before early stopping and lr reduction may act.",
        ),
        click.option(
            "--allow-outside-root",
            is_flag=True,
            help="Let a CSV manifest list images whose real location is outside its folder.",
        ),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return functools.wraps(func)(func)


def _print_classifier(result: dict) -> None:
    m = result["metrics"]
    ci = m.get("accuracy_ci") or [float("nan"), float("nan")]
    f1ci = m.get("macro_f1_ci") or [float("nan"), float("nan")]
    click.echo(
        f"test accuracy {m['accuracy']:.3f} (95% CI {ci[0]:.3f}-{ci[1]:.3f}), macro-F1 {m['macro_f1']:.3f} "
        f"(95% CI {f1ci[0]:.3f}-{f1ci[1]:.3f}) on {m['n']} images"
    )
    click.echo(f"model:      {result['onnx']}")
    click.echo(f"checkpoint: {result['checkpoint']} (use as --surrogate)")
    click.echo(f"model card: {result['card_md']}")


def _print_image_model(result: dict) -> None:
    e = result["extra_metrics"]
    click.echo(
        f"surrogate accuracy on the test split: clean {e['surrogate_accuracy_clean']:.3f}, attacked "
        f"{e['surrogate_accuracy_adversarial']:.3f}, attacked+defense {e['surrogate_accuracy_adversarial_after_defense']:.3f}, "
        f"clean+defense {e['surrogate_accuracy_clean_after_defense']:.3f}"
    )
    click.echo(f"model:      {result['onnx']} (image->image)")
    click.echo(f"checkpoint: {result['checkpoint']}")
    click.echo(f"model card: {result['card_md']}")


def _classifier_config(recipe: str, kw: dict, **extra):
    from auditor.training.recipes import TrainConfig

    args = dict(
        data=kw["data"],
        out=kw["out"],
        recipe=recipe,
        seed=kw["seed"],
        device=kw["device"],
        resume=kw["resume"],
        overwrite=kw["overwrite"],
        quiet=kw["quiet"],
        progress=False if kw["no_progress"] else None,
        max_steps=kw["max_steps"],
        n_boot=kw["n_boot"],
        allow_outside_root=bool(kw.get("allow_outside_root")),
    )
    for key in ("arch", "image_size", "lr", "head_epochs", "patience", "min_epochs", "epochs", "batch_size"):
        if kw.get(key) is not None:
            args[key] = kw[key]
    if kw.get("pretrained") and kw["pretrained"] != "none":
        args["pretrained"] = kw["pretrained"]
    args.update({k: v for k, v in extra.items() if v is not None})
    return TrainConfig(**args)


@click.group("train")
def train_group() -> None:
    """Train the reference classifier and the defense models (ONNX + checkpoint + model card)."""


@train_group.command("reference")
@_common
@_classifier_options
def reference_command(**kw) -> None:
    """The seeds' reference recipe: patient-wise 60/20/20 split, ResNet50 head, two phases, early stopping."""
    from auditor.training.recipes import train_reference

    _print_classifier(train_reference(_classifier_config("reference", kw)))


@train_group.command("augment")
@_common
@_classifier_options
@click.option("--init", type=click.Path(dir_okay=False), help="Start from this checkpoint instead of from scratch.")
def augment_command(init, **kw) -> None:
    """Defense: the reference recipe plus intensity scaling, gain masks, uniform noise and random convolutions."""
    from auditor.training.recipes import train_augment

    _print_classifier(train_augment(_classifier_config("augment", kw, init=init)))


@train_group.command("adversarial")
@_common
@click.option(
    "--init", required=True, type=click.Path(dir_okay=False), help="Reference checkpoint (model.pt) to fine-tune."
)
@click.option(
    "--attack",
    default="fgsm-rs",
    show_default=True,
    help="fgsm-rs (on the model being trained), or an auditor gradient attack ("
    + ", ".join(list_attacks("gradient"))
    + ") on the frozen --init model.",
)
@click.option("--eps", default="2,4,8", show_default=True, help="L-inf budgets in 1/255 units, drawn per batch/image.")
@click.option(
    "--adv-fraction",
    type=click.FloatRange(0.01, 1.0),
    default=0.5,
    show_default=True,
    help="Share of each batch replaced by adversarial images.",
)
@click.option("--lr", type=PositiveFloat(maximum=10.0), default=1e-4, show_default=True)
@click.option("--patience", type=click.IntRange(1), default=3, show_default=True)
def adversarial_command(init, attack, eps, adv_fraction, lr, patience, **kw) -> None:
    """Defense: fine-tune a reference model on 50/50 clean/adversarial batches (FGSM-RS by default)."""
    from auditor.training.recipes import train_adversarial

    kw.setdefault("epochs", None)
    if kw["epochs"] is None:
        kw["epochs"] = 5
    cfg = _classifier_config(
        "adversarial",
        {**kw, "lr": lr, "patience": patience},
        init=init,
        attack=attack.lower(),
        adv_eps=parse_epsilons(eps),
        adv_fraction=adv_fraction,
    )
    _print_classifier(train_adversarial(cfg))


@train_group.command("surrogates")
@_common
@click.option(
    "--archs",
    help="One member per architecture (repeats allowed), each trained on its own patient fold. Default: on a "
    "GPU resnet18,small_cnn,densenet121; on a CPU picked to fit --budget-minutes.",
)
@click.option(
    "--image-size",
    type=click.IntRange(16, 1024),
    help="Square input size of every member (ideally the target's). Default: 224 on a GPU; on a CPU the "
    "largest that fits --budget-minutes.",
)
@click.option(
    "--budget-minutes",
    type=click.IntRange(1),
    default=60,
    show_default=True,
    help="On a CPU, the architectures, size and epochs not given are picked so the zoo finishes in about this "
    "time, from a measured probe of one training step per architecture.",
)
@click.option(
    "--exclude",
    type=click.Path(),
    help="Folder or CSV manifest (e.g. the audit's test split) whose patients and images no member may see.",
)
@click.option("--lr", type=float, help="Adam learning rate (default 1e-4).")
@click.option(
    "--patience", type=click.IntRange(1), default=3, show_default=True, help="Early-stopping patience (val loss)."
)
@click.option(
    "--min-epochs",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Epochs before early stopping and lr reduction may act.",
)
def surrogates_command(archs, exclude, budget_minutes, **kw) -> None:
    """A surrogate zoo: several architectures on disjoint patient folds; use the folder as --surrogate DIR.

    What is not given (--archs, --image-size, --epochs) is picked so the zoo finishes in about
    --budget-minutes on this CPU (the full zoo on a GPU); the plan and its reasons are printed first.
    """
    from auditor.models.device import pick_device
    from auditor.training.plan import count_images, plan_zoo
    from auditor.training.zoo import parse_archs, train_zoo

    names = parse_archs(archs) if archs else None
    n_images, n_classes = count_images(kw["data"])
    plan = plan_zoo(
        n_images,
        max(n_classes, 2),
        cuda=pick_device(kw["device"]).type == "cuda",
        budget_seconds=budget_minutes * 60,
        archs=names,
        image_size=kw.get("image_size"),
        epochs=kw.get("epochs"),
    )
    if not kw["quiet"]:
        click.echo(plan.describe(), err=True)
    chosen = {**kw, "arch": plan.archs[0], "image_size": plan.image_size, "epochs": plan.epochs}
    base = _classifier_config("reference", chosen)
    doc = train_zoo(kw["data"], kw["out"], plan.archs, base, exclude=exclude, plan=plan)
    for m in doc["members"]:
        acc = m["test_accuracy"]
        click.echo(
            f"{m['arch']:<12} fold {m['fold']}: {m['n_images']} images, {m['n_patients']} patients, "
            f"test accuracy {'—' if acc is None else f'{acc:.3f}'}  ({m['card']})"
        )
    click.echo(f"zoo: {kw['out']}/zoo.json (use --surrogate {kw['out']})")


def _defense_config(kw: dict, **extra):
    from auditor.training.imagepairs import KINDS, DefenseConfig

    kinds = tuple(k.lower() for k in split_list(kw.get("kinds"))) or KINDS
    args = dict(
        data=kw["data"],
        out=kw["out"],
        surrogate=kw["surrogate"],
        seed=kw["seed"],
        device=kw["device"],
        resume=kw["resume"],
        overwrite=kw["overwrite"],
        quiet=kw["quiet"],
        progress=False if kw["no_progress"] else None,
        max_steps=kw["max_steps"],
        n_boot=kw["n_boot"],
        kinds=kinds,
        eps=parse_epsilons(kw["eps"]),
        max_images=kw.get("max_images"),
        lr=kw.get("lr"),
    )
    for key in ("epochs", "batch_size"):
        if kw.get(key) is not None:
            args[key] = kw[key]
    args.update({k: v for k, v in extra.items() if v is not None})
    return DefenseConfig(**args)


def _defense_options(func):
    opts = [
        click.option(
            "--surrogate",
            required=True,
            type=click.Path(dir_okay=False),
            help="Classifier checkpoint (model.pt from `train reference`) that guides training and makes attacks.",
        ),
        click.option(
            "--kinds",
            default=_BANK_KINDS,
            show_default=True,
            help="Perturbations in the training bank.",
        ),
        click.option("--eps", default="4,8,16", show_default=True, help="L-inf budgets of the bank, 1/255 units."),
        click.option(
            "--max-images",
            type=click.IntRange(4),
            help="Use at most N training images (bank generation is slow on CPU).",
        ),
        click.option("--lr", type=PositiveFloat(maximum=10.0), help="Learning rate (denoiser 1e-3, CycleGAN 2e-4)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return functools.wraps(func)(func)


@train_group.command("denoiser")
@_common
@_defense_options
def denoiser_command(**kw) -> None:
    """Defense: HGD denoiser (U-Net, residual output) guided by the surrogate's last conv features."""
    from auditor.training.denoiser import train_denoiser

    _print_image_model(train_denoiser(_defense_config(kw)))


@train_group.command("cyclegan")
@_common
@_defense_options
@click.option(
    "--decay-epochs", type=click.IntRange(0), help="Epochs of linear lr decay after --epochs (default = --epochs)."
)
@click.option("--width", type=click.IntRange(4, 128), default=16, show_default=True, help="Base width of G and D.")
@click.option(
    "--n-res", type=click.IntRange(1, 12), default=3, show_default=True, help="Residual blocks per generator."
)
def cyclegan_command(decay_epochs, width, n_res, **kw) -> None:
    """Defense: CycleGAN restoration (attacked -> clean generator), LSGAN, cycle lambda 10."""
    from auditor.training.cyclegan import train_cyclegan

    if kw.get("epochs") is None:
        kw["epochs"] = 5
    _print_image_model(train_cyclegan(_defense_config(kw, decay_epochs=decay_epochs, width=width, n_res=n_res)))


__all__ = ["train_group"]
