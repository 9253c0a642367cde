"""Tiny fixed-weight networks shared by the attack tests (no training, no downloads)."""

from __future__ import annotations

import torch
from torch import nn


class CountingNet(nn.Module):
    """Tiny fixed-weight CNN over grey images (3 classes) that counts its forward calls and the rows it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        self.calls = 0
        self.rows = 0

    def forward(self, x):  # noqa: D102
        self.calls += 1
        self.rows += x.shape[0]
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
