"""Batch normalization with RepSR's two training phases.

RepSR trains its blocks with BatchNorm in two phases:

* ``"batch"``: normalize with mini-batch statistics, as ordinary training does. The batch
  dependence is what makes a linear block non-linear during training and helps optimisation.
* ``"population"``: normalize with fixed running (population) statistics while the rest of the
  network keeps training. Training then sees exactly the function that will be merged and
  deployed, which removes the train/test mismatch behind BN artifacts in SR.

The phase lives in a buffer of every :class:`SwitchableBatchNorm2d`, so it survives
``model.train()`` and is saved and restored with the state dict.

Why two ways of getting population statistics? The running averages PyTorch keeps are an EMA
(momentum 0.1) of recent batches taken while the weights were still moving; they are cheap and
always there. :func:`recompute_population_stats` instead measures the statistics exactly, for
the current weights, over many batches. Use it right before the switch (so the population phase
starts from the right statistics) and before merging a model whose weights changed since its
statistics were last measured (an EMA model, for instance).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .modes import module_mode

BNPhase = Literal["batch", "population"]
PHASES: tuple[str, ...] = ("batch", "population")


class SwitchableBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that can be switched to fixed population statistics during training.

    In ``eval()`` it behaves exactly like ``nn.BatchNorm2d``. In ``train()`` it uses mini-batch
    statistics in the ``"batch"`` phase and the running statistics in the ``"population"`` phase
    (no running-stat updates; the affine parameters still receive gradients).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, **kwargs) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum, **kwargs)
        self.register_buffer("population_phase", torch.tensor(False))
        self.sync = False  # multi-process training: batch statistics over all ranks (see set_bn_sync)

    @property
    def phase(self) -> BNPhase:
        return "population" if bool(self.population_phase) else "batch"

    def forward(self, x: Tensor) -> Tensor:
        if self.uses_batch_stats():
            if self.sync and _world_size() > 1:
                return self._synced_batch_norm(x)
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def uses_batch_stats(self) -> bool:
        """True when this forward normalizes with the mini-batch statistics (training, batch phase)."""
        return self.training and not bool(self.population_phase)

    def _synced_batch_norm(self, x: Tensor) -> Tensor:
        """Batch statistics of the global batch (SyncBatchNorm semantics), differentiable across ranks."""
        c = x.shape[1]
        total = global_sums(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), x.new_full((1,), x.numel() / c)]))
        count = total[-1]
        mean = total[:c] / count
        var = (total[c : 2 * c] / count - mean * mean).clamp_min(0)
        self.update_running_stats(mean, var, count)
        scale, shift = bn_affine(mean, torch.rsqrt(var + self.eps), self.weight, self.bias)
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    @torch.no_grad()
    def update_running_stats(self, mean: Tensor, var: Tensor, count: float | Tensor) -> None:
        """What ``F.batch_norm`` does to the running statistics, given a batch's mean and biased variance."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
        unbiased = var.detach() * (count / (count - 1) if count > 1 else 1.0)
        self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def bn_affine(mean: Tensor, inv_std: Tensor, weight: Tensor | None, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Normalization by ``mean``/``inv_std`` then the affine ``weight``/``bias`` (None: no affine), as
    one per-channel map ``x * scale + shift``: the form in which BN folds into a neighbouring conv."""
    scale, shift = inv_std, -mean * inv_std
    if weight is not None:
        scale, shift = scale * weight, shift * weight + bias
    return scale, shift


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """The per-channel affine map ``x * scale + shift`` of a BN at its running statistics."""
    return bn_affine(bn.running_mean, torch.rsqrt(bn.running_var + bn.eps), bn.weight, bn.bias)


def global_sums(t: Tensor) -> Tensor:
    """``t`` summed over all ranks when running distributed (differentiably), else ``t`` itself."""
    if _world_size() == 1:
        return t
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def has_batchnorm(model: nn.Module) -> bool:
    """Whether any module of ``model`` is a BatchNorm (switchable or plain)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def set_bn_sync(model: nn.Module, sync: bool) -> nn.Module:
    """Multi-process training: compute batch statistics over all ranks (True) or per rank (False)."""
    for bn in _switchable_bns(model):
        bn.sync = sync
    return model


def _switchable_bns(model: nn.Module) -> list[SwitchableBatchNorm2d]:
    bns = []
    for name, module in model.named_modules():
        if isinstance(module, SwitchableBatchNorm2d):
            bns.append(module)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise TypeError(f"{name or 'model'} is a plain {type(module).__name__}; "
                            "BN phases need SwitchableBatchNorm2d")
    return bns


def set_bn_phase(model: nn.Module, phase: BNPhase) -> nn.Module:
    """Switch every BN of ``model`` to ``"batch"`` or ``"population"`` statistics; returns ``model``."""
    if phase not in PHASES:
        raise ValueError(f"BN phase must be one of {PHASES}, got {phase!r}")
    for bn in _switchable_bns(model):
        bn.population_phase.fill_(phase == "population")
    return model


def get_bn_phase(model: nn.Module) -> BNPhase | None:
    """The common phase of all BN layers; None if the model has none. Mixed phases are an error."""
    phases = {bn.phase for bn in _switchable_bns(model)}
    if len(phases) > 1:
        raise ValueError("BN layers are in different phases")
    return phases.pop() if phases else None


@torch.no_grad()
def recompute_population_stats(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Set every BN's running mean/var to the exact statistics of its input over ``batches``.

    The model runs in training mode with mini-batch normalisation (so each BN sees the features
    the batch phase produces); per channel, sums of x and x^2 are accumulated in float64 over all
    pixels of all batches, which gives the pooled mean and (unbiased) variance exactly, not an
    average of per-batch variances and not an EMA. Nothing else of the model changes: the phases,
    the training flag and the parameters are restored. Returns the number of batches used.
    """
    bns = _switchable_bns(model)
    if not bns:
        return 0
    sums: dict[SwitchableBatchNorm2d, list] = {bn: [0.0, 0.0, 0] for bn in bns}

    def accumulate(bn: SwitchableBatchNorm2d, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0].detach().to(torch.float64).transpose(0, 1).flatten(1)
        acc = sums[bn]
        acc[0] = acc[0] + x.sum(1)
        acc[1] = acc[1] + (x * x).sum(1)
        acc[2] += x.shape[1]

    saved = [(bn, bool(bn.population_phase), bn.running_mean.clone(), bn.running_var.clone(),
              bn.num_batches_tracked.clone()) for bn in bns]
    handles = [bn.register_forward_pre_hook(accumulate) for bn in bns]
    n_batches = 0
    try:
        with module_mode(model, True):
            set_bn_phase(model, "batch")
            for batch in batches:
                model(batch)
                n_batches += 1
    finally:
        for handle in handles:
            handle.remove()
        for bn, phase, mean, var, count in saved:
            bn.population_phase.fill_(phase)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.num_batches_tracked.copy_(count)
    if n_batches == 0:
        raise ValueError("recompute_population_stats needs at least one batch")
    if _world_size() > 1:  # pool the statistics of every rank's batches
        import torch.distributed as dist

        for acc in sums.values():
            packed = torch.cat([acc[0], acc[1], acc[0].new_tensor([float(acc[2])])])
            dist.all_reduce(packed)
            c = acc[0].numel()
            acc[0], acc[1], acc[2] = packed[:c], packed[c : 2 * c], packed[-1].item()
    for bn in bns:
        total, total_sq, count = sums[bn]
        mean = total / count
        var = (total_sq - count * mean * mean) / max(count - 1, 1)
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.clamp_min(0).to(bn.running_var.dtype))
        bn.num_batches_tracked.add_(n_batches)
    return n_batches
