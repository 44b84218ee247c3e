"""The runner protocol every runtime implements, and the one clip-and-round of every path.

A :class:`Runner` is a network prepared to run: on its device, in its precision, in its runtime. It says what
tiling needs to know (scale, channels, receptive radius) and runs batches of tiles two ways: :meth:`Runner.images`
takes image tiles (uint8, uint16 or float32 HWC) to upscaled tiles in the same dtype, clipped and rounded, for a
network whose input and output channels are the tiles' (the fast path); :meth:`Runner.floats` takes float NCHW in
[0, 1] to the network's float output, unclipped (for colour conversions around the network).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor, nn

from ..archs.networks import CompactSRNet
from ..errors import RepsrError
from ..images import PEAKS

# Automatic tiling on the CPU (benchmarks/tiling_speed.py, RESULTS.md): PyTorch runs cache-sized tiles faster than
# one pass once the widest activation of one pass exceeds ~48 MB; OpenVINO and ncnn run one pass faster and tile
# only to bound memory, in large tiles, past 1 GiB. On a GPU one pass is fastest; out-of-memory halves the tile.
CPU_TILE = 320
CPU_TILE_ABOVE_BYTES = 48 * 2**20
RUNTIME_TILE = 1024
RUNTIME_TILE_ABOVE_BYTES = 2**30


def clip_round_(y: Tensor, peak: float | None) -> Tensor:
    """The clip and round of every path, in place on float32: clip to [0, 1], then for integer images scale by
    the peak and add 0.5, so that converting to the integer dtype (truncation) rounds half up as MATLAB does."""
    y.clamp_(0, 1)
    if peak is not None:
        y.mul_(peak).add_(0.5)
    return y


def image_dtype_of(peak: float | None) -> torch.dtype:
    """The torch dtype a clipped and rounded result is truncated to (int32 holds uint16 values)."""
    return {255.0: torch.uint8, 65535.0: torch.int32, None: torch.float32}[peak]


def to_image(y: Tensor, dtype: np.dtype) -> np.ndarray:
    """A float32 result (any layout) clipped, rounded and converted to the NumPy image ``dtype``."""
    peak = PEAKS.get(np.dtype(dtype))
    out = clip_round_(y, peak).to(image_dtype_of(peak)).cpu().numpy()
    return out.astype(dtype, copy=False)


def nan_error(precision: str) -> RepsrError:
    return RepsrError(f"the network produced NaN/inf values in {precision}; use --precision fp32")


def conv_radius(model: nn.Module) -> int:
    """LR pixels of context each output pixel depends on, per side (one per 3x3 conv)."""
    return sum((m.kernel_size[0] // 2) * m.dilation[0] for m in model.modules() if isinstance(m, nn.Conv2d))


class Runner(ABC):
    """A network prepared to run: what tiling needs to know about it, and batches of tiles through it."""

    backend: str  # "torch", "openvino" or "ncnn"

    def __init__(self, network: nn.Module, device: torch.device, precision: str) -> None:
        convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
        self.scale = int(network.upscale)
        self.in_channels = convs[0].in_channels
        self.out_channels = network.num_out_ch if isinstance(network, CompactSRNet) else self.in_channels
        self.radius = conv_radius(network)
        self.widest = max(m.out_channels for m in convs)
        self.device, self.precision = device, precision
        self.compact = isinstance(network, CompactSRNet)

    def fused(self, channels: int) -> bool:
        """Whether :meth:`images` runs this network on tiles of ``channels`` channels (a Compact network whose input
        and output have that many)."""
        return self.compact and self.in_channels == self.out_channels == channels

    @abstractmethod
    def images(self, tiles: np.ndarray) -> np.ndarray:
        """(N, H, W, C) tiles (uint8, uint16 or float32) -> (N, sH, sW, C) in their dtype, clipped and rounded;
        NaN/inf raise :func:`nan_error`."""

    @abstractmethod
    def floats(self, x: Tensor) -> Tensor:
        """(N, C, H, W) float32 on the CPU -> the network's float32 output on the CPU (unclipped)."""

    def auto_tile(self, h: int, w: int, element_size: int = 4) -> int:
        """The tile size that runs an ``h x w`` input fastest here (0: one pass)."""
        if self.device.type != "cpu":
            return 0
        activation = h * w * self.widest * element_size
        limit, tile = (CPU_TILE_ABOVE_BYTES, CPU_TILE) if self.backend == "torch" else \
            (RUNTIME_TILE_ABOVE_BYTES, RUNTIME_TILE)
        return tile if activation > limit else 0
