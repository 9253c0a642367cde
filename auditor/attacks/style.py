"""Style backends of STM: images -> freshly stylised images, no gradient (see :mod:`auditor.attacks.stm`).

Each backend maps ``(M, C, H, W)`` images in ``[0, 1]`` to stylised images of the same shape;
STM builds one once in :meth:`~auditor.attacks.stm.STM.setup`, never per step:

* ``randconv`` (default, offline): multi-scale random convolutions with random
  mixing after Xu, Liu, Yang, Raffel & Niethammer, "Robust and Generalizable
  Visual Representation Learning via Random Convolutions", ICLR 2021 (RandConv):
  per copy a ``k x k`` kernel, ``k`` drawn from {3, 5, 7, 9}, weights ~
  N(0, 1/(C k^2)) with their mean removed, reflection padding; the response is
  re-standardised to the input's per-image mean/std and mixed as
  ``a x + (1 - a) conv(x)`` with ``a ~ U(0, 0.8)``, then clipped to ``[0, 1]``.
  Why the kernel mean goes: on one grey channel the mean of a random kernel only
  rescales ``x`` (after re-standardisation an affine intensity change, the
  degenerate case of a 1x1 kernel), so what is left is a random band-pass
  texture filter; the mixing cap keeps every copy at least 20% texture. The
  share of copies with ``|corr(ST(x), x)| > 0.98`` (near-affine copies, i.e.
  intensity jitter rather than a style change) is measured during the attack
  on the copies actually used (:attr:`STM.style_diversity`);
* ``adain-stats``: random per-image mean/std jitter (a pixel-space AdaIN);
* ``ghiasi``: the real arbitrary-style network (Ghiasi et al., BMVC 2017, as
  packaged by Jackson et al.'s Style Augmentation) loaded from a user-supplied
  ``checkpoint_transformer.pth`` (key ``state_dict_ghiasi``) and, optionally,
  ``checkpoint_embeddings.pth`` (``pbn_embedding_mean``/``_covariance``; the
  style vector is then z ~ N(mu, Sigma), else N(0, I)). Missing weights raise
  :class:`StyleBackendUnavailable`.

:func:`make_style_backend` builds one by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from auditor.attacks.device import precision_context
from auditor.errors import UsageError
from auditor.hashing import sha256_file

STYLE_BACKENDS = ("randconv", "adain-stats", "ghiasi")
#: a style copy this correlated with its input (in absolute value) is an intensity change, not a style change
NEAR_AFFINE_CORR = 0.98
TRANSFORMER_FILE = "checkpoint_transformer.pth"
EMBEDDINGS_FILE = "checkpoint_embeddings.pth"


class StyleBackendUnavailable(UsageError):
    """The requested style backend cannot run here (e.g. no Ghiasi checkpoint); the caller records a Skipped."""


class StyleBackend(Protocol):
    """Maps ``(M, in_channels, H, W)`` images in ``[0, 1]`` to stylised images of the same shape, no gradient."""

    name: str
    in_channels: int  #: 1 = works on any channel count per channel; 3 = a colour network

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor: ...  # noqa: D102


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True, unbiased=False)
    return mean, std


class AdainStatsStyle:
    """Pixel-space AdaIN with random target statistics, per image and channel.

    ``out = clip((x - mu) / sigma * sigma * u + mu + v, 0, 1)`` with
    ``u ~ U(std_low, std_high)`` and ``v ~ U(-mean_shift, mean_shift)``.
    """

    name = "adain-stats"
    in_channels = 1

    def __init__(self, mean_shift: float = 0.2, std_low: float = 0.5, std_high: float = 1.5) -> None:
        self.mean_shift, self.std_low, self.std_high = mean_shift, std_low, std_high

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:  # noqa: D102
        m, c = x.shape[:2]
        u = torch.rand((m, c, 1, 1), generator=gen).to(x.device, x.dtype)
        v = torch.rand((m, c, 1, 1), generator=gen).to(x.device, x.dtype)
        scale = self.std_low + (self.std_high - self.std_low) * u
        shift = (2 * v - 1) * self.mean_shift
        mean, _ = _stats(x)
        return ((x - mean) * scale + mean + shift).clamp(0.0, 1.0)


class RandConvStyle:
    """Multi-scale random convolutions with random mixing (RandConv, Xu et al., ICLR 2021), for grey images.

    Kernel sizes ``{3, 5, 7, 9}`` (never 1x1), zero-mean Gaussian weights, the
    response re-standardised to the input's statistics and mixed with the input
    at a random weight ``a ~ U(0, mix_max)``.
    """

    name = "randconv"
    in_channels = 1
    kernel_sizes = (3, 5, 7, 9)

    def __init__(self, mix_max: float = 0.8) -> None:
        if not 0.0 <= mix_max < 1.0:
            raise UsageError(f"randconv: mix_max {mix_max!r} must lie in [0, 1)")
        self.mix_max = mix_max

    def _filtered(self, xs: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
        """One random zero-mean ``k x k`` filter per image of ``xs`` (grouped conv, reflection padding)."""
        n, c, h, w = xs.shape
        weight = torch.randn((n * c, c, k, k), generator=gen) / float(c * k * k) ** 0.5
        weight = weight - weight.mean(dim=(1, 2, 3), keepdim=True)
        pad = min(k // 2, h - 1, w - 1)  # reflection needs the pad below the side
        xin = F.pad(xs.reshape(1, -1, h, w), (pad,) * 4, mode="reflect" if pad else "constant")
        y = F.conv2d(xin, weight.to(xs.device, xs.dtype), groups=n)
        if y.shape[-2:] != (h, w):  # images smaller than the kernel: resize back
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return y.reshape(n, c, h, w)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:  # noqa: D102
        m = x.shape[0]
        which = torch.randint(len(self.kernel_sizes), (m,), generator=gen)
        alpha = (torch.rand((m, 1, 1, 1), generator=gen) * self.mix_max).to(x.device, x.dtype)
        mean_in, std_in = _stats(x)
        out = torch.empty_like(x)
        for ki, k in enumerate(self.kernel_sizes):
            sel = torch.nonzero(which == ki).flatten().to(x.device)
            if sel.numel() == 0:
                continue
            y = self._filtered(x[sel], k, gen)
            my, sy = _stats(y)
            out[sel] = (y - my) / sy.clamp_min(1e-6) * std_in[sel] + mean_in[sel]
        return (alpha * x + (1 - alpha) * out).clamp(0.0, 1.0)


def abs_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|corr(a_i, b_i)|`` per row over all pixels (0 where either row is constant)."""
    a = a.flatten(1).float()
    b = b.flatten(1).float()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1).abs() / den.clamp_min(1e-30), torch.zeros_like(den))


# ---------------------------------------------------------------- Ghiasi et al. arbitrary style network
class _ConvIN(nn.Module):
    """Reflection pad -> conv -> instance norm (no affine) -> ReLU (unconditioned layers)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = k // 2
        self.conv = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.conv(F.pad(x, (self.pad,) * 4, mode="reflect"))
        return F.relu(F.instance_norm(x))


class _UpConvCIN(nn.Module):
    """Optional nearest x2 upsample -> reflection pad -> conv -> IN -> style affine (gamma, beta) -> optional ReLU."""

    def __init__(self, cin: int, cout: int, k: int, upsample: bool, relu: bool = True) -> None:
        super().__init__()
        self.upsample, self.relu, self.pad = upsample, relu, k // 2
        self.conv = nn.Conv2d(cin, cout, k)
        self.fc_beta = nn.Linear(100, cout)
        self.fc_gamma = nn.Linear(100, cout)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.instance_norm(self.conv(F.pad(x, (self.pad,) * 4, mode="reflect")))
        x = self.fc_gamma(z)[:, :, None, None] * x + self.fc_beta(z)[:, :, None, None]
        return F.relu(x) if self.relu else x


class _ResCIN(nn.Module):
    """Residual block of two 3x3 conv + IN + style-conditioned affine (ReLU after the first)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3)
        self.conv2 = nn.Conv2d(ch, ch, 3)
        self.fc_beta1, self.fc_gamma1 = nn.Linear(100, ch), nn.Linear(100, ch)
        self.fc_beta2, self.fc_gamma2 = nn.Linear(100, ch), nn.Linear(100, ch)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = F.instance_norm(self.conv1(F.pad(x, (1,) * 4, mode="reflect")))
        y = F.relu(self.fc_gamma1(z)[:, :, None, None] * y + self.fc_beta1(z)[:, :, None, None])
        y = F.instance_norm(self.conv2(F.pad(y, (1,) * 4, mode="reflect")))
        y = self.fc_gamma2(z)[:, :, None, None] * y + self.fc_beta2(z)[:, :, None, None]
        return x + y


class GhiasiNet(nn.Module):
    """The arbitrary-style transformer of Ghiasi et al. (BMVC 2017), per docs/algorithms.md §5.3.

    Parameter names follow the published ``checkpoint_transformer.pth``
    (``layers.<i>.conv``, ``fc_beta``/``fc_gamma``, ``conv1``/``conv2``,
    ``fc_beta1``...), so its ``state_dict_ghiasi`` loads directly. About 1.95 M
    parameters; input sides must be multiples of 4 (see :meth:`GhiasiStyle.__call__`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                _ConvIN(3, 32, 9),
                _ConvIN(32, 64, 3, 2),
                _ConvIN(64, 128, 3, 2),
                *[_ResCIN(128) for _ in range(5)],
                _UpConvCIN(128, 64, 3, upsample=True),
                _UpConvCIN(64, 32, 3, upsample=True),
                _UpConvCIN(32, 3, 9, upsample=False, relu=False),
            ]
        )

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # noqa: D102
        for i, layer in enumerate(self.layers):
            x = layer(x) if i < 3 else layer(x, z)
        return torch.sigmoid(x)


_sha256 = sha256_file


def ghiasi_files(checkpoint: str | Path | None) -> tuple[Path, Path | None]:
    """(transformer, embeddings or None) for a folder or a transformer file; raises StyleBackendUnavailable."""
    if not checkpoint:
        raise StyleBackendUnavailable(
            f"style backend 'ghiasi' needs {TRANSFORMER_FILE} (pass --stm-checkpoint DIR); it is not shipped"
        )
    p = Path(checkpoint)
    transformer = p / TRANSFORMER_FILE if p.is_dir() else p
    if not transformer.is_file():
        raise StyleBackendUnavailable(f"style backend 'ghiasi': {transformer} not found")
    emb = transformer.parent / EMBEDDINGS_FILE
    return transformer, (emb if emb.is_file() else None)


class GhiasiStyle:
    """The Ghiasi network with style vectors z ~ N(mu_PBN, Sigma_PBN) (or N(0, I) without embeddings)."""

    name = "ghiasi"
    in_channels = 3

    def __init__(self, checkpoint: str | Path | None, device: torch.device, precision: str = "fp32") -> None:
        self.transformer, self.embeddings = ghiasi_files(checkpoint)
        self.device, self.precision = device, precision
        try:
            doc = torch.load(self.transformer, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user problem
            raise StyleBackendUnavailable(
                f"{self.transformer}: cannot be read as a torch checkpoint ({type(exc).__name__})"
            ) from None
        state = doc.get("state_dict_ghiasi") if isinstance(doc, dict) else None
        if not isinstance(state, dict):
            raise StyleBackendUnavailable(f"{self.transformer}: no 'state_dict_ghiasi' entry")
        net = GhiasiNet()
        missing = [k for k in net.state_dict() if k not in state]
        if missing:
            raise StyleBackendUnavailable(
                f"{self.transformer}: state_dict_ghiasi lacks {len(missing)} tensors (first: {missing[0]})"
            )
        try:
            net.load_state_dict({k: state[k] for k in net.state_dict()}, strict=True)
        except RuntimeError as exc:
            raise StyleBackendUnavailable(
                f"{self.transformer}: tensor shapes do not match the Ghiasi network "
                f"({str(exc).splitlines()[-1].strip()[:120]})"
            ) from None
        self.net = net.eval().requires_grad_(False).to(device)
        self.mean = torch.zeros(100)
        self.factor = torch.eye(100)
        self.z_source = "N(0, I)"
        if self.embeddings is not None:
            try:
                emb = torch.load(self.embeddings, map_location="cpu", weights_only=True)
                mu = torch.as_tensor(emb["pbn_embedding_mean"], dtype=torch.float64).flatten()
                cov = torch.as_tensor(emb["pbn_embedding_covariance"], dtype=torch.float64)
            except Exception as exc:  # noqa: BLE001
                raise StyleBackendUnavailable(
                    f"{self.embeddings}: no readable pbn_embedding_mean/covariance ({type(exc).__name__})"
                ) from None
            if mu.shape != (100,) or cov.shape != (100, 100):
                raise StyleBackendUnavailable(f"{self.embeddings}: expected a 100-d mean and 100x100 covariance")
            u, s, _ = torch.linalg.svd(cov)
            self.factor = (u * s.clamp_min(0).sqrt()).float()  # z = A n + mu, A = U diag(sqrt(s))
            self.mean = mu.float()
            self.z_source = "N(mu_PBN, Sigma_PBN)"

    def identity(self) -> dict[str, Any]:
        """Checkpoint digests (part of the cache key)."""
        return {
            "transformer_sha256": _sha256(self.transformer),
            "embeddings_sha256": _sha256(self.embeddings) if self.embeddings else None,
        }

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:  # noqa: D102
        m, _, h, w = x.shape
        z = torch.randn((m, 100), generator=gen) @ self.factor.T + self.mean
        ph, pw = (-h) % 4, (-w) % 4
        xin = F.pad(x, (0, pw, 0, ph), mode="reflect") if (ph or pw) else x
        with precision_context(self.precision, self.device):
            out = self.net(xin, z.to(x.device))
        return out.float()[:, :, :h, :w]


def make_style_backend(
    name: str, checkpoint: str | Path | None = None, device: torch.device | None = None, precision: str = "fp32"
) -> StyleBackend:
    """Build a style backend by name (once per attack)."""
    if name == "randconv":
        return RandConvStyle()
    if name == "adain-stats":
        return AdainStatsStyle()
    if name == "ghiasi":
        return GhiasiStyle(checkpoint, device or torch.device("cpu"), precision)
    raise UsageError(f"unknown style backend {name!r}; choose one of {', '.join(STYLE_BACKENDS)}")
