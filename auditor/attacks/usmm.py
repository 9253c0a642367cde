"""USMM: Uniform Scale and Mix Mask on MI-FGSM.

Tao Wang, Zijian Ying, Qianmu Li, Zhichao Lian, "Boost Adversarial
Transferability by Uniform Scale and Mix Mask Method", arXiv:2311.12051 (2023).

Per iteration every image gets ``num_mix * num_scale`` (3 x 5 = 15) copies::

    s_i  = L + (H - L) * i / (num_scale - 1)       # {0.1, 0.2625, 0.425, 0.5875, 0.75}; s = H if num_scale == 1
    M    = (1 - r) + 2 r * x'                       # pixel-wise gain in [1 - r, 1 + r], x' another image
    copy = clip(M * (s_i * x_adv), 0, 1)           # Eq. 9 of the paper

The clip belongs to the *transform* (the paper's Eq. 9), not to the adversarial
image: the returned image is only ever clamped by :func:`~auditor.attacks.projection.project`.
The gradient is taken w.r.t. the copies made leaves (paper Alg. 1 line 10, and
the reference code), summed over the 15 copies, and fed to MI-FGSM. All copies
of a batch run as one surrogate batch of ``15 N`` rows (chunked when large;
the chunked sum equals the one-batch result).

"Uniform scale" is intensity scaling (as in SIM), not resizing; "mix mask" is a
multiplicative gain built from a *whole* other image. The mask images ``x'``
come from ``mask_pool`` -- clean images whose label differs from the attacked
image's (the paper: "an image of a different category") -- or, with
``mask_source="batch"`` (or no pool), from a random permutation of the current
adversarial batch as the reference implementation does (which can map an image
onto itself; with batch size 1 it always does).

The pool is bounded: a scan passes at most :data:`MASK_POOL_SIZE` clean images, a seeded uniform
sample without replacement of the data set (:func:`mask_pool_indices`; every image, in order, when
the data set is no larger), so the attack's memory does not grow with the archive. A pool given
to :class:`USMM` directly is cut to ``mask_pool_size`` the same way (seed ``mask_pool_seed``).

Official arguments: epsilon 16/255, alpha epsilon/T, T 10, decay 1.0,
num_scale 5, num_mix 3, scale_low 0.1, scale_high 0.75, mix_range 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auditor.attacks.base import GradientAttack, _check
from auditor.hashing import array_sha256

MASK_SOURCES = ("auto", "pool", "batch")
#: most clean images in the mask pool (1,000 x 224 x 224 float32 = 0.2 GB); larger data sets are sampled
MASK_POOL_SIZE = 1000


def mask_pool_indices(n: int, size: int = MASK_POOL_SIZE, seed: int = 0) -> np.ndarray:
    """Indices of the mask-pool images among ``n``: all of them when ``n <= size``, else a seeded uniform
    sample of ``size`` without replacement, in increasing order."""
    if size < 1:
        raise ValueError(f"usmm: mask pool size {size!r} must be at least 1")
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng([seed, 0x05AA]).choice(n, size=size, replace=False))


def bounded_mask_pool(images: Any, labels: Any, size: int = MASK_POOL_SIZE, seed: int = 0) -> dict[str, Any]:
    """``{"mask_pool", "mask_pool_labels"}`` for :class:`USMM`: ``images`` (an array or a lazy image set,
    nothing decoded here) and ``labels`` cut to the :func:`mask_pool_indices` sample."""
    idx = mask_pool_indices(len(images), size, seed)
    if len(idx) == len(images):
        return {"mask_pool": images, "mask_pool_labels": labels}
    pool = images.subset(idx) if hasattr(images, "subset") else np.asarray(images)[idx]
    return {"mask_pool": pool, "mask_pool_labels": np.asarray(labels)[idx]}


def usmm_scales(num_scale: int, scale_low: float, scale_high: float) -> list[float]:
    """The linear scale grid ``s_i = L + (H - L) i / (m - 1)``; ``[H]`` when ``m == 1`` (paper Eq. 7)."""
    if num_scale == 1:
        return [float(scale_high)]
    return [float(scale_low + (scale_high - scale_low) * i / (num_scale - 1)) for i in range(num_scale)]


_array_digest = array_sha256


class USMM(GradientAttack):
    """USMM (arXiv:2311.12051) on the shared MI-FGSM loop.

    Arguments beyond :class:`~auditor.attacks.base.GradientAttack`'s:

    * ``num_scale=5``, ``scale_low=0.1``, ``scale_high=0.75`` -- the intensity scale grid;
    * ``num_mix=3`` -- mix masks per scale copy;
    * ``mix_range=0.5`` -- mask strength ``r``; masks lie in ``[1 - r, 1 + r]``;
    * ``mask_pool=None`` -- ``(P, 1, H, W)`` clean images (array or tensor, ``[0, 1]``) the masks come from;
    * ``mask_pool_labels=None`` -- their class indices ``(P,)``; an image's mask never comes from its own class;
    * ``mask_source="auto"`` -- ``"pool"``, ``"batch"`` (reference behaviour) or ``"auto"``
      (pool when given, else batch, recorded in :attr:`notes`).
    * ``mask_pool_size=MASK_POOL_SIZE``, ``mask_pool_seed=0`` -- a larger pool is cut to a seeded sample
      of this many images (:func:`mask_pool_indices`).

    Example::

        atk = USMM(model, epsilon=8 / 255, mask_pool=images, mask_pool_labels=labels)
        x_adv = atk(x, y, seed=0)
    """

    name = "usmm"
    display_name = "USMM"
    grad_wrt_copies = True

    @staticmethod
    def scan_params(inputs: Any) -> dict[str, Any]:
        """A scan's USMM jobs draw their mix masks from one bounded, seeded pool of the data set's images
        (:func:`bounded_mask_pool`), made once for every budget (``inputs``: a
        :class:`~auditor.attacks.registry.JobInputs`)."""
        if "usmm_mask_pool" not in inputs.shared:
            inputs.shared["usmm_mask_pool"] = bounded_mask_pool(inputs.images, inputs.labels, seed=inputs.seed)
        return dict(inputs.shared["usmm_mask_pool"])

    def __init__(
        self,
        model: nn.Module,
        *,
        num_scale: int = 5,
        num_mix: int = 3,
        scale_low: float = 0.1,
        scale_high: float = 0.75,
        mix_range: float = 0.5,
        mask_pool: Any = None,
        mask_pool_labels: Any = None,
        mask_source: str = "auto",
        mask_pool_size: int = MASK_POOL_SIZE,
        mask_pool_seed: int = 0,
        **loop: Any,
    ) -> None:
        super().__init__(model, **loop)
        _check(isinstance(num_scale, int) and num_scale >= 1, f"usmm: num_scale {num_scale!r} must be an integer >= 1")
        _check(isinstance(num_mix, int) and num_mix >= 1, f"usmm: num_mix {num_mix!r} must be an integer >= 1")
        _check(
            0 < scale_low <= scale_high, f"usmm: need 0 < scale_low <= scale_high, got {scale_low!r}, {scale_high!r}"
        )
        _check(0 <= mix_range <= 1, f"usmm: mix_range {mix_range!r} must lie in [0, 1]")
        _check(
            mask_source in MASK_SOURCES, f"usmm: mask_source {mask_source!r} is not one of {', '.join(MASK_SOURCES)}"
        )
        self.num_scale, self.num_mix = num_scale, num_mix
        self.scale_low, self.scale_high, self.mix_range = float(scale_low), float(scale_high), float(mix_range)
        self.scales = usmm_scales(num_scale, self.scale_low, self.scale_high)
        self._pool: torch.Tensor | None = None
        self._pool_labels: torch.Tensor | None = None
        self._pool_digest: str | None = None
        _check(
            isinstance(mask_pool_size, int) and mask_pool_size >= 1,
            f"usmm: mask_pool_size {mask_pool_size!r} must be an integer >= 1",
        )
        if mask_pool is not None and mask_pool_labels is not None and len(mask_pool) > mask_pool_size:
            cut = bounded_mask_pool(mask_pool, mask_pool_labels, mask_pool_size, mask_pool_seed)
            mask_pool, mask_pool_labels = cut["mask_pool"], cut["mask_pool_labels"]
        if mask_pool is not None:
            pool = torch.as_tensor(np.asarray(mask_pool, dtype=np.float32))
            _check(
                pool.dim() == 4 and pool.shape[0] >= 1, f"usmm: mask_pool must be (P, C, H, W), got {tuple(pool.shape)}"
            )
            _check(
                mask_pool_labels is not None, "usmm: mask_pool needs mask_pool_labels (one class index per pool image)"
            )
            labels = torch.as_tensor(np.asarray(mask_pool_labels, dtype=np.int64))
            _check(
                labels.shape == (pool.shape[0],),
                f"usmm: mask_pool_labels has shape {tuple(labels.shape)}, expected ({pool.shape[0]},)",
            )
            self._pool, self._pool_labels = pool, labels
            self._pool_digest = _array_digest(pool.numpy()) + ":" + _array_digest(labels.numpy())
        if mask_source == "pool":
            _check(self._pool is not None, "usmm: mask_source 'pool' needs mask_pool and mask_pool_labels")
        if mask_source == "auto":
            mask_source = "pool" if self._pool is not None else "batch"
            if self._pool is None:
                self.notes.append(
                    "no mask pool given: mix masks come from a permutation of the attacked batch "
                    "(reference behaviour; may mask an image with itself)"
                )
        self.mask_source = mask_source
        self._candidates: dict[int, torch.Tensor] = {}
        self._pool_sized: dict[tuple[int, int], torch.Tensor] = {}
        #: pool indices of the last masks, shape (num_mix * num_scale, N) (pool mode only)
        self.last_mask_indices: torch.Tensor | None = None

    @property
    def num_copies(self) -> int:
        """``num_mix * num_scale`` copies per image (15 with the defaults)."""
        return self.num_mix * self.num_scale

    @property
    def label(self) -> str:
        """``USMM (masks: other-class pool)`` or ``USMM (masks: batch permutation)``."""
        return "USMM (masks: other-class pool)" if self.mask_source == "pool" else "USMM (masks: batch permutation)"

    def key_extras(self) -> dict[str, Any]:
        """The mask pool's content digest (the pool itself is not a cache-key parameter)."""
        return {"mask_pool_sha256": self._pool_digest, "mask_source": self.mask_source}

    def params(self) -> dict[str, Any]:
        """Loop parameters plus the USMM settings."""
        return {
            **super().params(),
            "num_scale": self.num_scale,
            "num_mix": self.num_mix,
            "scales": self.scales,
            "mix_range": self.mix_range,
            "mask_source": self.mask_source,
        }

    # ------------------------------------------------------------------ masks
    def _other_class(self, cls: int) -> torch.Tensor:
        if cls not in self._candidates:
            assert self._pool_labels is not None
            idx = torch.nonzero(self._pool_labels != cls).flatten()
            if idx.numel() == 0:
                idx = torch.arange(self._pool_labels.numel())
                self.notes.append(f"mask pool has no image outside class {cls}: masks for it come from any pool image")
            self._candidates[cls] = idx
        return self._candidates[cls]

    def _pool_at(self, h: int, w: int) -> torch.Tensor:
        assert self._pool is not None
        if (h, w) not in self._pool_sized:
            pool = self._pool
            if pool.shape[-2:] != (h, w):
                pool = F.interpolate(pool, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(
                    0, 1
                )
            self._pool_sized[(h, w)] = pool
        return self._pool_sized[(h, w)]

    def mask_images(self, x_adv: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The images ``x'`` of the masks, ``(num_mix * num_scale, N, C, H, W)``, drawn fresh for every copy."""
        pairs, n = self.num_copies, x_adv.shape[0]
        if self.mask_source == "batch":
            perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(pairs)]).to(x_adv.device)
            self.last_mask_indices = None
            return x_adv.detach()[perms]
        u = torch.rand((pairs, n), generator=gen, dtype=torch.float64)
        idx = torch.empty((pairs, n), dtype=torch.long)
        labels = y.detach().cpu()
        for i in range(n):
            cand = self._other_class(int(labels[i]))
            idx[:, i] = cand[(u[:, i] * cand.numel()).long().clamp_max(cand.numel() - 1)]
        self.last_mask_indices = idx
        pool = self._pool_at(x_adv.shape[-2], x_adv.shape[-1])
        masks = pool[idx.flatten()].view(pairs, n, *pool.shape[1:])
        if masks.shape[2] != x_adv.shape[1]:
            masks = masks.mean(2, keepdim=True).expand(-1, -1, x_adv.shape[1], -1, -1)
        return masks.to(x_adv.device)

    def transform(self, x_adv: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The 15 copies ``clip(M * s_i * x_adv, 0, 1)``, ordered ``[mix j: scale 0..4]``, as ``(15 N, C, H, W)``."""
        xp = self.mask_images(x_adv, y, gen)
        masks = (1.0 - self.mix_range) + 2.0 * self.mix_range * xp
        scales = torch.tensor(self.scales * self.num_mix, dtype=x_adv.dtype, device=x_adv.device)
        copies = (scales.view(-1, 1, 1, 1, 1) * x_adv.unsqueeze(0) * masks).clamp(0.0, 1.0)
        return copies.reshape(-1, *x_adv.shape[1:])
