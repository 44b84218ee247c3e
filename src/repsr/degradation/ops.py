"""The degradation operations on image tensors (N, C, H, W) in [0, 1], on any device.

Randomness is passed in (a CPU ``torch.Generator`` per call), so an operation gives the same values on every
device and in every process: what makes the training stream a pure function of (seed, iteration, sample).
JPEG is real JPEG: libjpeg(-turbo) through OpenCV, on the CPU (the same bytes as Pillow's encoder, which
``benchmarks/degradation_speed.py`` times against it).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

RESIZE_MODES = ("area", "bilinear", "bicubic", "bicubic_antialias")  # the published pipeline draws the first three


def _fast_fft_size(n: int) -> int:
    """The smallest 5-smooth integer >= n (FFT sizes of only 2, 3 and 5 are the fast ones)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def filter2d(images: Tensor, kernels: Tensor) -> Tensor:
    """Convolve each image of (N, C, H, W) with its own (N, K, K) kernel (odd K), reflecting the borders
    (images no larger than K // 2 repeat their edge instead).

    A batch is one depthwise convolution. A single image with a kernel of 9 or more taps goes through the
    FFT instead (the same linear convolution of the padded image, to float rounding): 3-6x faster on a CPU
    for the per-sample blurs of the second round, whose sizes differ from sample to sample."""
    n, c, h, w = images.shape
    k = kernels.shape[-1]
    pad = k // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    padded = F.pad(images, (pad, pad, pad, pad), mode=mode)
    kernels = kernels.to(images.dtype)
    if n == 1 and k >= 9:
        size = (_fast_fft_size(h + 2 * pad), _fast_fft_size(w + 2 * pad))
        spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(kernels, s=size)[:, None]
        return torch.fft.irfft2(spectrum, s=size)[..., 2 * pad : 2 * pad + h, 2 * pad : 2 * pad + w].contiguous()
    weight = kernels[:, None].expand(n, c, k, k).reshape(n * c, 1, k, k)
    # conv2d is a correlation; flipping the kernel makes it the convolution the formulas describe
    out = F.conv2d(padded.reshape(1, n * c, h + 2 * pad, w + 2 * pad), weight.flip(-1, -2), groups=n * c)
    return out.reshape(n, c, h, w)


def resize(images: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Resize to ``size`` (H, W) with ``area``, ``bilinear`` or ``bicubic`` (half-pixel centres, no antialiasing:
    the interpolation of the published pipeline), or ``bicubic_antialias`` (a bicubic kernel widened by the
    downscale factor, like MATLAB's ``imresize`` and Pillow: how photos are usually made smaller)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}")
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if mode == "area":
        return F.interpolate(images, size=size, mode="area")
    antialias = mode == "bicubic_antialias"
    return F.interpolate(images, size=size, mode="bicubic" if antialias else mode, align_corners=False,
                         antialias=antialias)


def gaussian_noise(images: Tensor, sigma: float, gray: bool, generator: torch.Generator) -> Tensor:
    """``images`` plus N(0, sigma^2) noise (sigma in [0, 1] units); ``gray``: one noise map for every channel."""
    n, c, h, w = images.shape
    noise = torch.randn((n, 1 if gray else c, h, w), generator=generator, dtype=torch.float32)
    return images + (noise * sigma).to(images.device, images.dtype)


def _luma(images: Tensor) -> Tensor:
    """ITU-R BT.601 luma of RGB (the grayscale of Poisson gray noise); gray images are their own luma."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor([0.299, 0.587, 0.114])[:, None, None]
    return (images * weights).sum(dim=1, keepdim=True)


def poisson_noise(images: Tensor, scale: float, gray: bool, generator: torch.Generator) -> Tensor:
    """``images`` plus shot noise: with v = 2^ceil(log2(distinct 8-bit levels)), noise = Poisson(x v) / v - x,
    times ``scale``; ``gray`` draws it from the luma and adds the same map to every channel."""
    source = _luma(images) if gray else images
    levels = int(torch.bincount(torch.round(source.clamp(0, 1) * 255).flatten().long(), minlength=256)
                 .count_nonzero())
    vals = 2.0 ** math.ceil(math.log2(max(levels, 2)))
    rate = (source.clamp(0, 1) * vals).to("cpu", torch.float32)
    noisy = torch.poisson(rate, generator=generator) / vals
    noise = (noisy - rate / vals) * scale
    return images + noise.to(images.device, images.dtype)


def to_uint8(image: Tensor) -> np.ndarray:
    """One (C, H, W) image in [0, 1] as HxWxC (HxW for one channel) uint8, rounded half up."""
    arr = torch.floor(image.detach().clamp(0, 1) * 255 + 0.5).to("cpu", torch.uint8).numpy()
    return arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))


def from_uint8(arr: np.ndarray, like: Tensor) -> Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr[:, :, None] if arr.ndim == 2 else arr)).permute(2, 0, 1)
    return (t.float() / 255).to(like.device, like.dtype)


def jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG of an 8-bit RGB (or gray) image with libjpeg at ``quality`` (1-100, 4:2:0 chroma)."""
    bgr = rgb[:, :, ::-1] if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("libjpeg could not encode the image")
    return buf.tobytes()


def jpeg_roundtrip_uint8(rgb: np.ndarray, quality: int) -> np.ndarray:
    """What a JPEG file of ``rgb`` at ``quality`` decodes to (8-bit RGB or gray)."""
    decoded = cv2.imdecode(np.frombuffer(jpeg_bytes(rgb, quality), np.uint8), cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(decoded[:, :, ::-1]) if decoded.ndim == 3 else decoded


def jpeg(images: Tensor, qualities: list[int]) -> Tensor:
    """Each image of (N, C, H, W) through a JPEG file at its quality: clipped and rounded to 8 bits first,
    as a saved file is; returns the decoded images in [0, 1] on the input's device."""
    out = [from_uint8(jpeg_roundtrip_uint8(to_uint8(img), q), images) for img, q in zip(images, qualities, strict=True)]
    return torch.stack(out)


def usm_sharpen(images: Tensor, weight: float = 0.5, threshold: float = 10, radius: int = 50) -> Tensor:
    """Unsharp-mask sharpening (the sharpened HR target of Real-ESRNet): residual = image - Gaussian blur of
    size ``radius + 1`` (OpenCV's kernel of that size); where |residual| * 255 > ``threshold``
    (the mask softened by the same blur) the result is clip(image + weight * residual)."""
    size = radius + 1 if radius % 2 == 0 else radius
    line = torch.from_numpy(cv2.getGaussianKernel(size, 0)[:, 0]).to(images.device, images.dtype)

    def blur(x: Tensor) -> Tensor:  # separable, reflecting borders like cv2.GaussianBlur's default
        n, c, h, w = x.shape
        pad = size // 2
        mode = "reflect" if min(h, w) > pad else "replicate"
        y = F.pad(x, (pad, pad, pad, pad), mode=mode).reshape(1, n * c, h + 2 * pad, w + 2 * pad)
        y = F.conv2d(y, line.view(1, 1, 1, size).expand(n * c, 1, 1, size), groups=n * c)
        y = F.conv2d(y, line.view(1, 1, size, 1).expand(n * c, 1, size, 1), groups=n * c)
        return y.reshape(n, c, h, w)

    residual = images - blur(images)
    mask = (residual.abs() * 255 > threshold).to(images.dtype)
    soft = blur(mask)
    sharp = (images + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * images
