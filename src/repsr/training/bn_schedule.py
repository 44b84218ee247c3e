"""RepSR's BN switch: mini-batch statistics until ``train.bn.switch``, population statistics after.

At the switch the population statistics are re-estimated exactly over ``recompute_batches`` batches,
every BN switches to them, the EMA restarts among weights trained with them (an average over both
phases would mix two functions), and with ``train_affine: false`` the BN affine parameters are frozen.
``repsr train`` and ``repsr demo`` both switch through :class:`BNSchedule`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from ..bn import get_bn_phase, recompute_population_stats, set_bn_phase
from ..ema import ModelEMA
from ..errors import RepsrError


def bn_affine_params(model: nn.Module) -> list[Tensor]:
    """Every BN weight and bias of ``model``, in module order (what ``train_affine: false`` freezes)."""
    return [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
            for p in (m.weight, m.bias)]


class BNSchedule:
    """When and how ``model`` switches BN phase; ``stats_batches(count)`` gives the batches to measure on."""

    def __init__(self, model: nn.Module, ema: ModelEMA | None, stats_batches: Callable[[int], Iterator[Tensor]],
                 recompute_batches: int, train_affine: bool = True, switch_at: int | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.model, self.ema, self.stats_batches = model, ema, stats_batches
        self.recompute_batches, self.train_affine, self.log = recompute_batches, train_affine, log
        self.switch_at = switch_at if get_bn_phase(model) is not None else None  # no BN: nothing to switch
        self.frozen_affine: list[tuple[Tensor, Tensor]] = []

    def due(self, iteration: int) -> bool:
        """Whether the switch happens before ``iteration`` runs (also on resuming past it in the batch phase)."""
        return self.switch_at is not None and iteration >= self.switch_at and get_bn_phase(self.model) == "batch"

    def switch(self, iteration: int) -> None:
        count = self.recompute_batches
        recompute_population_stats(self.model, self.stats_batches(count))
        set_bn_phase(self.model, "population")
        if self.ema is not None:
            self.ema.reset(self.model)  # the average restarts among weights trained with these statistics
        if not self.train_affine:
            self.frozen_affine = [(p, p.detach().clone()) for p in bn_affine_params(self.model)]
        self.log(f"iteration {iteration}: population statistics re-estimated over {count} batches; "
                 "BN now uses them")

    @torch.no_grad()
    def restore_frozen(self) -> None:
        """Undo the optimizer step on frozen BN affine parameters (Adam's moments would move them)."""
        for p, value in self.frozen_affine:
            p.copy_(value)

    def frozen_state(self) -> list[Tensor]:
        return [t.detach().cpu() for _, t in self.frozen_affine]

    def load_frozen(self, frozen: list[Tensor], device: torch.device, source: str) -> None:
        """Restore frozen values from a checkpoint; a count that does not match the network is an error."""
        params = bn_affine_params(self.model)
        if frozen and len(frozen) != len(params):
            raise RepsrError(f"{source}: holds {len(frozen)} frozen BN affine tensors, the network has {len(params)}")
        self.frozen_affine = [(p, t.to(device)) for p, t in zip(params, frozen, strict=True)] if frozen else []
