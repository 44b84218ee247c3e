"""PSNR and SSIM to the BasicSR/MATLAB specification, and MATLAB's YCbCr conversion.

The protocol behind the SR literature's numbers: images rounded to uint8 levels, ``crop_border``
(= scale) pixels removed on each side *before* colour conversion, then the Y channel of MATLAB's
``rgb2ycbcr`` (BT.601 studio swing, Y in [16, 235], not rounded), in float64. SSIM is Wang et al.'s
original: 11x11 Gaussian window with sigma 1.5, only the valid region, C1 = (0.01*255)^2,
C2 = (0.03*255)^2, averaged over the map (and over channels when not on Y). Single-channel
(grayscale) images are measured on their gray values directly, as the literature does for
Set14's ``bridge``.

One implementation in torch (float64) serves NumPy images (HWC/HW, uint8 or float in [0, 1])
and torch tensors ((N)CHW floats in [0, 1]); batches give one value per image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# MATLAB rgb2ycbcr for R, G, B in [0, 1]; results on the 0..255 scale.
_YCBCR_MATRIX = torch.tensor([[65.481, 128.553, 24.966],
                              [-37.797, -74.203, 112.0],
                              [112.0, -93.786, -18.214]], dtype=torch.float64)
_YCBCR_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64)


def rgb2ycbcr(img: Tensor, y_only: bool = False) -> Tensor:
    """MATLAB ``rgb2ycbcr`` for (..., 3, H, W) RGB in [0, 1]; returns YCbCr (or Y) in [0, 1] units."""
    matrix = _YCBCR_MATRIX.to(img.device, img.dtype)
    offset = _YCBCR_OFFSET.to(img.device, img.dtype)
    if y_only:
        matrix, offset = matrix[:1], offset[:1]
    out = torch.einsum("kc,...chw->...khw", matrix, img) + offset[:, None, None]
    return out / 255.0


def ycbcr2rgb(img: Tensor) -> Tensor:
    """Inverse of :func:`rgb2ycbcr` (MATLAB ``ycbcr2rgb``) for (..., 3, H, W) in [0, 1] units."""
    inverse = torch.linalg.inv(_YCBCR_MATRIX).to(img.device, img.dtype)
    offset = _YCBCR_OFFSET.to(img.device, img.dtype)
    return torch.einsum("kc,...chw->...khw", inverse, img * 255.0 - offset[:, None, None])


def _as_batch_255(img) -> tuple[Tensor, bool]:
    """(N, C, H, W) float64 on the 0..255 scale, rounded to integer levels; and whether it was batched."""
    if isinstance(img, np.ndarray):
        arr = img if img.ndim == 3 else img[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]
        if np.issubdtype(img.dtype, np.integer):
            if img.dtype != np.uint8:
                raise TypeError(f"integer images must be uint8, got {img.dtype}")
            return t.to(torch.float64), False
        return (t.to(torch.float64).clamp(0, 1) * 255).round(), False
    if not isinstance(img, Tensor):
        raise TypeError(f"expected a NumPy array or a torch tensor, got {type(img).__name__}")
    batched = img.ndim == 4
    t = img if batched else img[None]
    if t.ndim != 4:
        raise ValueError(f"expected a (N)CHW tensor, got shape {tuple(img.shape)}")
    return (t.detach().to(torch.float64).clamp(0, 1) * 255).round(), batched


def _prepare(sr, hr, crop_border: int, y_channel: bool, round_y: bool) -> tuple[Tensor, Tensor, bool]:
    a, batched = _as_batch_255(sr)
    b, _ = _as_batch_255(hr)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel and a.shape[1] == 3:
        a = rgb2ycbcr(a / 255.0, y_only=True) * 255.0
        b = rgb2ycbcr(b / 255.0, y_only=True) * 255.0
        if round_y:  # MATLAB's rgb2ycbcr on uint8 images returns rounded uint8 Y
            a, b = (a + 0.5).floor(), (b + 0.5).floor()
    return a, b, batched


def _result(values: Tensor, batched: bool):
    return values if batched else float(values[0])


def psnr(sr, hr, crop_border: int, y_channel: bool = True, round_y: bool = False):
    """PSNR in dB (``inf`` for identical images), BasicSR's ``calculate_psnr`` with ``test_y_channel``.

    ``round_y=True`` rounds Y to integers first, as MATLAB evaluation scripts do (about -0.01 dB).
    """
    a, b, batched = _prepare(sr, hr, crop_border, y_channel, round_y)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    values = torch.where(mse == 0, torch.full_like(mse, math.inf), 10 * torch.log10(255.0**2 / mse))
    return _result(values, batched)


def _gaussian_window(device: torch.device) -> Tensor:
    x = torch.arange(11, dtype=torch.float64, device=device) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    return g / g.sum()


def ssim(sr, hr, crop_border: int, y_channel: bool = True, round_y: bool = False):
    """SSIM, BasicSR's ``calculate_ssim`` (11x11 Gaussian, sigma 1.5, valid region); ``round_y`` as in :func:`psnr`."""
    a, b, batched = _prepare(sr, hr, crop_border, y_channel, round_y)
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {tuple(a.shape[-2:])}")
    n, c = a.shape[:2]
    g = _gaussian_window(a.device)
    gh, gw = g.view(1, 1, 11, 1), g.view(1, 1, 1, 11)

    def blur(x: Tensor) -> Tensor:  # separable 11x11 Gaussian, valid region only
        x = x.reshape(n * c, 1, *x.shape[-2:])
        if x.device.type == "cpu":  # OpenCV's float64 filter is ~20x faster than torch's float64 conv on CPU
            k = g.numpy()
            planes = [cv2.sepFilter2D(p[0].numpy(), -1, k, k)[5:-5, 5:-5] for p in x]
            return torch.from_numpy(np.stack(planes))[:, None]
        return F.conv2d(F.conv2d(x, gh), gw)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    values = ssim_map.reshape(n, c, -1).mean(dim=2).mean(dim=1)
    return _result(values, batched)
