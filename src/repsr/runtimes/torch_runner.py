"""PyTorch: any network on any device and precision, with the fused image path for Compact networks."""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..images import PEAKS
from .base import Runner, clip_round_, image_dtype_of, nan_error

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}


def _shuffle_order(channels: int, scale: int, device: torch.device) -> Tensor:
    """Tail conv output channels in (row, column, channel) order: PixelShuffle's output is then a copy of whole
    ``scale * channels`` runs (in PyTorch's (channel, row, column) order it is a copy of single values)."""
    return torch.arange(channels * scale * scale, device=device).view(channels, scale, scale).permute(1, 2, 0).flatten()


def _replicate(channels: int, scale: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The (C, s*s*C) 0/1 matrix taking a pixel's C values to its s*s sub-pixels in (row, column, channel) order."""
    return torch.eye(channels, dtype=dtype, device=device).repeat(1, scale * scale)


class TorchRunner(Runner):
    """A copy of the network on ``device`` in ``precision``, eval mode, channels_last (cuDNN autotuning on a GPU:
    tiles repeat the same shapes)."""

    backend = "torch"

    def __init__(self, network: nn.Module, device: torch.device, precision: str = "fp32") -> None:
        super().__init__(network, device, precision)
        self.dtype = PRECISIONS[precision]
        self.net = copy.deepcopy(network).to(device=device, dtype=self.dtype).eval()
        self.net = self.net.to(memory_format=torch.channels_last)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def auto_tile(self, h: int, w: int, element_size: int | None = None) -> int:
        return super().auto_tile(h, w, element_size or torch.empty((), dtype=self.dtype).element_size())

    @torch.inference_mode()
    def floats(self, x: Tensor) -> Tensor:
        y = self.net(x.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last))
        if not torch.isfinite(y).all():
            raise nan_error(self.precision)
        return y.float().cpu()

    @torch.inference_mode()
    def images(self, tiles: np.ndarray) -> np.ndarray:
        """The network followed by the clip and round, value for value, in fewer passes: the input is divided by
        the peak in float32 and cast to the network's dtype; the tail conv's output channels are reordered (its
        weight rows permuted: the same dot products) so that its channels_last output is (N, H, W, row, column,
        channel); the nearest-upsampled input is added in that layout (one GEMM with a 0/1 matrix: exactly y + x);
        the clip and round run on the device, and the pixel shuffle moves the rounded values (a quarter of the
        bytes for uint8) into the output's layout in one copy."""
        n, h, w, c = tiles.shape
        s, device, dtype = self.scale, self.device, self.dtype
        t = torch.from_numpy(np.ascontiguousarray(tiles)).to(device).permute(0, 3, 1, 2)  # channels_last strides
        peak = PEAKS.get(tiles.dtype)
        x = (t.div(peak) if peak is not None else t.float()).to(dtype)  # int / float divides in float32, one pass
        y = x
        *body, tail = self.net.body
        for layer in body:
            y = layer(y)
        order = _shuffle_order(c, s, device)
        y = F.conv2d(y, tail.weight[order], tail.bias[order], tail.stride, tail.padding, tail.dilation, tail.groups)
        y = y.permute(0, 2, 3, 1).reshape(n * h * w, s * s * c)  # channels_last: a view
        try:
            y.addmm_(x.permute(0, 2, 3, 1).reshape(n * h * w, c), _replicate(c, s, y.dtype, device))
        except RuntimeError:  # no GEMM for this dtype on this device (fp16 on the CPU of older PyTorch)
            y.view(n, h, w, s * s, c).add_(x.permute(0, 2, 3, 1)[:, :, :, None, :])
        y = y.float().view(n, h, w, s, s, c)
        if not torch.isfinite(y.sum()) and not torch.isfinite(y).all():  # the sum overflows only for huge values
            raise nan_error(self.precision)
        clip_round_(y, peak)
        out = torch.empty(n, h, s, w, s, c, dtype=image_dtype_of(peak), device=device)
        out.permute(0, 1, 3, 2, 4, 5).copy_(y)  # the pixel shuffle, truncating to the output dtype on the way
        out = out.view(n, h * s, w * s, c).cpu().numpy()
        return out.astype(np.uint16) if tiles.dtype == np.uint16 else out
