"""Scan stage: attack-strength probes on a small subset (Carlini et al. 2019, "On Evaluating Adversarial
Robustness", arXiv:1902.06705; Athalye et al. 2018, "Obfuscated Gradients Give a False Sense of Security").

An attack that works drives accuracy to chance or below when its budget is large, and does no worse when it
runs longer. Where either fails, the scan's robust accuracy may reflect a broken attack (gradient masking),
not a robust model. :func:`run_strength_probes` measures both on ``PROBE_IMAGES`` seeded images, for the
strongest attack of each model the scan attacked with (a surrogate or the converted target; the target's
queries), and returns records of the form the verdict layer reads from ``extras["strength_probes"]``:

* ``large_eps`` -- accuracy of the target on the probe images attacked at ``LARGE_EPS``;
* ``more_iterations`` -- accuracy at the scan's largest ε with ``ITERATION_FACTOR`` times the attack's
  iterations (``accuracy``) against its own iterations (``reference_accuracy``), on the same images.

Probe images are attacked directly (not cached: a few dozen images) and quantised to 8 bits as every set is.

Specification in our words: docs/algorithms.md §16.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from auditor.scan.context import LoadedData, ScanContext
from auditor.scan.factories import SurrogateFactory
from auditor.scan.records import AdversarialSet

#: images per probe, a seeded sample of the scan's
PROBE_IMAGES = 16
#: the large budget: half the intensity range, enough to turn any image into any other class's look
LARGE_EPS = 128 / 255
#: the longer run's iterations, as a multiple of the attack's own
ITERATION_FACTOR = 2


def probe_indices(n: int, seed: int, size: int = PROBE_IMAGES) -> np.ndarray:
    """The probe images: a seeded sample of ``size`` of ``n`` (all of them when ``n <= size``), in order."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0x9B0BE]).choice(n, size=size, replace=False))


def _attack_images(attack_name: str, model: Any, params: dict, x: np.ndarray, y: np.ndarray, seed: int, device):
    """``x`` attacked once (no cache) and quantised to the 8-bit levels of the budget."""
    import torch

    from auditor.attacks.quantize import quantize
    from auditor.attacks.registry import make_attack

    p = dict(params)
    if device is not None:
        p.setdefault("device", device)
    atk = make_attack(attack_name, model, **p)
    atk.ensure_setup()
    out = atk(torch.from_numpy(x), torch.from_numpy(y), seed=seed)
    adv = out.detach().cpu().numpy() if hasattr(out, "detach") else np.asarray(out)
    return quantize(adv, x, atk.epsilon).astype(np.float32) / 255.0


def _accuracy(ctx: ScanContext, x: np.ndarray, y: np.ndarray) -> float:
    proba = ctx.target.predict_proba(x, batch_size=ctx.options.batch_size)
    return float(np.mean(proba.argmax(1) == y))


def _probe_attack(names: list[str]) -> str:
    """The attack each probe repeats: the costliest per image of those run (the strongest the scan trusts)."""
    from auditor.attacks.registry import get_spec

    return max(names, key=lambda a: (get_spec(a).cost({}), -names.index(a)))


def run_strength_probes(
    ctx: ScanContext, data: LoadedData, surrogates: SurrogateFactory, sets: Sequence[AdversarialSet]
) -> list[dict[str, Any]]:
    """The probe records of the scan (see the module docstring), attacking the surrogates ``surrogates`` builds
    and the target's queries; [] when no gradient or query set was made."""
    from auditor.attacks.registry import get_spec
    from auditor.models.device import pick_device
    from auditor.scan.attack import WHITEBOX_SURROGATE, query_model, scan_jobs

    opt = ctx.options
    made = [s for s in sets if s.kind == "attack" and s.attack is not None]
    by_kind: dict[tuple[str, str | None], list[str]] = {}  # (kind, the --surrogate text of --whitebox sets)
    for s in made:
        name = s.attack or ""
        kind = get_spec(name).kind
        source = WHITEBOX_SURROGATE if name in opt.whitebox_attacks else None
        if kind in ("gradient", "query") and name not in by_kind.setdefault((kind, source), []):
            by_kind[(kind, source)].append(name)
    if not by_kind:
        return []
    idx = probe_indices(len(data.images), opt.seed)
    x = np.asarray(data.images[idx], dtype=np.float32)
    y = np.asarray(data.y)[idx].astype(np.int64)
    records = []
    for (kind, source), names in by_kind.items():
        attack = _probe_attack(names)
        spec = get_spec(attack)
        if kind == "gradient":
            model, device = surrogates(source), pick_device(opt.device)
            if model is None:
                continue
            threat = model.threat_model
        else:
            model, device = query_model(ctx), None
            threat = model.threat_model
        eps_max = max(s.epsilon or 0.0 for s in made if s.attack == attack)  # every attack set has a budget
        base = dict(scan_jobs(ctx, data, [attack], [eps_max])[0].params)
        base.pop("epsilon")
        ctx.reporter.info(f"strength probes: {attack} ({threat}) on {len(idx)} images")
        seed = opt.seed + 7919
        adv = _attack_images(attack, model, {**base, "epsilon": LARGE_EPS}, x, y, seed, device)
        records.append(
            {
                "kind": "large_eps",
                "attack": attack,
                "threat_model": threat,
                "epsilon": LARGE_EPS,
                "n": int(len(idx)),
                "accuracy": _accuracy(ctx, adv, y),
                "reference_accuracy": _accuracy(ctx, x, y),
                "steps": base.get(spec.steps_param, spec.default_steps),
                "reference_steps": None,
            }
        )
        if kind != "gradient":
            continue  # a query attack's longer run is its query budget, which the scan reports per image
        steps = int(base.get(spec.steps_param, spec.default_steps))
        ref = _attack_images(attack, model, {**base, "epsilon": eps_max}, x, y, seed, device)
        more = _attack_images(
            attack, model, {**base, "epsilon": eps_max, spec.steps_param: steps * ITERATION_FACTOR}, x, y, seed, device
        )
        records.append(
            {
                "kind": "more_iterations",
                "attack": attack,
                "threat_model": threat,
                "epsilon": eps_max,
                "n": int(len(idx)),
                "accuracy": _accuracy(ctx, more, y),
                "reference_accuracy": _accuracy(ctx, ref, y),
                "steps": steps * ITERATION_FACTOR,
                "reference_steps": steps,
            }
        )
    return records
