"""A small branchy network whose stem activation feeds two layers (a shared activation knob)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class Branchy(nn.Module):
    """Six compute layers; ``stem``'s ReLU feeds both ``a1`` and the 1x1 ``short`` conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU())
        self.a1 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU())
        self.a2 = nn.Conv2d(64, 64, 3, padding=1)
        self.short = nn.Conv2d(32, 64, 1)
        self.relu = nn.ReLU()
        self.conv5 = nn.Sequential(nn.Conv2d(64, 96, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(96, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        x = self.relu(self.a2(self.a1(s)) + self.short(s))
        return self.fc(torch.flatten(self.pool(self.conv5(x)), 1))


@pytest.fixture(scope="session")
def branchy_qmodel():
    """Branchy quantized with every layer searchable: weights {2, 4, 8}, activations {4, 8}."""
    from brevitas_amed.quant import QuantPolicy, quantize

    torch.manual_seed(0)
    policy = QuantPolicy(weight_bits=(2, 4, 8), act_bits=(4, 8), first_layer="search", last_layer="search")
    return quantize(Branchy().eval(), policy)
