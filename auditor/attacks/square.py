"""The Square attack, L-inf: a score-based black-box attack that only queries the model (Andriushchenko,
Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial attack via random
search", ECCV 2020, arXiv:1912.00049).

It needs no gradients, no surrogate and no conversion of the ONNX file: the target is queried through
ONNX Runtime (:class:`QueryModel`), so it bounds the robustness of any model the tool can run, including
graphs onnx2torch cannot convert. Per image (random search on the vertices of the ε-ball)::

    x_adv = x + eps * (vertical stripes of random signs)               # 1 query
    repeat while the image still fools nothing and queries remain:
        p = p_init halved at query 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (of 10,000, rescaled)
        side s = max(round(sqrt(p * H * W)), 1); a random s x s window
        candidate = x_adv with the window set to x + eps * one random sign (not its current value)
        keep the candidate when its margin loss is lower                 # 1 query

The margin loss is ``score_y - max_(j != y) score_j`` on log-odds scores (logits as given; log-probabilities
of a softmax output; ``[0, z]`` for one sigmoid unit: :func:`auditor.models.inputs.decode_scores`), so it is
the same loss for every output kind; an image is fooled when it is negative, and then leaves the batch.

Every pixel of an iterate is one of the two extreme 8-bit levels the budget allows around the clean
pixel (:func:`auditor.attacks.quantize.allowed_levels`), so the set the cache stores is exactly what was
queried: quantisation changes nothing. Randomness comes from one seeded NumPy generator per call.

Specification in our words: docs/algorithms.md §15.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from auditor.condition_ids import THREAT_QUERY
from auditor.errors import UsageError

#: the query indices (of a 10,000-query run) at which the window share halves (paper, Algorithm 2 / code)
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise UsageError(message)


@dataclass
class QueryModel:
    """The target as a query-only attack sees it: ``scores(x)`` maps ``(N, 1, H, W)`` images in ``[0, 1]``
    to ``(N, K)`` log-odds scores in the target's class order; ``identity`` names it in cache keys."""

    scores: Callable[[np.ndarray], np.ndarray]
    class_names: tuple[str, ...]
    identity: dict[str, Any] = field(default_factory=dict)
    threat_model: str = THREAT_QUERY
    batch_size: int = 32


def window_share(p_init: float, query: int, budget: int) -> float:
    """The share of the image a window covers at ``query`` of ``budget`` (the paper's schedule, rescaled)."""
    it = int(query / max(budget, 1) * 10000)
    return p_init / 2 ** sum(it > h for h in HALVINGS)


def margin(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``score_y - max_(j != y) score_j`` per row (negative: misclassified)."""
    s = np.asarray(scores, dtype=np.float64)
    own = s[np.arange(len(y)), y]
    other = s.copy()
    other[np.arange(len(y)), y] = -np.inf
    return own - other.max(axis=1)


class SquareAttack:
    """Square attack (L-inf) on a :class:`QueryModel`.

    Keyword arguments: ``epsilon=16/255`` (budget in ``[0, 1]`` units), ``queries=1000`` (most model queries
    per image, the first included), ``p_init=0.05`` (the paper's initial window share for L-inf),
    ``device``/``precision`` (accepted for the set builder; ONNX Runtime decides both).

    After each call, :attr:`last_queries` holds the queries each image used and :attr:`last_fooled`
    whether the model misclassified it within the budget.
    """

    name = "square"
    display_name = "Square"

    def __init__(
        self,
        model: QueryModel,
        *,
        epsilon: float = 16 / 255,
        queries: int = 1000,
        p_init: float = 0.05,
        device: Any = None,
        precision: str = "fp32",
    ) -> None:
        _check(callable(getattr(model, "scores", None)), "attack square: model must be a QueryModel (target queries)")
        _check(isinstance(epsilon, (int, float)) and 0 < float(epsilon) <= 1, f"square: epsilon {epsilon!r}")
        _check(isinstance(queries, int) and queries >= 1, f"attack square: queries {queries!r} must be >= 1")
        _check(isinstance(p_init, (int, float)) and 0 < p_init <= 1, f"attack square: p_init {p_init!r} in (0, 1]")
        self.model = model
        self.epsilon, self.queries, self.p_init = float(epsilon), int(queries), float(p_init)
        self.device = "onnxruntime"
        self.precision = "model"
        self.notes: list[str] = []
        self.surrogate_rows = 0  #: model queries (rows) so far
        self.last_queries = np.zeros(0, dtype=np.int64)
        self.last_fooled = np.zeros(0, dtype=bool)

    @property
    def label(self) -> str:
        """Human-readable name."""
        return f"Square ({self.queries} queries)"

    @classmethod
    def accepted_params(cls) -> list[str]:
        """Keyword parameters of the constructor."""
        return ["epsilon", "queries", "p_init", "device", "precision"]

    def params(self) -> dict[str, Any]:
        """The effective parameters (JSON-compatible)."""
        return {"epsilon": self.epsilon, "queries": self.queries, "p_init": self.p_init, "norm": "linf"}

    def key_extras(self) -> dict[str, Any]:
        """Nothing beyond the parameters changes the output."""
        return {}

    def ensure_setup(self) -> None:
        """Nothing to prepare (the model is an ONNX Runtime session)."""

    def batch_record(self) -> dict[str, Any]:
        """What the set cache stores with each batch: queries used and success per image."""
        return {"queries": self.last_queries.tolist(), "fooled": self.last_fooled.astype(int).tolist()}

    def _query(self, x: np.ndarray) -> np.ndarray:
        out = []
        bs = max(1, int(self.model.batch_size))
        for s in range(0, len(x), bs):
            out.append(np.asarray(self.model.scores(x[s : s + bs]), dtype=np.float64))
        self.surrogate_rows += len(x)
        return np.concatenate(out) if out else np.zeros((0, len(self.model.class_names)))

    @staticmethod
    def _candidates(cur: np.ndarray, low: np.ndarray, high: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
        """One candidate per row of ``cur``: an ``s x s`` window set to one random side per channel, a side that
        changes the window (up to 10 draws, as the paper redraws).

        The draws stay one image at a time (window corner, then sign draws), so the generator's stream and
        hence the attack are those of a plain per-image loop (a scalar draw takes the same value from the
        stream as a ``(1, 1, 1)`` one). The rest is cheap: whether the window already lies wholly on the
        drawn side is one slice of ``cur == high`` or ``cur == low`` per image and side, and the windows are
        written with one masked ``np.where``.
        """
        n, c, h, w = cur.shape
        ups = np.zeros((n, c), dtype=bool)
        r0s = np.zeros(n, dtype=np.int64)
        c0s = np.zeros(n, dtype=np.int64)
        on_side = (cur == low, cur == high)
        for j in range(n):
            r0, c0 = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            unchanged: dict[tuple[bool, ...], bool] = {}
            for _ in range(10):  # redraw a sign that leaves the window as it is
                up = (
                    (bool(rng.integers(0, 2)),)
                    if c == 1
                    else tuple(bool(v) for v in rng.integers(0, 2, size=(c, 1, 1)).ravel())
                )
                if up not in unchanged:
                    unchanged[up] = all(
                        bool(on_side[u][j, ch, r0 : r0 + s, c0 : c0 + s].all()) for ch, u in enumerate(up)
                    )
                if not unchanged[up]:
                    break
            r0s[j], c0s[j], ups[j] = r0, c0, up
        rows = (np.arange(h) >= r0s[:, None]) & (np.arange(h) < r0s[:, None] + s)
        cols = (np.arange(w) >= c0s[:, None]) & (np.arange(w) < c0s[:, None] + s)
        window = rows[:, None, :, None] & cols[:, None, None, :]
        return np.where(window, np.where(ups[:, :, None, None], high, low), cur)

    def __call__(self, x: Any, y: Any, *, seed: int | None = None, generator: Any = None, epsilon: Any = None):
        """Adversarial images for ``x`` (``(N, 1, H, W)`` in ``[0, 1]``, an array or a torch tensor) and labels
        ``y``; returns the same type as ``x``."""
        from auditor.attacks.quantize import allowed_levels

        _check(epsilon is None, "attack square: per-image budgets are not supported")
        as_torch = hasattr(x, "detach")
        xn = (x.detach().cpu().numpy() if as_torch else np.asarray(x)).astype(np.float32)
        yn = (y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)).astype(np.int64)
        rng = np.random.default_rng(0 if seed is None else int(seed))
        lo, hi = allowed_levels(xn, self.epsilon)
        low, high = lo.astype(np.float32) / 255.0, hi.astype(np.float32) / 255.0
        n, c, h, w = xn.shape
        # start: vertical stripes, one random side per column (and channel)
        side = rng.integers(0, 2, size=(n, c, 1, w)).astype(bool)
        x_adv = np.where(side, high, low)
        loss = margin(self._query(x_adv), yn)
        used = np.ones(n, dtype=np.int64)
        fooled = loss < 0
        for q in range(1, self.queries):
            active = np.flatnonzero(~fooled)
            if active.size == 0:
                break
            s = int(max(round(np.sqrt(window_share(self.p_init, q, self.queries) * h * w)), 1))
            s = min(s, h, w)
            cand = self._candidates(x_adv[active], low[active], high[active], s, rng)
            new_loss = margin(self._query(cand), yn[active])
            used[active] += 1
            better = new_loss < loss[active]
            x_adv[active[better]] = cand[better]
            loss[active[better]] = new_loss[better]
            fooled[active] = loss[active] < 0
        self.last_queries, self.last_fooled = used, fooled.copy()
        if as_torch:
            import torch

            return torch.from_numpy(x_adv)
        return x_adv
