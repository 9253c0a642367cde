"""The CycleGAN restoration's networks (Zhu et al., ICCV 2017): the residual ResNet-style
:class:`Generator`, the :class:`PatchDiscriminator` and the discriminators' :class:`ImagePool`.
Training: :mod:`auditor.training.cyclegan`."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(c, c, 3),
            nn.InstanceNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.body(x)


class Generator(nn.Module):
    """Tiny ResNet generator with a residual, clipped output."""

    def __init__(self, width: int = 16, n_res: int = 3, channels: int = 1) -> None:
        super().__init__()
        self.config = {"width": width, "n_res": n_res, "channels": channels}
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, w, 7),
            nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.Conv2d(w, 2 * w, 3, 2, 1),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1),
            nn.InstanceNorm2d(4 * w),
            nn.ReLU(True),
        ]
        layers += [_ResBlock(4 * w) for _ in range(n_res)]
        layers += [
            nn.ConvTranspose2d(4 * w, 2 * w, 3, 2, 1, output_padding=1),
            nn.InstanceNorm2d(2 * w),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1),
            nn.InstanceNorm2d(w),
            nn.ReLU(True),
            nn.ReflectionPad2d(3),
        ]
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(w, channels, 7)
        nn.init.zeros_(self.out.weight)
        if self.out.bias is not None:  # (a Conv2d has one unless built with bias=False)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        r = self.out(self.body(x * 2.0 - 1.0))
        if r.shape[-2:] != x.shape[-2:]:  # sizes not divisible by 4
            r = F.interpolate(r, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.clamp(x + r, 0.0, 1.0)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (three downsampling 4x4 convs at tiny widths, patch logits)."""

    def __init__(self, width: int = 16, channels: int = 1) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(w, 2 * w, 4, 2, 1),
            nn.InstanceNorm2d(2 * w),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(2 * w, 4 * w, 4, 1, 1),
            nn.InstanceNorm2d(4 * w),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(4 * w, 1, 4, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(x * 2.0 - 1.0)


class ImagePool:
    """History of generated images (Shrivastava et al., CVPR 2017): with probability 0.5 a query returns an
    older fake instead of the new one, once the pool is full."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """The batch the discriminator sees: images fill the pool and pass through; once it is full each one is,
        with probability 0.5, swapped for a random stored older fake (and takes its place), else passed through."""
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img)
                out.append(img)
            elif self.rng.random() < 0.5:
                k = self.rng.randrange(self.size)
                out.append(self.images[k].clone())
                self.images[k] = img
            else:
                out.append(img)
        return torch.cat(out)
