"""Blur kernels of the real-world degradation model (Real-ESRGAN, ICCVW 2021, Sec. 3.2), from their formulas.

Every kernel is a float64 ``size x size`` array (odd size) that sums to 1. With C the pixel offset from
the centre and Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T, q = C^T Sigma^-1 C:

- Gaussian: exp(-q / 2); isotropic when sigma_x = sigma_y;
- generalized Gaussian: exp(-q^beta / 2) (beta = 1 is the Gaussian; larger beta, flatter top, sharper fall);
- plateau: 1 / (1 + q^beta);
- sinc (circular low-pass with cut-off omega_c): omega_c J1(omega_c r) / (2 pi r), omega_c^2 / (4 pi) at r = 0,
  which imitates ringing and overshoot.
"""

from __future__ import annotations

import functools
import math

import numpy as np

MAX_KERNEL_SIZE = 21  # the largest blur kernel of the published model


def bessel_j1(x: np.ndarray, points: int = 128) -> np.ndarray:
    """Bessel function of the first kind, order 1, from Bessel's integral
    J1(x) = (1/pi) int_0^pi cos(t - x sin t) dt (the midpoint rule on a periodic integrand: exact to rounding
    for |x| below ``points``; sinc kernels reach |x| < 15 pi). NumPy has no J1; SciPy is no dependency of repsr."""
    x = np.asarray(x, dtype=np.float64)
    t = (np.arange(points) + 0.5) * (math.pi / points)  # midpoints: the same accuracy, no end weights
    return np.cos(t - x[..., None] * np.sin(t)).mean(axis=-1)


@functools.cache
def _offsets(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Column (x) and row (y) offsets from the centre of a ``size x size`` grid (read-only, cached)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    half = size // 2
    ax = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy = np.repeat(ax[None, :], size, axis=0), np.repeat(ax[:, None], size, axis=1)
    xx.flags.writeable = yy.flags.writeable = False
    return xx, yy


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """q = C^T Sigma^-1 C at every offset C = (x, y) of a ``size x size`` grid."""
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"sigmas must be positive, got {sigma_x} and {sigma_y}")
    xx, yy = _offsets(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy  # the offset in the kernel's own axes
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalized(k: np.ndarray) -> np.ndarray:
    return k / k.sum()


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """An (anisotropic) Gaussian kernel; ``sigma_y=None`` makes it isotropic."""
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(np.exp(-0.5 * q))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                                beta: float = 1.0) -> np.ndarray:
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(np.exp(-0.5 * q**beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0,
                   beta: float = 1.0) -> np.ndarray:
    q = _quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    return _normalized(1.0 / (1.0 + q**beta))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """A circular low-pass (2-D sinc) kernel with cut-off frequency ``cutoff`` in radians per pixel (0, pi]."""
    if not 0 < cutoff <= math.pi + 1e-12:
        raise ValueError(f"cutoff must be in (0, pi], got {cutoff}")
    xx, yy = _offsets(size)
    r2, where = np.unique(xx**2 + yy**2, return_inverse=True)  # J1 once per distinct radius
    r = np.sqrt(np.maximum(r2, 1.0))
    values = np.where(r2 == 0, cutoff**2 / (4 * math.pi), cutoff * bessel_j1(cutoff * r) / (2 * math.pi * r))
    return _normalized(values[where].reshape(size, size))


def pad_kernel(kernel: np.ndarray, size: int = MAX_KERNEL_SIZE) -> np.ndarray:
    """``kernel`` zero-padded to ``size x size``, centred (filtering with it is unchanged)."""
    pad = (size - kernel.shape[0]) // 2
    if pad < 0 or kernel.shape[0] != kernel.shape[1] or (size - kernel.shape[0]) % 2:
        raise ValueError(f"cannot pad a {kernel.shape} kernel to {size}x{size}")
    out = np.zeros((size, size))
    out[pad : size - pad, pad : size - pad] = kernel
    return out


def identity_kernel(size: int = 1) -> np.ndarray:
    k = np.zeros((size, size))
    k[size // 2, size // 2] = 1.0
    return k
