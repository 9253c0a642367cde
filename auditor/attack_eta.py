"""How long the attack stage will take: a projection printed after the first attack batch.

The attack stage is the long part of a scan (minutes to hours on a CPU). :class:`StageClock` is told
the plan (every adversarial set to build) and the wall time of every batch an attack *computes*
(batches loaded from the cache are not timed). After the first computed batch it prints the projected
time of the whole stage; it prints a revised projection after the first batch of each further attack
kind, whose cost it then knows instead of guessing. It also keeps the measured seconds per image of
every set for results.json and the report.

Unmeasured attack kinds are projected from their cost, forward+backward passes per image, relative to
the measured kind; the scan takes each attack's cost from its registry entry
(:meth:`auditor.attacks.registry.AttackSpec.cost`: MI-FGSM T; USMM 15·T, 5 scales × 3 mix masks, Wang et
al. 2023; STM 20·T samples, Ge et al. 2023, plus the style network, which this count leaves out, so STM
is under-estimated until it is measured). Sets found complete in the cache take almost no time, so the
projection is an upper bound when a cache is warm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

#: cost of a set when the plan gives none: 10 iterations of one forward+backward pass per image
DEFAULT_COST = 10.0


@dataclass
class _SetTiming:
    attack: str
    n_images: int
    seconds: float = 0.0
    computed: int = 0  #: images computed (not loaded from the cache)


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1 h 02 min"``; ``95`` -> ``"1 min 35 s"``; ``12.3`` -> ``"12 s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


@dataclass
class StageClock:
    """Plan of the attack stage and the measured cost of each set; prints projections via ``say``."""

    plan: dict[str, _SetTiming] = field(default_factory=dict)
    say: Callable[[str], None] = print
    #: forward+backward passes per image of one set of each attack (default :data:`DEFAULT_COST`)
    costs: dict[str, float] = field(default_factory=dict)
    projections: list[dict] = field(default_factory=list)
    #: seconds per image of each attack measured by a short probe before the stage (replaces the pass-count guess)
    probed: dict[str, float] = field(default_factory=dict)
    #: seconds between revised projections while batches finish (a steady progress line off a terminal)
    interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _last_said: float | None = None

    @classmethod
    def for_sets(
        cls,
        sets: list[tuple[str, str]],
        n_images: int,
        say: Callable[[str], None],
        costs: dict[str, float] | None = None,
        probed: dict[str, float] | None = None,
    ) -> "StageClock":
        """A clock for ``sets`` = [(set name, attack), ...], each over ``n_images`` images; ``costs`` gives each
        attack's passes per image, ``probed`` the seconds per image a probe measured."""
        plan = {name: _SetTiming(attack, n_images) for name, attack in sets}
        return cls(plan, say, dict(costs or {}), probed=dict(probed or {}))

    def batch_timer(self, name: str) -> Callable[[int, float], None]:
        """The callback ``(images, seconds)`` an attack calls after each batch it computed."""
        return lambda n, seconds: self.batch_done(name, n, seconds)

    def batch_done(self, name: str, n: int, seconds: float) -> None:
        """Record one computed batch of set ``name``; print a projection at the first batch of a kind."""
        st = self.plan[name]
        first_of_kind = not any(t.computed for t in self.plan.values() if t.attack == st.attack)
        st.seconds += seconds
        st.computed += n
        now = self.clock()
        if first_of_kind or (self._last_said is not None and now - self._last_said >= self.interval):
            self._project(name, revised=not first_of_kind)
            self._last_said = now

    def forget(self, attack: str) -> None:
        """Drop the sets of ``attack`` from the plan (the attack was skipped)."""
        self.plan = {k: t for k, t in self.plan.items() if t.attack != attack}

    def seconds_per_image(self, name: str) -> float | None:
        """Measured seconds per computed image of set ``name`` (None when nothing was computed)."""
        st = self.plan.get(name)
        return round(st.seconds / st.computed, 4) if st and st.computed else None

    def _rate(self, attack: str) -> tuple[float, bool]:
        """Seconds per image of ``attack``: measured on its batches so far (True), else its probe's, else scaled
        by pass counts from a measured kind (False for both)."""
        done = [t for t in self.plan.values() if t.attack == attack and t.computed]
        if done:
            return sum(t.seconds for t in done) / sum(t.computed for t in done), True
        if attack in self.probed:
            return self.probed[attack], False
        ref = [t for t in self.plan.values() if t.computed]
        ref_attack = ref[0].attack
        ref_rate = sum(t.seconds for t in ref if t.attack == ref_attack) / sum(
            t.computed for t in ref if t.attack == ref_attack
        )
        return ref_rate * self._passes(attack) / self._passes(ref_attack), False

    def _passes(self, attack: str) -> float:
        return max(float(self.costs.get(attack, DEFAULT_COST)), 1e-9)

    def remaining_seconds(self) -> float:
        """Projected seconds for the images not computed yet (cached batches take less)."""
        return sum(self._rate(t.attack)[0] * max(t.n_images - t.computed, 0) for t in self.plan.values())

    def _project(self, name: str, revised: bool = False) -> None:
        remaining = self.remaining_seconds()
        guessed = {t.attack for t in self.plan.values() if t.computed < t.n_images and not self._rate(t.attack)[1]}
        probed = sorted(a for a in guessed if a in self.probed)
        counted = sorted(a for a in guessed if a not in self.probed)
        notes = []
        if probed:
            notes.append(f"{', '.join(probed)} from a probe of 2 images until measured")
        if counted:
            notes.append(f"{', '.join(counted)} estimated from surrogate pass counts until measured")
        note = f"; {'; '.join(notes)}" if notes else ""
        st = self.plan[name]
        rate = st.seconds / st.computed
        if revised:
            done = sum(min(t.computed, t.n_images) for t in self.plan.values())
            total = sum(t.n_images for t in self.plan.values())
            head = f"attack stage: {done} of {total} images done ({st.attack} {rate:.2f} s/image so far)"
        else:
            head = f"attack stage: first {st.attack} batch {rate:.2f} s/image"
        self.say(
            f"{head}; projected {format_duration(remaining)} more for {len(self.plan)} set(s) x {st.n_images} "
            f"images (cached batches take less){note}"
        )
        self.projections.append(
            {
                "after_set": name,
                "attack": st.attack,
                "seconds_remaining": round(remaining, 1),
                "estimated": sorted(guessed),
            }
        )
