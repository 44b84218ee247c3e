"""The information-distillation family of efficient SR networks, written from their papers' descriptions, for
timing with random weights: IMDN (AIM 2019 winner), RFDN (AIM 2020 winner) and RLFN (NTIRE 2022 winner).

All three share one frame: a 3x3 feature conv, a chain of blocks, a fusion of the blocks, a 3x3 conv with a
long skip, and a 3x3 conv to 3 x scale^2 channels with a pixel shuffle. They differ in the block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .classic import conv


def lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.05)


class ContrastChannelAttention(nn.Module):
    """IMDN's contrast-aware channel attention: per-channel standard deviation plus mean, squeezed 1x1 convs."""

    def __init__(self, c: int, reduction: int = 16) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(conv(c, c // reduction, 1), nn.ReLU(True), conv(c // reduction, c, 1),
                                     nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.squeeze(mean + std)


class IMDB(nn.Module):
    """Information multi-distillation block: four 3x3 stages that each keep a quarter of the channels, a 1x1
    fusion with contrast-aware attention, plus the input."""

    def __init__(self, c: int = 64) -> None:
        super().__init__()
        self.keep, rest = c // 4, c - c // 4
        self.stages = nn.ModuleList([conv(c, c), conv(rest, c), conv(rest, c), conv(rest, self.keep)])
        self.fuse = conv(self.keep * 4, c, 1)
        self.attention = ContrastChannelAttention(self.keep * 4)

    def forward(self, x: Tensor) -> Tensor:
        kept, out = [], x
        for stage in self.stages[:-1]:
            distilled, out = torch.split(lrelu(stage(out)), (self.keep, stage.out_channels - self.keep), dim=1)
            kept.append(distilled)
        kept.append(self.stages[-1](out))
        return self.fuse(self.attention(torch.cat(kept, 1))) + x


class ESA(nn.Module):
    """Enhanced spatial attention (RFDN): 1x1 reduction, a strided conv, max-pooling (7, stride 3) and convs at low
    resolution, bilinear back up, a 1x1 expansion and a sigmoid mask. ``light`` (RLFN) drops two of the low-
    resolution convs."""

    def __init__(self, c: int, f: int, light: bool = False) -> None:
        super().__init__()
        self.reduce, self.skip = conv(c, f, 1), conv(f, f, 1)
        self.down = conv(f, f, 3, stride=2, padding=0)
        self.low = nn.ModuleList([conv(f, f)] if light else [conv(f, f), conv(f, f), conv(f, f)])
        self.expand = conv(f, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(x)
        low = F.max_pool2d(self.down(reduced), kernel_size=7, stride=3)
        for i, layer in enumerate(self.low):
            low = layer(low) if i == len(self.low) - 1 else F.relu(layer(low))
        up = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.expand(up + self.skip(reduced)))


class RFDB(nn.Module):
    """Residual feature distillation block: three stages of (1x1 distillation, 3x3 conv with its own identity),
    a last 3x3, a 1x1 fusion of the four distilled parts, and ESA."""

    def __init__(self, c: int = 50) -> None:
        super().__init__()
        d = c // 2
        self.distil = nn.ModuleList(conv(c, d, 1) for _ in range(3))
        self.refine = nn.ModuleList(conv(c, c) for _ in range(3))
        self.last = conv(c, d)
        self.fuse = conv(d * 4, c, 1)
        self.esa = ESA(c, c // 4)

    def forward(self, x: Tensor) -> Tensor:
        kept, out = [], x
        for distil, refine in zip(self.distil, self.refine, strict=True):
            kept.append(lrelu(distil(out)))
            out = lrelu(refine(out) + out)
        kept.append(lrelu(self.last(out)))
        return self.esa(self.fuse(torch.cat(kept, 1)))


class RLFB(nn.Module):
    """Residual local feature block: three 3x3 convs with one identity around them, a 1x1 conv and light ESA."""

    def __init__(self, c: int = 52, f: int = 16) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv(c, c) for _ in range(3))
        self.fuse = conv(c, c, 1)
        self.esa = ESA(c, f, light=True)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.convs:
            out = lrelu(layer(out))
        return self.esa(self.fuse(out + x))


class DistillationSR(nn.Module):
    """The shared frame. ``fuse_blocks``: IMDN and RFDN concatenate every block's output and fuse them by a 1x1
    conv and LeakyReLU; RLFN takes the last block's output."""

    def __init__(self, make_block, blocks: int, c: int, scale: int, channels: int = 3, fuse_blocks: bool = True):
        super().__init__()
        self.head = conv(channels, c)
        self.blocks = nn.ModuleList(make_block() for _ in range(blocks))
        self.fuse = conv(c * blocks, c, 1) if fuse_blocks else None
        self.body_tail = conv(c, c)
        self.upsample = nn.Sequential(conv(c, channels * scale * scale), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        head = self.head(x)
        outs, out = [], head
        for block in self.blocks:
            out = block(out)
            outs.append(out)
        if self.fuse is not None:
            out = lrelu(self.fuse(torch.cat(outs, 1)))
        return self.upsample(self.body_tail(out) + head)


def imdn(scale: int = 4) -> DistillationSR:
    """IMDN (Hui, Gao, Yang, Wang, ACM MM 2019): 6 blocks of 64 channels, 715K parameters at x4."""
    return DistillationSR(lambda: IMDB(64), 6, 64, scale)


def rfdn(scale: int = 4) -> DistillationSR:
    """RFDN (Liu, Tang, Wu, ECCVW 2020) as it won AIM 2020 and served as the NTIRE 2022/2023 baseline: 4 blocks of 50
    channels, 433K parameters at x4."""
    return DistillationSR(lambda: RFDB(50), 4, 50, scale)


def rlfn(scale: int = 4) -> DistillationSR:
    """RLFN (Kong et al., CVPRW 2022): 6 blocks of 52 channels, ESA of 16, 544K parameters at x4."""
    return DistillationSR(lambda: RLFB(52, 16), 6, 52, scale, fuse_blocks=False)
