"""Shared test helpers. Tests never read ../shared: they synthesize data or use tests/data/."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

DATA = Path(__file__).parent / "data"


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics *and* affine parameters: default BN init makes merge tests trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.2)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=gen) * 0.5 + 1)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
