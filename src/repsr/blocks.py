"""Re-parameterizable 3x3 blocks.

Every block follows one small protocol (:class:`ReparamBlock`), the one RepVGG, MobileOne and timm
use, so ``timm.utils.reparameterize_model`` works on our networks too:

* ``forward(x)``: the multi-branch training forward (or the merged conv once deployed);
* ``get_equivalent_kernel_bias()``: the 3x3 kernel and bias of the block as it is now, with BN
  taken at its population statistics; differentiable, so it can also be used during training;
* ``reparameterize()`` (alias ``switch_to_deploy()``): replace the branches in place by one conv.

A new block only implements ``forward_branches`` and ``get_equivalent_kernel_bias`` and is added
to :data:`BLOCKS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .bn import SwitchableBatchNorm2d


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """The per-channel affine map ``x * scale + shift`` of a BN at its running statistics."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.affine:
        scale = scale * bn.weight
        shift = shift * bn.weight + bn.bias
    return scale, shift


def identity_kernel(channels: int, like: Tensor) -> Tensor:
    """A 3x3 kernel that passes each channel through unchanged."""
    kernel = torch.zeros(channels, channels, 3, 3, dtype=like.dtype, device=like.device)
    kernel[torch.arange(channels), torch.arange(channels), 1, 1] = 1
    return kernel


class ReparamBlock(nn.Module):
    """Base class: a block that computes a 3x3 conv (in_channels -> out_channels, padding 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got {in_channels} -> {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reparam_conv: nn.Conv2d | None = None

    @property
    def deployed(self) -> bool:
        return self.reparam_conv is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        return self.forward_branches(x)

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


class PlainBlock(ReparamBlock):
    """One 3x3 conv: the baseline without re-parameterization."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        self.conv = nn.Conv2d(in_channels, self.out_channels, 3, padding=1)

    def forward_branches(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        return self.conv.weight, self.conv.bias


class ExpandSqueezePath(nn.Module):
    """Conv3x3 (C -> rC) -> BN(rC) -> Conv1x1 (rC -> C).

    In this order the merge is exact at image borders too: zero padding acts on the input
    exactly as in the merged conv, and BN and the 1x1 conv are pointwise.
    """

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int, use_bn: bool = True) -> None:
        super().__init__()
        self.expand = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.bn = SwitchableBatchNorm2d(mid_channels) if use_bn else None
        self.squeeze = nn.Conv2d(mid_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.expand(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.squeeze(x)

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        kernel, bias = self.expand.weight, self.expand.bias
        if self.bn is not None:
            scale, shift = bn_scale_shift(self.bn)
            kernel = kernel * scale[:, None, None, None]
            bias = bias * scale + shift
        squeeze = self.squeeze.weight[:, :, 0, 0]
        return torch.einsum("om,mihw->oihw", squeeze, kernel), squeeze @ bias + self.squeeze.bias


class RepSRBlock(ReparamBlock):
    """RepSR block: a clean identity path plus ``num_paths`` expand-and-squeeze paths with BN.

    ``expand`` is the ratio r of the hidden width (rC). ``identity=False`` and ``use_bn=False``
    give the ablation variants of the paper.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        expand: int = 2,
        num_paths: int = 2,
        identity: bool = True,
        use_bn: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        if expand < 1 or num_paths < 1:
            raise ValueError(f"expand and num_paths must be >= 1, got {expand} and {num_paths}")
        if identity and self.in_channels != self.out_channels:
            raise ValueError("the identity path needs in_channels == out_channels")
        self.identity = identity
        mid = int(expand) * self.out_channels
        self.paths = nn.ModuleList(
            ExpandSqueezePath(self.in_channels, self.out_channels, mid, use_bn) for _ in range(num_paths)
        )

    def forward_branches(self, x: Tensor) -> Tensor:
        out = x if self.identity else 0
        for path in self.paths:
            out = out + path(x)
        return out

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        kernels, biases = zip(*(path.get_equivalent_kernel_bias() for path in self.paths), strict=True)
        kernel, bias = sum(kernels), sum(biases)
        if self.identity:
            kernel = kernel + identity_kernel(self.out_channels, kernel)
        return kernel, bias


BLOCKS: dict[str, Callable[..., ReparamBlock]] = {
    "repsr": RepSRBlock,
    "plain": PlainBlock,
}


def build_block(name: str, in_channels: int, out_channels: int | None = None, **options) -> ReparamBlock:
    """Build a block by its name in :data:`BLOCKS`."""
    try:
        factory = BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown block {name!r}; known blocks: {', '.join(sorted(BLOCKS))}") from None
    return factory(in_channels, out_channels, **options)



def block_options(name: str) -> set[str]:
    """The keyword options a block accepts besides its channels."""
    params = inspect.signature(BLOCKS[name]).parameters
    return {p for p in params if p not in ("in_channels", "out_channels")}
