"""Classic efficient SR networks, written from their papers' descriptions, for timing with random weights.

Each module's docstring names the paper and the published size it reproduces; ``tests/test_peers.py`` checks
the parameter and MAC counts against the published ones. These are benchmark subjects, not networks repsr
trains: the inputs are RGB in [0, 1] and there is no mean shift or other preprocessing that does not cost time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv(cin: int, cout: int, k: int = 3, groups: int = 1, stride: int = 1, padding: int | None = None) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups)


class FSRCNN(nn.Module):
    """FSRCNN (Dong, Loy, Tang, ECCV 2016), d=56, s=12, m=4: feature extraction 5x5, shrinking 1x1, four 3x3 mapping
    layers, expanding 1x1 (PReLU after each), and a 9x9 transposed convolution of stride ``scale``. RGB x4: 24.68K
    parameters, as ETDS (CVPR 2023) retrained it."""

    def __init__(self, scale: int = 4, channels: int = 3, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        layers = [conv(channels, d, 5), nn.PReLU(d), conv(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [conv(s, s, 3), nn.PReLU(s)]
        layers += [conv(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = nn.ConvTranspose2d(d, channels, 9, scale, 4, output_padding=scale - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.deconv(self.body(x))


class _EResidualBlock(nn.Module):
    """CARN-M's efficient residual block: group conv 3x3, ReLU, group conv 3x3, ReLU, conv 1x1, plus the input."""

    def __init__(self, c: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(c, c, 3, groups), nn.ReLU(True), conv(c, c, 3, groups), nn.ReLU(True),
                                  conv(c, c, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + x)


class _Cascade(nn.Module):
    """Cascading: each of three blocks' output is concatenated with everything before it and fused by a 1x1 conv
    and ReLU. ``shared``: one block's weights serve all three (CARN-M's local cascade)."""

    def __init__(self, c: int, make, shared: bool) -> None:
        super().__init__()
        first = make()
        self.blocks = nn.ModuleList([first] if shared else [first, make(), make()])
        self.fuse = nn.ModuleList(conv(c * (i + 2), c, 1) for i in range(3))

    def forward(self, x: Tensor) -> Tensor:
        features, out = [x], x
        for i, fuse in enumerate(self.fuse):
            features.append(self.blocks[i % len(self.blocks)](out))
            out = F.relu(fuse(torch.cat(features, 1)))
        return out


class _Upsampler(nn.Sequential):
    """Sub-pixel upsampling: (group conv 3x3 to 4c or 9c, ReLU, pixel shuffle) once per factor 2 or 3."""

    def __init__(self, c: int, scale: int, groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = []
        factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
        for f in factors:
            layers += [conv(c, c * f * f, 3, groups)] + ([nn.ReLU(True)] if relu else []) + [nn.PixelShuffle(f)]
        super().__init__(*layers)


class CARNM(nn.Module):
    """CARN-M (Ahn, Kang, Sohn, ECCV 2018): entry conv, three cascading blocks of one shared efficient residual
    block (group conv, 4 groups), global cascading, group-conv sub-pixel upsampling, exit conv. As published, one
    network holds the x2, x3 and x4 upsamplers (412K parameters); only the one for ``scale`` runs."""

    def __init__(self, scale: int = 4, channels: int = 3, c: int = 64, groups: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.entry = conv(channels, c)
        self.body = _Cascade(c, lambda: _Cascade(c, lambda: _EResidualBlock(c, groups), shared=True), shared=False)
        self.upsample = nn.ModuleDict({str(s): _Upsampler(c, s, groups) for s in (2, 3, 4)})
        self.exit = conv(c, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.exit(self.upsample[str(self.scale)](self.body(self.entry(x))))


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(c, c), nn.ReLU(True), conv(c, c))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class EDSRBaseline(nn.Module):
    """EDSR-baseline (Lim et al., CVPRW 2017): 16 residual blocks of 64 channels without BN, a long skip, and
    sub-pixel upsampling: 1.52M parameters at x4."""

    def __init__(self, scale: int = 4, channels: int = 3, c: int = 64, blocks: int = 16) -> None:
        super().__init__()
        self.head = conv(channels, c)
        self.body = nn.Sequential(*(_ResBlock(c) for _ in range(blocks)), conv(c, c))
        self.tail = nn.Sequential(_Upsampler(c, scale, relu=False), conv(c, channels))

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        return self.tail(x + self.body(x))
