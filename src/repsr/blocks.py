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

import contextlib
import inspect
from collections.abc import Callable, Iterator
from functools import partial

import torch
import torch.nn.functional as F
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
        self.online_merge = True  # run one conv with the merged kernel whenever the block is linear

    @property
    def deployed(self) -> bool:
        return self.reparam_conv is not None

    def is_linear(self) -> bool:
        """True when the block is one affine map: in eval mode, or every BN uses population statistics."""
        bns = [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        return not self.training or all(getattr(bn, "phase", "batch") == "population" for bn in bns)

    def forward(self, x: Tensor) -> Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        if self.online_merge and self.is_linear():
            # OREPA/SESR-style: the same function, one conv; gradients reach the branch parameters
            kernel, bias = self.get_equivalent_kernel_bias()
            return F.conv2d(x, kernel, bias, padding=1)
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
        if self.fuse_paths and len(self.paths) > 1 and self._fusable():
            return self._forward_fused(x)
        out = x if self.identity else 0
        for path in self.paths:
            out = out + path(x)
        return out

    fuse_paths = True  # run the paths as one wider conv + one BN + one 1x1 (same function, fewer kernels)

    def _fusable(self) -> bool:
        bns = [p.bn for p in self.paths]
        if bns[0] is None:
            return True
        # observed BNs (hooks, e.g. recompute_population_stats) and synced BNs run as modules
        return (all(bn.momentum is not None and not bn.sync and not bn._forward_pre_hooks and not bn._forward_hooks
                    for bn in bns)
                and len({(bn.eps, bn.momentum, bn.phase, bn.affine, bn.num_features) for bn in bns}) == 1)

    def _forward_fused(self, x: Tensor) -> Tensor:
        """Concatenating the expand convs along outputs, the BNs along channels and the squeeze convs
        along inputs gives exactly the sum of the paths; running statistics go back to each path's BN."""
        paths = self.paths
        z = F.conv2d(x, torch.cat([p.expand.weight for p in paths]), torch.cat([p.expand.bias for p in paths]),
                     padding=1)
        bns = [p.bn for p in paths]
        if bns[0] is not None:
            bn = bns[0]
            update = self.training and bn.phase == "batch"
            mean = torch.cat([b.running_mean for b in bns])
            var = torch.cat([b.running_var for b in bns])
            weight = torch.cat([b.weight for b in bns]) if bn.affine else None
            bias = torch.cat([b.bias for b in bns]) if bn.affine else None
            z = F.batch_norm(z, mean, var, weight, bias, update, bn.momentum, bn.eps)
            if update:
                with torch.no_grad():
                    n = bn.num_features
                    for b, m, v in zip(bns, mean.split(n), var.split(n), strict=True):
                        b.running_mean.copy_(m)
                        b.running_var.copy_(v)
                        b.num_batches_tracked.add_(1)
        squeeze = torch.cat([p.squeeze.weight for p in paths], dim=1)
        out = F.conv2d(z, squeeze, sum(p.squeeze.bias for p in paths))
        return out + x if self.identity else out

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        kernels, biases = zip(*(path.get_equivalent_kernel_bias() for path in self.paths), strict=True)
        kernel, bias = sum(kernels), sum(biases)
        if self.identity:
            kernel = kernel + identity_kernel(self.out_channels, kernel)
        return kernel, bias


def impulse_kernel_bias(block: nn.Module, in_channels: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """The 3x3 kernel and bias of a linear, shift-invariant ``block``, read off its impulse responses.

    SESR's trick: in eval mode (population BN statistics) the block is affine, so its response to
    a zero image is the bias and its response to a unit impulse per input channel, minus the bias,
    is the (flipped) kernel. Differentiable; exact up to float rounding.
    """
    was_training = block.training
    block.eval()
    try:
        probe = torch.zeros(in_channels + 1, in_channels, 5, 5, dtype=like.dtype, device=like.device)
        probe[torch.arange(in_channels), torch.arange(in_channels), 2, 2] = 1
        response = block.forward_branches(probe)
    finally:
        block.train(was_training)
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


class ConvBN(nn.Sequential):
    """Conv (no bias) + switchable BN, with 'same' padding for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=False)
        self.bn = SwitchableBatchNorm2d(out_channels)

    def fused(self) -> tuple[Tensor, Tensor]:
        kernel, bias = fuse_conv_bn(self.conv.weight, self.bn)
        return pad_to_3x3(kernel), bias


class RepVGGBlock(ReparamBlock):
    """RepVGG: 3x3 conv+BN, 1x1 conv+BN and (when in == out) an identity BN."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        self.dense = ConvBN(in_channels, self.out_channels, (3, 3))
        self.pointwise = ConvBN(in_channels, self.out_channels, (1, 1))
        self.identity_bn = SwitchableBatchNorm2d(in_channels) if in_channels == self.out_channels else None

    def forward_branches(self, x: Tensor) -> Tensor:
        out = self.dense(x) + self.pointwise(x)
        return out + self.identity_bn(x) if self.identity_bn is not None else out

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        (k1, b1), (k2, b2) = self.dense.fused(), self.pointwise.fused()
        kernel, bias = k1 + k2, b1 + b2
        if self.identity_bn is not None:
            k3, b3 = fuse_conv_bn(identity_kernel(self.in_channels, k1), self.identity_bn)
            kernel, bias = kernel + k3, bias + b3
        return kernel, bias


class ACBlock(ReparamBlock):
    """ACNet's asymmetric convolution block: 3x3, 1x3 and 3x1 convs, each with BN."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        self.square = ConvBN(in_channels, self.out_channels, (3, 3))
        self.horizontal = ConvBN(in_channels, self.out_channels, (1, 3))
        self.vertical = ConvBN(in_channels, self.out_channels, (3, 1))

    def forward_branches(self, x: Tensor) -> Tensor:
        return self.square(x) + self.horizontal(x) + self.vertical(x)

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        parts = [b.fused() for b in (self.square, self.horizontal, self.vertical)]
        return sum(k for k, _ in parts), sum(b for _, b in parts)


def pad_with_values(x: Tensor, values: Tensor) -> Tensor:
    """Pad by one pixel filled with a per-channel value (a 1x1 layer's bias, or BN's image of 0).

    A following unpadded 3x3 then equals one 3x3 conv with zero padding of the block input, at the
    borders too: what makes 1x1 -> 3x3 sequences (DBB, ECB) merge exactly.
    """
    out = F.pad(x, (1, 1, 1, 1))
    border = torch.ones_like(out)
    border[:, :, 1:-1, 1:-1] = 0
    return out + border * values[None, :, None, None]


class BNAndPad(SwitchableBatchNorm2d):
    """BN, then a 1-pixel border filled with what BN makes of a zero input (DBB's BNAndPadLayer).

    Padding with that value instead of 0 makes a following 3x3 (or avg-pool) without padding equal
    a single 3x3 conv with zero padding of the block input, at the borders too.
    """

    def forward(self, x: Tensor) -> Tensor:
        return pad_with_values(super().forward(x), bn_scale_shift(self)[1])


class DBBlock(ReparamBlock):
    """Diverse Branch Block: 3x3+BN; 1x1+BN; 1x1+BN -> avg-pool 3x3 -> BN; 1x1 (identity init)+BN -> 3x3 -> BN."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        c_in, c_out = in_channels, self.out_channels
        self.origin = ConvBN(c_in, c_out, (3, 3))
        self.pointwise = ConvBN(c_in, c_out, (1, 1))
        self.avg_conv = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.avg_pad = BNAndPad(c_out)
        self.avg_bn = SwitchableBatchNorm2d(c_out)
        self.seq_conv1 = nn.Conv2d(c_in, c_in, 1, bias=False)
        nn.init.dirac_(self.seq_conv1.weight)  # starts as identity, as in DBB
        self.seq_pad = BNAndPad(c_in)
        self.seq_conv3 = nn.Conv2d(c_in, c_out, 3, bias=False)
        self.seq_bn = SwitchableBatchNorm2d(c_out)

    def forward_branches(self, x: Tensor) -> Tensor:
        out = self.origin(x) + self.pointwise(x)
        out = out + self.avg_bn(F.avg_pool2d(self.avg_pad(self.avg_conv(x)), 3, stride=1))
        return out + self.seq_bn(self.seq_conv3(self.seq_pad(self.seq_conv1(x))))

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        return impulse_kernel_bias(self, self.in_channels, self.origin.conv.weight)


class ECBlock(ReparamBlock):
    """ECBSR's edge-oriented block: 3x3; 1x1 -> 3x3 (x2 expand); 1x1 -> scaled Sobel-x, Sobel-y and
    Laplacian (depthwise); optional identity. No BN; each 1x1 output is padded with its bias."""

    MASKS = {
        "sobel_x": [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]],
        "sobel_y": [[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]],
        "laplacian": [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
    }

    def __init__(self, in_channels: int, out_channels: int | None = None, depth_multiplier: int = 2,
                 identity: bool = False) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        c_in, c_out = in_channels, self.out_channels
        self.identity = identity and c_in == c_out
        self.conv3x3 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.expand = nn.Conv2d(c_in, depth_multiplier * c_out, 1)
        self.squeeze = nn.Conv2d(depth_multiplier * c_out, c_out, 3)
        self.edge_convs = nn.ModuleDict({name: nn.Conv2d(c_in, c_out, 1) for name in self.MASKS})
        self.edge_scales = nn.ParameterDict({name: nn.Parameter(torch.randn(c_out) * 1e-3) for name in self.MASKS})
        self.edge_biases = nn.ParameterDict({name: nn.Parameter(torch.randn(c_out) * 1e-3) for name in self.MASKS})
        for name, mask in self.MASKS.items():
            self.register_buffer(f"mask_{name}", torch.tensor(mask).expand(c_out, 1, 3, 3).clone())

    def forward_branches(self, x: Tensor) -> Tensor:
        out = self.conv3x3(x) + self.squeeze(pad_with_values(self.expand(x), self.expand.bias))
        for name, conv in self.edge_convs.items():
            kernel = getattr(self, f"mask_{name}") * self.edge_scales[name][:, None, None, None]
            mid = pad_with_values(conv(x), conv.bias)
            out = out + F.conv2d(mid, kernel, self.edge_biases[name], groups=self.out_channels)
        return out + x if self.identity else out

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        return impulse_kernel_bias(self, self.in_channels, self.conv3x3.weight)


@contextlib.contextmanager
def branch_forward(model: nn.Module) -> Iterator[nn.Module]:
    """Run every block through its branches, each as its own module: no online merge, no path fusion.

    The reference for merge checks, and what FLOP counters and "training network" timings should see.
    """
    blocks = [m for m in model.modules() if isinstance(m, ReparamBlock)]
    saved = [(b.online_merge, b.__dict__.get("fuse_paths")) for b in blocks]
    for b in blocks:
        b.online_merge = False
        if hasattr(b, "fuse_paths"):
            b.fuse_paths = False
    try:
        yield model
    finally:
        for b, (online, fuse) in zip(blocks, saved, strict=True):
            b.online_merge = online
            if fuse is None:
                b.__dict__.pop("fuse_paths", None)
            else:
                b.fuse_paths = fuse


BLOCKS: dict[str, Callable[..., ReparamBlock]] = {
    "repsr": RepSRBlock,
    "plain": PlainBlock,
    "repvgg": RepVGGBlock,
    "acb": ACBlock,
    "dbb": DBBlock,
    "ecb": ECBlock,
    # RepSR ablation variants (the BN switch itself is a training option: train.bn.switch)
    "repsr_nobn": partial(RepSRBlock, use_bn=False),
    "repsr_noidentity": partial(RepSRBlock, identity=False),
    "repsr_x1": partial(RepSRBlock, expand=1),
    "repsr_x4": partial(RepSRBlock, expand=4),
}


def build_block(name: str, in_channels: int, out_channels: int | None = None, **options) -> ReparamBlock:
    """Build a block by its name in :data:`BLOCKS`."""
    try:
        factory = BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown block {name!r}; known blocks: {', '.join(sorted(BLOCKS))}") from None
    return factory(in_channels, out_channels, **options)



def block_options(name: str) -> set[str]:
    """The keyword options a block accepts besides its channels (fixed by a variant name: not offered)."""
    factory = BLOCKS[name]
    fixed = set(factory.keywords) if isinstance(factory, partial) else set()
    params = inspect.signature(factory).parameters
    return {p for p in params if p not in ("in_channels", "out_channels") and p not in fixed}
