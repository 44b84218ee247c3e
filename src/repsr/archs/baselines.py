"""The baseline block families RepSR is compared with: plain conv, RepVGG, ACNet (ACB), DBB and ECBSR.

Each merges exactly into one 3x3 conv, borders included, through the :class:`ReparamBlock` protocol.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..bn import SwitchableBatchNorm2d, bn_scale_shift
from .protocol import ReparamBlock, fuse_conv_bn, identity_kernel, impulse_kernel_bias, pad_to_3x3, pad_with_values


class PlainBlock(ReparamBlock):
    """One 3x3 conv: the baseline without re-parameterization."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__(in_channels, out_channels or in_channels)
        self.conv = nn.Conv2d(in_channels, self.out_channels, 3, padding=1)

    def forward_branches(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        return self.conv.weight, self.conv.bias


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
