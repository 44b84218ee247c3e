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

from .bn import SwitchableBatchNorm2d, bn_affine
from .modes import eval_mode
from .patch_moments import patch_moments


def bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """The per-channel affine map ``x * scale + shift`` of a BN at its running statistics."""
    return bn_affine(bn.running_mean, torch.rsqrt(bn.running_var + bn.eps), bn.weight, bn.bias)


def identity_kernel(channels: int, like: Tensor) -> Tensor:
    """A 3x3 kernel that passes each channel through unchanged."""
    eye = torch.eye(channels, dtype=like.dtype, device=like.device)
    return F.pad(eye[:, :, None, None], (1, 1, 1, 1))


class ReparamBlock(nn.Module):
    """Base class: a block that computes a 3x3 conv (in_channels -> out_channels, padding 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be positive, got {in_channels} -> {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reparam_conv: nn.Conv2d | None = None
        self.online_merge = True  # run one conv with a merged kernel whenever that is exact (online_kernel_bias)

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
        if self.online_merge:
            merged = self.online_kernel_bias(x)
            if merged is not None:
                return F.conv2d(x, *merged, padding=1)
        return self.forward_branches(x)

    def online_kernel_bias(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        """The kernel and bias one conv can compute this forward with exactly, or None (run the branches).

        OREPA/SESR-style: whenever the block is linear its merged kernel is the same function in
        one conv, and the branch parameters still receive their gradients through it.
        """
        return self.get_equivalent_kernel_bias() if self.is_linear() else None

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
        bns = [p.bn for p in self.paths]
        if bns[0] is None:
            return self._merge(self._joined_paths(), None, None)
        # all paths' channels at once: a few ops per training step instead of a few per BN
        inv_std = torch.rsqrt(torch.cat([bn.running_var + bn.eps for bn in bns]))
        mean = torch.cat([bn.running_mean for bn in bns])
        return self._merge(self._joined_paths(), *self._bn_scale_shift(mean, inv_std))

    def _bn_scale_shift(self, mean: Tensor, inv_std: Tensor) -> tuple[Tensor, Tensor]:
        """The BNs of all paths as one per-channel map ``z * scale + shift``, given their statistics."""
        bns = [p.bn for p in self.paths]
        if not bns[0].affine:
            return bn_affine(mean, inv_std, None, None)
        weight = torch.cat([bn.weight for bn in bns]).to(inv_std.dtype)
        return bn_affine(mean, inv_std, weight, torch.cat([bn.bias for bn in bns]).to(inv_std.dtype))

    def online_kernel_bias(self, x: Tensor) -> tuple[Tensor, Tensor] | None:
        merged = super().online_kernel_bias(x)
        if merged is None and self._batch_moments_apply(x):
            merged = self._batch_kernel_bias(x)
        return merged

    def _joined_paths(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The paths as one: expand convs concatenated along outputs ``(M, C, 3, 3)`` with their biases,
        squeeze convs along inputs ``(C, M)`` with their summed biases."""
        return (torch.cat([p.expand.weight for p in self.paths]), torch.cat([p.expand.bias for p in self.paths]),
                torch.cat([p.squeeze.weight[:, :, 0, 0] for p in self.paths], dim=1),
                sum(p.squeeze.bias for p in self.paths))

    def _merge(self, joined: tuple[Tensor, Tensor, Tensor, Tensor], scale: Tensor | None, shift: Tensor | None
               ) -> tuple[Tensor, Tensor]:
        """The block as one 3x3 conv, given its :meth:`_joined_paths` and the per-channel affine map of
        its BNs over all paths' hidden channels (None: no BN); the sum of the paths is one product."""
        expand, expand_bias, squeeze, squeeze_bias = joined
        if scale is not None:  # BN between expand and squeeze: into the squeeze conv
            squeeze_bias = squeeze_bias + squeeze @ (expand_bias * scale + shift)
            squeeze = squeeze * scale
        else:
            squeeze_bias = squeeze_bias + squeeze @ expand_bias
        kernel = torch.einsum("om,mihw->oihw", squeeze, expand)
        if self.identity:
            kernel = kernel + identity_kernel(self.out_channels, kernel)
        return kernel, squeeze_bias

    # Below this width the patch-moment bookkeeping costs more than the hidden features it saves
    # (2-core CPU, one block forward+backward, batch 16 of 32x32: 0.85x at C=16, 1.38x at 32, 1.58x at 64).
    batch_merge_min_channels = 32

    def _batch_moments_apply(self, x: Tensor) -> bool:
        """The batch phase can run as one conv when every BN is a plain batch-statistics BN: not observed
        by hooks (recompute_population_stats watches the hidden features) and sharing eps."""
        bns = [p.bn for p in self.paths]
        if bns[0] is None or x.shape[1] < self.batch_merge_min_channels:
            return False
        if x.numel() // x.shape[1] <= 1:  # one value per channel: let BN raise its usual error
            return False
        return (all(isinstance(bn, SwitchableBatchNorm2d) and bn.uses_batch_stats() and bn.track_running_stats
                    and not bn._forward_pre_hooks and not bn._forward_hooks for bn in bns)
                and len({(bn.eps, bn.affine) for bn in bns}) == 1)

    def _batch_kernel_bias(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Batch-phase merge: BN statistics of the hidden channels from the input's patch moments.

        Same function and gradients as the paths with mini-batch BN (tests check it), but no
        r*C-wide features: the statistics cost a 5x5 autocorrelation, the output one 3x3 conv.
        """
        bns = [p.bn for p in self.paths]
        with torch.autocast(x.device.type, enabled=False):
            # statistics in at least float32, whatever autocast runs the convs in
            xm = x if x.dtype in (torch.float32, torch.float64) else x.float()
            mean_patch, cov, count = patch_moments(xm, sync=any(bn.sync for bn in bns))
            joined = self._joined_paths()
            expand, expand_bias = joined[0].flatten(1).to(xm.dtype), joined[1].to(xm.dtype)
            mean = expand @ mean_patch + expand_bias
            var = ((expand @ cov) * expand).sum(1).clamp_min(0)
            n = bns[0].num_features
            for i, bn in enumerate(bns):
                bn.update_running_stats(mean[i * n : (i + 1) * n], var[i * n : (i + 1) * n], count)
            kernel, bias = self._merge(joined, *self._bn_scale_shift(mean, torch.rsqrt(var + bns[0].eps)))
        return kernel.to(x.dtype), bias.to(x.dtype)


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
