"""MATLAB ``imresize`` (bicubic, antialiased), the resize every SR benchmark's LR images come from.

No library matches MATLAB exactly (OpenCV and PIL use other kernels or no antialiasing; PyTorch
pads differently at borders), so this follows MATLAB's algorithm: Keys cubic kernel (a = -0.5)
widened by 1/scale when downscaling, sample positions ``u = x/scale + 0.5 (1 - 1/scale)``,
per-pixel normalized weights, symmetric (edge-including mirror) borders, output size
``ceil(in * scale)``, height first. It computes in float64 (MATLAB uses double; BasicSR's copy uses
float32) and is vectorised as banded matrix products along each axis.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=256)
def resize_weights(in_length: int, out_length: int, scale: float, antialiasing: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Weights (out, taps) and source indices (out, taps), indices already mirrored into range."""
    kernel_width = 4.0
    shrink = scale < 1 and antialiasing
    if shrink:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, as in MATLAB
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if shrink else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # Symmetric padding == mirroring indices (edge included) with period 2n.
    idx = (indices - 1).astype(np.int64) % (2 * in_length)
    idx = np.where(idx >= in_length, 2 * in_length - 1 - idx, idx)
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero tap columns
    return weights[:, keep], idx[:, keep]


_CHUNK = 64


@lru_cache(maxsize=256)
def _band_matrices(in_length: int, out_length: int, scale: float, antialiasing: bool
                   ) -> list[tuple[int, int, int, int, np.ndarray]]:
    """The resize as banded matrix products: (out0, out1, in0, in1, matrix) per chunk of outputs.

    A matrix product per chunk runs at BLAS speed and touches only the input rows the chunk needs,
    several times faster than a weighted sum per kernel tap.
    """
    weights, idx = resize_weights(in_length, out_length, scale, antialiasing)
    bands = []
    for o0 in range(0, out_length, _CHUNK):
        o1 = min(o0 + _CHUNK, out_length)
        rows = idx[o0:o1]
        lo, hi = int(rows.min()), int(rows.max()) + 1
        matrix = np.zeros((o1 - o0, hi - lo))
        np.add.at(matrix, (np.arange(o1 - o0)[:, None].repeat(rows.shape[1], 1), rows - lo), weights[o0:o1])
        bands.append((o0, o1, lo, hi, matrix))
    return bands


def output_size(in_size: tuple[int, int], scale: float) -> tuple[int, int]:
    return math.ceil(in_size[0] * scale), math.ceil(in_size[1] * scale)


def _resize_rows(x, bands, out_length: int):
    """Resize the second-to-last axis of ``x`` (NumPy array or tensor, ``(..., L, W)``)."""
    is_torch = isinstance(x, Tensor)
    shape = (*x.shape[:-2], out_length, x.shape[-1])
    out = x.new_empty(shape) if is_torch else np.empty(shape, dtype=x.dtype)
    for o0, o1, lo, hi, matrix in bands:
        m = torch.from_numpy(matrix).to(device=x.device, dtype=x.dtype) if is_torch else matrix
        out[..., o0:o1, :] = m @ x[..., lo:hi, :]
    return out


def imresize(img, scale: float | None = None, size: tuple[int, int] | None = None, antialiasing: bool = True):
    """Resize like MATLAB's ``imresize(img, scale, 'bicubic')``.

    ``img``: NumPy HW or HWC (uint8, uint16 or float), or a torch tensor (..., H, W) of floats.
    Give either ``scale`` (output ``ceil(in*scale)``) or ``size`` = (out_h, out_w). Float input
    gives unrounded float output of the same dtype (computed in float64 for NumPy and float64
    tensors, float32 otherwise); integer NumPy input is rounded and clipped back, as MATLAB does.
    """
    is_torch = isinstance(img, Tensor)
    h_axis = img.ndim - 2 if is_torch else 0
    in_h, in_w = img.shape[h_axis], img.shape[h_axis + 1]
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale and size")
    if size is None:
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        out_h, out_w = output_size((in_h, in_w), scale)
        scale_h = scale_w = float(scale)
    else:
        out_h, out_w = size
        scale_h, scale_w = out_h / in_h, out_w / in_w
    if min(in_h, in_w, out_h, out_w) < 1:
        raise ValueError(f"cannot resize {in_h}x{in_w} to {out_h}x{out_w}")
    bands_h = _band_matrices(in_h, out_h, scale_h, antialiasing)
    bands_w = _band_matrices(in_w, out_w, scale_w, antialiasing)

    def resize_hw(x):  # x: (..., H, W) -> (..., out_h, out_w); height first, as MATLAB
        x = _resize_rows(x, bands_h, out_h)
        return _resize_rows(x.swapaxes(-1, -2), bands_w, out_w).swapaxes(-1, -2)

    if is_torch:
        if not img.is_floating_point():
            raise TypeError("torch input must be a float tensor")
        return resize_hw(img if img.dtype == torch.float64 else img.float()).to(img.dtype)

    arr = np.asarray(img)
    chw = np.moveaxis(arr.astype(np.float64), -1, 0) if arr.ndim == 3 else arr.astype(np.float64)
    out = resize_hw(chw)
    out = np.ascontiguousarray(np.moveaxis(out, 0, -1) if arr.ndim == 3 else out)
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        return np.floor(np.clip(out, info.min, info.max) + 0.5).astype(arr.dtype)  # MATLAB rounds half up
    return out.astype(arr.dtype, copy=False)
