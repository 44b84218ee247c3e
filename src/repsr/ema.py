"""Exponential moving average of a model's parameters *and* buffers.

BasicSR's EMA averages parameters only, which leaves a BN model's EMA copy with the BN statistics
it started with. Here float buffers (BN running statistics) are averaged too, and integer/bool
buffers (the BN phase, batch counters) are copied. Averaged statistics are still only an
approximation for averaged weights, so the trainer re-estimates them exactly
(:func:`repsr.bn.recompute_population_stats`) before the EMA model is validated or merged while
BN is in the batch phase; after the switch to population statistics they are fixed and exact.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.module.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - self.decay)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            if ema_b.is_floating_point():
                ema_b.lerp_(b, 1 - self.decay)
            else:
                ema_b.copy_(b)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Restart the average at ``model``'s current weights and statistics."""
        self.module.load_state_dict(model.state_dict())
