"""STM: the Style Transfer Method on MI-FGSM.

Zhijin Ge, Fanhua Shang, Hongying Liu, Yuanyuan Liu, Liang Wan, Wei Feng,
Xiaosen Wang, "Improving the Transferability of Adversarial Examples with
Arbitrary Style Transfer", ACM MM 2023, arXiv:2308.10601.

Per iteration every image gets ``num_style`` (20) copies::

    x_s = ST(x_adv, z)                              # a freshly stylised image, no gradient through ST
    r   ~ U(-beta * eps, beta * eps) per pixel
    x_b = gamma * x_adv + (1 - gamma) * x_s + r     # NOT clamped (as in the paper and both codes)

The gradient is taken w.r.t. ``x_b`` made a leaf and averaged over the copies,
then fed to MI-FGSM. STM's output is an ordinary L-inf perturbation; the
stylised images are never returned.

The style backends (``randconv`` by default, ``adain-stats``, ``ghiasi``) live in
:mod:`auditor.attacks.style`; they are built once in :meth:`STM.setup`, never per step.

Grey images meet a colour style network in one place only, :meth:`STM.stylise`: replicated to 3
channels and averaged back to grey by the model-input contract's helpers
(:func:`auditor.models.torch.grey_to_channels_t`, :func:`auditor.models.torch.channels_to_grey_t`).

Official arguments: epsilon 16/255, alpha epsilon/T, T 10, decay 1.0,
num_style 20, gamma 0.5, beta 2.0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditor.attacks.base import GradientAttack, _check
from auditor.attacks.style import (
    NEAR_AFFINE_CORR,
    STYLE_BACKENDS,
    GhiasiStyle,
    RandConvStyle,
    StyleBackend,
    _sha256,
    abs_correlation,
    ghiasi_files,
    make_style_backend,
)
from auditor.models.torch import channels_to_grey_t, grey_to_channels_t


class STM(GradientAttack):
    """STM (arXiv:2308.10601) on the shared MI-FGSM loop.

    Arguments beyond :class:`~auditor.attacks.base.GradientAttack`'s:

    * ``num_style=20`` -- stylised copies per image and iteration;
    * ``gamma=0.5`` -- weight of the adversarial image in the mix;
    * ``beta=2.0`` -- noise bound factor, ``r ~ U(-beta eps, beta eps)`` per pixel;
    * ``style_backend="randconv"`` -- ``randconv``, ``adain-stats``, ``ghiasi``, or a
      :class:`StyleBackend` object (tests, custom networks);
    * ``checkpoint_dir=None`` -- folder with ``checkpoint_transformer.pth`` for ``ghiasi``.

    Example::

        atk = STM(model, epsilon=8 / 255)            # offline RandConv style substitute
        x_adv = atk(x, y, seed=0)
    """

    name = "stm"
    display_name = "STM"
    grad_wrt_copies = True

    @staticmethod
    def scan_params(inputs: Any) -> dict[str, Any]:
        """A scan's STM jobs use its ``--style-backend`` and ``--stm-checkpoint`` (``inputs``: a
        :class:`~auditor.attacks.registry.JobInputs`)."""
        return {"style_backend": inputs.style_backend, "checkpoint_dir": inputs.stm_checkpoint}

    def __init__(
        self,
        model: nn.Module,
        *,
        num_style: int = 20,
        gamma: float = 0.5,
        beta: float = 2.0,
        style_backend: str | StyleBackend = "randconv",
        checkpoint_dir: str | Path | None = None,
        **loop: Any,
    ) -> None:
        super().__init__(model, **loop)
        _check(isinstance(num_style, int) and num_style >= 1, f"stm: num_style {num_style!r} must be an integer >= 1")
        _check(0 <= gamma <= 1, f"stm: gamma {gamma!r} must lie in [0, 1]")
        _check(beta >= 0, f"stm: beta {beta!r} must be >= 0")
        if isinstance(style_backend, str):
            _check(
                style_backend in STYLE_BACKENDS,
                f"stm: unknown style backend {style_backend!r}; choose one of {', '.join(STYLE_BACKENDS)}",
            )
            if style_backend == "ghiasi":
                ghiasi_files(checkpoint_dir)  # fail early, before any work
        self.num_style, self.gamma, self.beta = num_style, float(gamma), float(beta)
        self.style_backend = style_backend
        self.checkpoint_dir = checkpoint_dir
        self.backend: StyleBackend | None = None if isinstance(style_backend, str) else style_backend
        #: style-network rows computed so far
        self.style_rows = 0
        #: style copies with |corr(ST(x), x)| > NEAR_AFFINE_CORR so far (see :attr:`style_diversity`)
        self.near_affine_rows = 0

    @property
    def backend_name(self) -> str:
        """Name of the style backend."""
        return (
            self.style_backend if isinstance(self.style_backend, str) else getattr(self.style_backend, "name", "custom")
        )

    @property
    def label(self) -> str:
        """``STM (style backend: randconv)`` and the like."""
        extra = ""
        if isinstance(self.backend, GhiasiStyle):
            extra = f", z ~ {self.backend.z_source}"
        return f"STM (style backend: {self.backend_name}{extra})"

    def setup(self) -> None:
        """Frozen surrogate, and the style backend built once."""
        super().setup()
        if self.backend is None:
            self.backend = make_style_backend(self.backend_name, self.checkpoint_dir, self.device, self.precision)

    def key_extras(self) -> dict[str, Any]:
        """The style backend and, for ``ghiasi``, the checkpoint digests."""
        extras: dict[str, Any] = {"style_backend": self.backend_name}
        if self.backend_name == "randconv":  # sets made by an earlier randconv must not be reused
            extras["randconv"] = {
                "kernel_sizes": list(RandConvStyle.kernel_sizes),
                "zero_mean": True,
                "mix_max": RandConvStyle().mix_max,
            }
        if self.backend_name == "ghiasi":
            transformer, emb = ghiasi_files(self.checkpoint_dir)
            extras.update(transformer_sha256=_sha256(transformer), embeddings_sha256=_sha256(emb) if emb else None)
        return extras

    @property
    def style_diversity(self) -> dict[str, Any] | None:
        """How many style copies only changed intensity: ``near_affine_share`` of the ``copies`` computed so
        far had ``|corr(ST(x), x)| > threshold``; None before the first copy."""
        if not self.style_rows:
            return None
        return {
            "copies": self.style_rows,
            "near_affine": self.near_affine_rows,
            "threshold": NEAR_AFFINE_CORR,
            "near_affine_share": self.near_affine_rows / self.style_rows,
        }

    def params(self) -> dict[str, Any]:
        """Loop parameters plus the STM settings; after the attack ran, also the measured ``style_diversity``
        (absent before, so it never enters a cache key)."""
        out = {
            **super().params(),
            "num_style": self.num_style,
            "gamma": self.gamma,
            "beta": self.beta,
            "style_backend": self.backend_name,
        }
        if self.style_diversity is not None:
            out["style_diversity"] = self.style_diversity
        return out

    @property
    def num_copies(self) -> int:
        """``num_style`` copies per image (20 with the defaults)."""
        return self.num_style

    def stylise(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Stylised copies of ``x`` (same shape), chunked; the only grey <-> colour conversion of STM."""
        assert self.backend is not None
        grey_to_colour = self.backend.in_channels == 3 and x.shape[1] == 1
        rows = self.chunk_rows(x)
        outs = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], rows):
                part = x[start : start + rows]
                if grey_to_colour:
                    part = grey_to_channels_t(part, 3)
                out = self.backend(part, gen)
                if grey_to_colour:
                    out = channels_to_grey_t(out)
                outs.append(out.to(x.dtype))
                self.style_rows += part.shape[0]
                corr = abs_correlation(out, x[start : start + rows])
                self.near_affine_rows += int((corr > NEAR_AFFINE_CORR).sum())
        return torch.cat(outs).clone()  # a normal tensor again (inference tensors cannot join autograd)

    def transform(self, x_adv: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``num_style`` mixes ``gamma x_adv + (1 - gamma) ST(x_adv) + r`` per image, copy-major, unclamped."""
        x_rep = x_adv.repeat(self.num_style, 1, 1, 1)
        styled = self.stylise(x_rep, gen)
        bound = self.beta * self.epsilon
        noise = (torch.rand(x_rep.shape, generator=gen) * 2 - 1).to(x_adv.device, x_adv.dtype) * bound
        return self.gamma * x_rep + (1 - self.gamma) * styled + noise

    def aggregate(self, grads: torch.Tensor, n: int) -> torch.Tensor:
        """Mean over the stylised copies."""
        return grads.view(-1, n, *grads.shape[1:]).mean(0)
