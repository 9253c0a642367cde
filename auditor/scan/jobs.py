"""The attack jobs of a run: which adversarial sets to build, and with which parameters.

:func:`attack_jobs` is the one place that turns attack names and budgets into the parameters
:func:`auditor.attacks.registry.make_attack` gets (``--attack-params`` and what each attack's
``scan_params`` hook adds). The scan (:mod:`auditor.scan.attack`), its adaptive check
(:mod:`auditor.scan.defense`) and ``xray-audit attack`` (:mod:`auditor.cli.attack_cmd`) all build
their sets from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from auditor.condition_ids import SetId


@dataclass(frozen=True)
class AttackJob:
    """One adversarial set to build: an attack at a budget (:class:`~auditor.condition_ids.SetId`) and its parameters."""

    set_id: SetId
    params: Mapping[str, Any]

    @property
    def attack(self) -> str:
        """The attack's registry name."""
        if self.set_id.attack is None:  # never: every job is made from an attack's name
            raise ValueError(f"attack job {self.set_id} names no attack")
        return self.set_id.attack

    @property
    def epsilon(self) -> float:
        """The L-inf budget in [0, 1] units."""
        if self.set_id.epsilon is None:  # never: every job has a budget
            raise ValueError(f"attack job {self.set_id} has no budget")
        return self.set_id.epsilon

    @property
    def name(self) -> str:
        """The set's condition name (``usmm@8``, ``stm[randconv]@16``)."""
        return self.set_id.name


def attack_jobs(
    attacks: Iterable[str],
    epsilons: Iterable[float],
    images: Any,
    labels: Any,
    *,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    style_backend: str | None = None,
    stm_checkpoint: str | None = None,
    seed: int = 0,
) -> list[AttackJob]:
    """Every (attack, ε) job in a stable order (attack, then ε).

    ``attack_params`` are the extra parameters per attack name (``--attack-params``); each attack's
    ``scan_params`` hook (:func:`auditor.attacks.registry.scan_params`) adds what it draws from the data
    set and the scan (USMM's bounded, ``seed``-ed mask pool; STM's ``style_backend`` and ``stm_checkpoint``).
    """
    from auditor.attacks.registry import JobInputs, get_spec, scan_params

    epsilons = list(epsilons)
    jobs = []
    inputs = JobInputs(images, labels, seed, style_backend, stm_checkpoint)
    for attack in attacks:
        spec = get_spec(attack)
        for eps in epsilons:
            params = {"epsilon": eps, **(attack_params or {}).get(attack, {})}
            params.update(scan_params(attack, inputs))
            backend = style_backend if spec.names_style_backend else None
            jobs.append(AttackJob(SetId(spec.name, eps, backend), params))
    return jobs


def choose_precision(
    jobs: Iterable[AttackJob], surrogate, images, labels, *, batch_size: int, seed: int, cache_dir, device
) -> dict | None:
    """``--precision auto``: the decision record (:func:`~auditor.attacks.auto_precision.choose_precision_cached`)
    of the first job whose attack can run, timed on the first ``batch_size`` images; None when none can."""
    from auditor.attacks.auto_precision import choose_precision_cached
    from auditor.attacks.registry import make_attack
    from auditor.attacks.sets import batch_seed
    from auditor.attacks.style import StyleBackendUnavailable

    n = min(batch_size, len(images))
    tried = set()
    for job in jobs:
        if job.attack in tried:
            continue
        tried.add(job.attack)
        try:
            atk = make_attack(job.attack, surrogate, **job.params, device=device)
            return choose_precision_cached(
                atk, images[:n], labels[:n], batch_seed(seed, 0), cache_dir, surrogate.identity.get("sha256")
            )
        except StyleBackendUnavailable:
            continue  # reported when the attack itself runs
    return None
