"""The block protocol every re-parameterizable 3x3 block follows, and the kernel maths the blocks share.

Every block follows one small protocol (:class:`ReparamBlock`), the one RepVGG, MobileOne and timm
use, so ``timm.utils.reparameterize_model`` works on our networks too:

* ``forward(x)``: the multi-branch training forward (or the merged conv once deployed);
* ``get_equivalent_kernel_bias()``: the 3x3 kernel and bias of the block as it is now, with BN
  taken at its population statistics; differentiable, so it can also be used during training;
* ``reparameterize()`` (alias ``switch_to_deploy()``): replace the branches in place by one conv.

A new block only implements ``forward_branches`` and ``get_equivalent_kernel_bias`` and is added
to :data:`repsr.archs.registry.BLOCKS`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..bn import bn_scale_shift
from ..modes import eval_mode


def identity_kernel(channels: int, like: Tensor) -> Tensor:
    """A 3x3 kernel that passes each channel through unchanged."""
    eye = torch.eye(channels, dtype=like.dtype, device=like.device)
    return F.pad(eye[:, :, None, None], (1, 1, 1, 1))


class ForwardMode(str, enum.Enum):
    """The four ways a block's forward runs, chosen per call by :meth:`ReparamBlock.forward_mode`.

    All four compute the same function (tests assert it); they differ in cost and in which tensors exist:

    * ``DEPLOYED``: after :meth:`ReparamBlock.reparameterize`, the one merged conv;
    * ``ONLINE_MERGED``: the block is linear (eval mode or population-phase BN), so the differentiable
      merged kernel runs as one conv and the branch parameters get their gradients through it;
    * ``BATCH_MOMENTS``: RepSR blocks of width >= ``batch_merge_min_channels`` in the batch phase: BN
      statistics of the hidden channels from the input's patch moments, running statistics updated by
      hand as BN would, then one conv. Skipped when a hook is attached to one of the block's BNs, since
      a hook (``recompute_population_stats`` uses one) expects to see the hidden features: attaching a
      debugging hook therefore moves the block to ``BRANCHES``, which is exact too (same output, same
      gradients, same running-statistics update), only slower;
    * ``BRANCHES``: every branch as its own module (also forced by :func:`branch_forward`).
    """

    DEPLOYED = "deployed"
    ONLINE_MERGED = "online_merged"
    BATCH_MOMENTS = "batch_moments"
    BRANCHES = "branches"


class ReparamBlock(nn.Module):
    """Base class: a block that computes a 3x3 conv (in_channels -> out_channels, padding 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got {in_channels} -> {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reparam_conv: nn.Conv2d | None = None
        self.online_merge = True  # run one conv with a merged kernel whenever that is exact (forward_mode)

    @property
    def deployed(self) -> bool:
        return self.reparam_conv is not None

    def is_linear(self) -> bool:
        """True when the block is one affine map: in eval mode, or every BN uses population statistics."""
        bns = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return not self.training or all(getattr(bn, "phase", "batch") == "population" for bn in bns)

    def forward_mode(self, x: Tensor) -> ForwardMode:
        """Which of the four ways :meth:`forward` computes the block for this input (see :class:`ForwardMode`)."""
        if self.reparam_conv is not None:
            return ForwardMode.DEPLOYED
        if self.online_merge and self.is_linear():
            return ForwardMode.ONLINE_MERGED
        if self.online_merge and self._batch_moments_apply(x):
            return ForwardMode.BATCH_MOMENTS
        return ForwardMode.BRANCHES

    def forward(self, x: Tensor) -> Tensor:
        mode = self.forward_mode(x)
        if mode is ForwardMode.DEPLOYED:
            return self.reparam_conv(x)
        if mode is ForwardMode.ONLINE_MERGED:
            return F.conv2d(x, *self.get_equivalent_kernel_bias(), padding=1)
        if mode is ForwardMode.BATCH_MOMENTS:
            return F.conv2d(x, *self._batch_kernel_bias(x), padding=1)
        return self.forward_branches(x)

    def _batch_moments_apply(self, x: Tensor) -> bool:
        """Whether the batch phase can run as one conv (blocks with a batch-phase merge override it)."""
        return False

    def _batch_kernel_bias(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The batch-phase merged kernel and bias, updating the BN running statistics as BN would."""
        raise NotImplementedError

    def forward_branches(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace all branches by one ``nn.Conv2d`` (a no-op if already merged)."""
        if self.reparam_conv is not None:
            return
        kernel, bias = self.get_equivalent_kernel_bias()
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1, device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        for name in list(self._modules):
            delattr(self, name)
        self.reparam_conv = conv

    def switch_to_deploy(self) -> None:
        self.reparameterize()


def impulse_kernel_bias(block: nn.Module, in_channels: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The 3x3 kernel and bias of a linear, shift-invariant ``block``, read off its impulse responses.

    SESR's trick: in eval mode (population BN statistics) the block is affine, so its response to
    a zero image is the bias and its response to a unit impulse per input channel, minus the bias,
    is the (flipped) kernel. Differentiable; exact up to float rounding.
    """
    with eval_mode(block):
        probe = torch.zeros(in_channels + 1, in_channels, 5, 5, dtype=like.dtype, device=like.device)
        probe[torch.arange(in_channels), torch.arange(in_channels), 2, 2] = 1
        response = block.forward_branches(probe)
    bias = response[-1, :, 2, 2]
    kernel = (response[:-1, :, 1:4, 1:4] - response[-1:, :, 1:4, 1:4]).flip(-1, -2).transpose(0, 1)
    return kernel, bias


def fuse_conv_bn(kernel: Tensor, bn: nn.modules.batchnorm._BatchNorm, bias: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
    """Conv (no or some bias) followed by BN at its population statistics, as one conv."""
    scale, shift = bn_scale_shift(bn)
    fused_bias = shift if bias is None else bias * scale + shift
    return kernel * scale[:, None, None, None], fused_bias


def pad_to_3x3(kernel: Tensor) -> Tensor:
    """Centre a 1x1, 1x3 or 3x1 kernel in a 3x3 one."""
    kh, kw = kernel.shape[-2:]
    return F.pad(kernel, ((3 - kw) // 2, (3 - kw) // 2, (3 - kh) // 2, (3 - kh) // 2))


def pad_with_values(x: Tensor, values: Tensor) -> Tensor:
    """Pad by one pixel filled with a per-channel value (a 1x1 layer's bias, or BN's image of 0).

    A following unpadded 3x3 then equals one 3x3 conv with zero padding of the block input, at the
    borders too: what makes 1x1 -> 3x3 sequences (DBB, ECB) merge exactly.
    """
    out = F.pad(x, (1, 1, 1, 1))
    border = torch.ones_like(out)
    border[:, :, 1:-1, 1:-1] = 0
    return out + border * values[None, :, None, None]


@contextlib.contextmanager
def branch_forward(model: nn.Module) -> Iterator[nn.Module]:
    """Run every block through its branches, each as its own module: no online merge.

    The reference for merge checks, and what FLOP counters and "training network" timings should see.
    """
    blocks = [m for m in model.modules() if isinstance(m, ReparamBlock)]
    saved = [b.online_merge for b in blocks]
    for b in blocks:
        b.online_merge = False
    try:
        yield model
    finally:
        for b, online in zip(blocks, saved, strict=True):
            b.online_merge = online
