"""One training iteration: loss, backward, clipping, optimizer and scheduler step, frozen BN affine, EMA.

The loop (:mod:`.trainer`) decides what happens around it; this is only the update, as BasicSR's
``optimize_parameters`` is apart from its training loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import Config
from ..ema import ModelEMA
from .bn_schedule import BNSchedule


def lr_factor(config: Config, iteration: int) -> float:
    """Learning-rate multiplier after ``iteration`` completed iterations (warm-up, then the schedule)."""
    s, total = config.train.scheduler, config.train.total_iter
    if iteration < s.warmup_iter:
        return (iteration + 1) / s.warmup_iter
    if s.type == "multistep":
        return s.gamma ** sum(iteration >= m for m in s.milestones)
    if s.type == "cosine":
        progress = (iteration - s.warmup_iter) / max(1, total - s.warmup_iter)
        floor = s.min_lr / config.train.optimizer.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


class TrainStep:
    """Adam (fused: one kernel over the many small parameters of RepSR blocks) with warm-up and schedule."""

    def __init__(self, model: nn.Module, net: nn.Module, config: Config, device: torch.device) -> None:
        """``net`` is what the loss calls: ``model`` itself, or wrapped by DDP and/or torch.compile."""
        self.model, self.net, self.grad_clip = model, net, config.train.grad_clip
        opt = config.train.optimizer
        self.optimizer = torch.optim.Adam(model.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                          weight_decay=opt.weight_decay, fused=device.type in ("cpu", "cuda"))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(config, it))
        self.loss_fn = F.l1_loss if config.train.loss == "l1" else F.mse_loss

    def loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The loss of the network (DDP-wrapped and compiled when so configured) on ``batch``."""
        return self.loss_fn(self.net(batch["lr"]), batch["hr"])

    def update(self, loss: Tensor, bn: BNSchedule, ema: ModelEMA | None) -> None:
        """Backward and step on a finite ``loss``, then restore frozen BN affine values and update the EMA."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        bn.restore_frozen()
        if ema is not None:
            ema.update(self.model)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
