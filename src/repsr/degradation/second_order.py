"""The second-order real-world degradation model (Real-ESRGAN, Wang et al., ICCVW 2021), for training.

From an HR patch: blur -> random resize -> noise -> JPEG, twice (the second blur with a probability), then
resize to the LR size with a final sinc filter, before or after the last JPEG (either order with probability
1/2; the paper reports that other orders twist lines). Defaults are the published x4 Real-ESRNet settings
(``../shared/docs/degradations.md`` lists them), except the sharpened HR target, which is off: repsr's models
are scored by PSNR against the unsharpened HR. Beyond the published model, a share of first-order samples
(``first_round_prob``: the HR resized to the LR size, then only the second round) and antialiased resizes
(``bicubic_antialias``) let a recipe cover photos that were made smaller properly and then degraded, and a share
of clean samples (``clean_prob``: the HR made smaller by antialiased bicubic, nothing else) keeps a model faithful
to inputs that carry no degradation.

Every random choice of a sample is drawn from ``numpy.random.default_rng([seed, SALT, epoch, index])`` (its
noise from a CPU generator seeded by that draw), so a batch is a pure function of (seed, iteration, sample),
the same on every device, in every process and after a resume. Each sample draws its own resize scales, so
one batch mixes degradations without Real-ESRGAN's pool of earlier batches (state a resume would need).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import RepsrError
from . import kernels as K
from . import ops

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
SALT = 0xDE6  # keeps the degradation draws apart from the crop and flip draws of the same (seed, epoch, index)


@dataclass
class FirstDegradation:
    """One blur -> resize -> noise -> JPEG round; ranges are [low, high], drawn uniformly."""

    blur_prob: float = 1.0
    kernel_size: list[int] = field(default_factory=lambda: [7, 21])  # odd sizes in this range, uniformly
    kernel_list: list[str] = field(default_factory=lambda: list(KERNEL_TYPES))
    kernel_prob: list[float] = field(default_factory=lambda: [0.45, 0.25, 0.12, 0.03, 0.12, 0.03])
    sinc_prob: float = 0.1  # a sinc kernel instead of the kernel_list ones
    sinc_cutoff: list[float] = field(default_factory=lambda: [0.2, 1.0])  # x pi rad/pixel, kernels of 13 and up
    sinc_cutoff_small: list[float] = field(default_factory=lambda: [1 / 3, 1.0])  # x pi, kernels below 13
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 3.0])  # pixels, per axis
    betag_range: list[float] = field(default_factory=lambda: [0.5, 4.0])  # generalized Gaussian shape
    betap_range: list[float] = field(default_factory=lambda: [1.0, 2.0])  # plateau shape
    resize_prob: list[float] = field(default_factory=lambda: [0.2, 0.7, 0.1])  # up, down, keep
    resize_range: list[float] = field(default_factory=lambda: [0.15, 1.5])
    gaussian_noise_prob: float = 0.5  # else Poisson
    noise_range: list[float] = field(default_factory=lambda: [1.0, 30.0])  # Gaussian sigma, of 255
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 3.0])
    gray_noise_prob: float = 0.4
    jpeg_range: list[int] = field(default_factory=lambda: [30, 95])


@dataclass
class SecondDegradation(FirstDegradation):
    """The second round: its resize is relative to the final LR size."""

    blur_prob: float = 0.8
    blur_sigma: list[float] = field(default_factory=lambda: [0.2, 1.5])
    resize_prob: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.3])
    resize_range: list[float] = field(default_factory=lambda: [0.3, 1.2])
    noise_range: list[float] = field(default_factory=lambda: [1.0, 25.0])
    poisson_scale_range: list[float] = field(default_factory=lambda: [0.05, 2.5])


@dataclass
class DegradationConfig:
    """``data.train.degradation``: the LR of each training patch made from its HR by the second-order model."""

    first: FirstDegradation = field(default_factory=FirstDegradation)
    second: SecondDegradation = field(default_factory=SecondDegradation)
    # else a first-order sample: the HR is resized to the LR size (with the first round's resize mode) and only
    # the second round degrades it, at the LR scale: how a photo is made smaller and then compressed or filtered
    first_round_prob: float = 1.0
    # a clean sample: the LR is the HR made smaller by antialiased bicubic (the benchmarks' MATLAB-style LR), with
    # no blur, noise or JPEG, so that the model does not sharpen or smooth an input that needs neither
    clean_prob: float = 0.0
    resize_modes: list[str] = field(default_factory=lambda: list(ops.RESIZE_MODES[:3]))  # drawn uniformly per resize
    final_sinc_prob: float = 0.8
    final_sinc_size: list[int] = field(default_factory=lambda: [7, 21])
    final_sinc_cutoff: list[float] = field(default_factory=lambda: [1 / 3, 1.0])  # x pi rad/pixel
    jpeg_last_prob: float = 0.5  # resize + sinc, then JPEG; else JPEG, then resize + sinc
    sharpen_target: bool = False  # train against an unsharp-masked HR (Real-ESRNet's gt_usm)

    def check(self, key: str) -> None:
        """Raise a one-line :class:`RepsrError` naming the first bad value under ``key``."""
        def require(ok: bool, name: str, message: str) -> None:
            if not ok:
                raise RepsrError(f"config key {key}.{name}: {message}")

        def check_range(name: str, value: list, low: float, high: float) -> None:
            require(len(value) == 2 and low <= value[0] <= value[1] <= high, name,
                    f"must be [low, high] with {low:g} <= low <= high <= {high:g}, got {value}")

        def check_prob(name: str, value: float) -> None:
            require(0 <= value <= 1, name, f"must be a probability in [0, 1], got {value}")

        def check_sizes(name: str, value: list[int]) -> None:
            check_range(name, value, 1, K.MAX_KERNEL_SIZE)
            require(any(s % 2 for s in range(value[0], value[1] + 1)), name, "holds no odd kernel size")

        for stage_name in ("first", "second"):
            s: FirstDegradation = getattr(self, stage_name)
            p = f"{stage_name}."
            for name in ("blur_prob", "sinc_prob", "gaussian_noise_prob", "gray_noise_prob"):
                check_prob(p + name, getattr(s, name))
            check_sizes(p + "kernel_size", s.kernel_size)
            unknown = [k for k in s.kernel_list if k not in KERNEL_TYPES]
            require(not unknown and s.kernel_list, p + "kernel_list",
                    f"unknown kernel {unknown[0] if unknown else 'list (empty)'}; known: {', '.join(KERNEL_TYPES)}")
            require(len(s.kernel_prob) == len(s.kernel_list) and all(v >= 0 for v in s.kernel_prob)
                    and abs(sum(s.kernel_prob) - 1) < 1e-6, p + "kernel_prob",
                    "needs one non-negative probability per kernel_list entry, summing to 1")
            for name in ("sinc_cutoff", "sinc_cutoff_small"):
                check_range(p + name, getattr(s, name), 1e-3, 1)
            for name in ("blur_sigma", "betag_range", "betap_range", "resize_range", "noise_range",
                         "poisson_scale_range"):
                check_range(p + name, getattr(s, name), 1e-6, 1e6)
            require(len(s.resize_prob) == 3 and all(v >= 0 for v in s.resize_prob)
                    and abs(sum(s.resize_prob) - 1) < 1e-6, p + "resize_prob",
                    "must be three probabilities (up, down, keep) summing to 1")
            check_range(p + "jpeg_range", s.jpeg_range, 1, 100)
        unknown = [m for m in self.resize_modes if m not in ops.RESIZE_MODES]
        require(bool(self.resize_modes) and not unknown, "resize_modes",
                f"must be a non-empty list of {', '.join(ops.RESIZE_MODES)}")
        check_prob("first_round_prob", self.first_round_prob)
        check_prob("clean_prob", self.clean_prob)
        check_prob("final_sinc_prob", self.final_sinc_prob)
        check_prob("jpeg_last_prob", self.jpeg_last_prob)
        check_sizes("final_sinc_size", self.final_sinc_size)
        check_range("final_sinc_cutoff", self.final_sinc_cutoff, 1e-3, 1)


# ----------------------------------------------------------------------------- one sample's draws

@dataclass
class Noise:
    kind: str  # "gaussian" (amount: sigma in [0, 1] units) or "poisson" (amount: scale)
    amount: float
    gray: bool


@dataclass
class RoundParams:
    kernel: np.ndarray | None  # odd-sized, or None when this round does not blur
    kernel_type: str | None  # a KERNEL_TYPES name, "sinc", or None
    resize: float  # first round: of the input size; second round: of the final LR size
    resize_mode: str
    noise: Noise
    jpeg_quality: int


@dataclass
class SampleParams:
    """Every random choice of one sample's degradation."""

    first: RoundParams
    second: RoundParams
    jpeg_last: bool
    final_mode: str
    final_kernel: np.ndarray  # a sinc kernel, or the 1x1 identity
    noise_seed: int
    first_round: bool = True  # False: the HR resized to the LR size goes into the second round
    clean: bool = False  # True: the LR is the HR made smaller by antialiased bicubic, nothing else


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _odd_size(rng: np.random.Generator, bounds: Sequence[int]) -> int:
    return int(rng.choice([s for s in range(bounds[0], bounds[1] + 1) if s % 2]))


def draw_kernel(rng: np.random.Generator, s: FirstDegradation) -> tuple[np.ndarray, str]:
    """A blur kernel of round ``s`` (at its own size) and its type."""
    size = _odd_size(rng, s.kernel_size)
    if rng.uniform() < s.sinc_prob:
        cutoff = _uniform(rng, s.sinc_cutoff_small if size < 13 else s.sinc_cutoff) * math.pi
        return K.sinc_kernel(size, cutoff), "sinc"
    kind = str(rng.choice(s.kernel_list, p=s.kernel_prob))
    sigma_x = _uniform(rng, s.blur_sigma)
    if kind.endswith("aniso"):
        sigma_y, theta = _uniform(rng, s.blur_sigma), _uniform(rng, (-math.pi, math.pi))
    else:
        sigma_y, theta = sigma_x, 0.0
    if kind.startswith("generalized"):
        kernel = K.generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _uniform(rng, s.betag_range))
    elif kind.startswith("plateau"):
        kernel = K.plateau_kernel(size, sigma_x, sigma_y, theta, _uniform(rng, s.betap_range))
    else:
        kernel = K.gaussian_kernel(size, sigma_x, sigma_y, theta)
    return kernel, kind


def _draw_round(rng: np.random.Generator, s: FirstDegradation, modes: list[str]) -> RoundParams:
    kernel, kind = draw_kernel(rng, s) if rng.uniform() < s.blur_prob else (None, None)
    direction = rng.choice(3, p=s.resize_prob)
    low, high = s.resize_range
    scale = (_uniform(rng, (1, max(1.0, high))) if direction == 0 else
             _uniform(rng, (low, min(1.0, high))) if direction == 1 else 1.0)
    mode = str(rng.choice(modes))
    gray = bool(rng.uniform() < s.gray_noise_prob)
    if rng.uniform() < s.gaussian_noise_prob:
        noise = Noise("gaussian", _uniform(rng, s.noise_range) / 255, gray)
    else:
        noise = Noise("poisson", _uniform(rng, s.poisson_scale_range), gray)
    quality = int(rng.integers(s.jpeg_range[0], s.jpeg_range[1] + 1))
    return RoundParams(kernel, kind, scale, mode, noise, quality)


def draw_params(rng: np.random.Generator, config: DegradationConfig) -> SampleParams:
    """Every random choice of one sample, in a fixed order from ``rng``."""
    first = _draw_round(rng, config.first, config.resize_modes)
    second = _draw_round(rng, config.second, config.resize_modes)
    jpeg_last = bool(rng.uniform() < config.jpeg_last_prob)
    final_mode = str(rng.choice(config.resize_modes))
    if rng.uniform() < config.final_sinc_prob:
        size = _odd_size(rng, config.final_sinc_size)
        final = K.sinc_kernel(size, _uniform(rng, config.final_sinc_cutoff) * math.pi)
    else:
        final = K.identity_kernel(1)
    noise_seed = int(rng.integers(2**62))
    first_round = bool(rng.uniform() < config.first_round_prob)  # drawn after the published stream: unchanged
    clean = bool(rng.uniform() < config.clean_prob) if config.clean_prob else False
    return SampleParams(first, second, jpeg_last, final_mode, final, noise_seed, first_round, clean)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of training sample (epoch, index): apart from its crop's, the same in every process."""
    return np.random.default_rng([seed, SALT, epoch, index])


# ----------------------------------------------------------------------------- applying them

def _kernel_batch(kernels: list[np.ndarray], like: Tensor) -> Tensor:
    """The kernels zero-padded to the largest of them, as one (N, K, K) tensor (filtering is unchanged)."""
    size = max(k.shape[0] for k in kernels)
    return torch.from_numpy(np.stack([K.pad_kernel(k, size) for k in kernels])).to(like.device, like.dtype)


def _add_noise(x: Tensor, noise: Noise, generator: torch.Generator) -> Tensor:
    if noise.kind == "gaussian":
        return ops.gaussian_noise(x, noise.amount, noise.gray, generator)
    return ops.poisson_noise(x, noise.amount, noise.gray, generator)


def _finish(x: Tensor, p: SampleParams, lr_size: tuple[int, int]) -> Tensor:
    """Resize to the LR size with the final (sinc) filter, before or after the last JPEG."""
    def resize_and_filter(y: Tensor) -> Tensor:
        return ops.filter2d(ops.resize(y, lr_size, p.final_mode), _kernel_batch([p.final_kernel], y))

    if p.jpeg_last:
        return ops.jpeg(resize_and_filter(x).clamp(0, 1), [p.second.jpeg_quality])
    return resize_and_filter(ops.jpeg(x.clamp(0, 1), [p.second.jpeg_quality]))


def degrade_batch(hr: Tensor, params: list[SampleParams], scale: int) -> Tensor:
    """The LR images (N, C, H/scale, W/scale) of HR images (N, C, H, W) in [0, 1], on their device; values are
    8-bit levels. The first blur is one depthwise convolution for the batch (kernels zero-padded to the largest,
    as the paper pads them to 21x21); the rest goes sample by sample, since each draws its own sizes."""
    n, _, h, w = hr.shape
    lr_size = (h // scale, w // scale)
    if len(params) != n:
        raise ValueError(f"{n} images but {len(params)} parameter sets")
    blurred = ops.filter2d(hr, _kernel_batch([p.first.kernel if p.first.kernel is not None and p.first_round
                                              else K.identity_kernel(1) for p in params], hr))
    out = []
    for i, p in enumerate(params):
        if p.clean:
            out.append(ops.resize(hr[i : i + 1], lr_size, "bicubic_antialias"))
            continue
        generator = torch.Generator().manual_seed(p.noise_seed)
        x = blurred[i : i + 1]
        r1, r2 = p.first, p.second
        if p.first_round:
            x = ops.resize(x, (max(1, int(h * r1.resize)), max(1, int(w * r1.resize))), r1.resize_mode)
            x = _add_noise(x, r1.noise, generator).clamp(0, 1)
            x = ops.jpeg(x, [r1.jpeg_quality])
        else:
            x = ops.resize(x, lr_size, r1.resize_mode)
        if r2.kernel is not None:
            x = ops.filter2d(x, _kernel_batch([r2.kernel], x))
        x = ops.resize(x, (max(1, int(lr_size[0] * r2.resize)), max(1, int(lr_size[1] * r2.resize))), r2.resize_mode)
        x = _add_noise(x, r2.noise, generator)
        out.append(_finish(x, p, lr_size))
    return torch.round(torch.cat(out).clamp(0, 1) * 255) / 255


class SecondOrderDegradation:
    """``data.train.degradation`` applied to training batches: LR from HR, keyed by each sample's (epoch, index)."""

    def __init__(self, config: DegradationConfig, scale: int, seed: int) -> None:
        self.config, self.scale, self.seed = config, scale, seed

    def params(self, keys: Sequence[tuple[int, int]]) -> list[SampleParams]:
        return [draw_params(sample_rng(self.seed, int(e), int(i)), self.config) for e, i in keys]

    def __call__(self, hr: Tensor, keys: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """(LR, HR target) of a batch of HR patches in [0, 1]; the target is sharpened if so configured."""
        lr = degrade_batch(hr, self.params(keys), self.scale)
        return lr, ops.usm_sharpen(hr) if self.config.sharpen_target else hr

