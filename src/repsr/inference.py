"""Upscaling images with a network: colour handling, precision, and seamless tiling.

Tiles overlap by the network's receptive radius (one LR pixel per 3x3 conv), so every output
pixel of a tile sees exactly the input it sees in the whole image, and at image borders the tile's
zero padding is the image's: tiled output equals untiled output. In float64 it is bit-identical;
in float32 the conv libraries' summation order depends on the tensor's width, so values can
differ in the last bits (about 1e-7), which can flip a rare pixel at a rounding boundary by one
level. The image stays on the CPU and only tiles move to the device; on GPU out-of-memory the
tile size halves and the image restarts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .errors import RepsrError
from .metrics import rgb2ycbcr, ycbcr2rgb
from .resize import imresize

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])  # MATLAB rgb2gray: RGB output of a gray input -> gray
MIN_TILE = 16
# Automatic tiling on CPU. Tiles whose activations stay in cache beat one pass over a large image
# by up to 1.6x despite their overlap, but on smaller images the per-tile overhead loses (0.7-0.95x).
# The measured crossover (benchmarks/deploy_speedup.py, tiling_speed.py): tile once the widest
# activation of one pass exceeds ~48 MB. On GPU one pass is fastest; out-of-memory halves the tile.
CPU_TILE = 320
CPU_TILE_ABOVE_BYTES = 48 * 2**20


def auto_tile(model: nn.Module, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> int:
    """The tile size :func:`run_tiled` uses when none is given: 0 (one pass) or :data:`CPU_TILE`."""
    if device.type != "cpu":
        return 0
    widest = max(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    activation = shape[-2] * shape[-1] * widest * torch.empty((), dtype=dtype).element_size()
    return CPU_TILE if activation > CPU_TILE_ABOVE_BYTES else 0


def input_channels(model: nn.Module) -> int:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels


def receptive_radius(model: nn.Module) -> int:
    """LR pixels of context each output pixel depends on, per side."""
    return sum((m.kernel_size[0] // 2) * m.dilation[0] for m in model.modules() if isinstance(m, nn.Conv2d))


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RepsrError("--device cuda: no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise RepsrError(f"--device: unknown device {name!r}") from None


def prepare(model: nn.Module, device: torch.device, precision: str = "fp32") -> nn.Module:
    """A copy of ``model`` on ``device`` in ``precision``, in eval mode, channels_last."""
    if precision not in PRECISIONS:
        raise RepsrError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    prepared = copy.deepcopy(model).to(device=device, dtype=PRECISIONS[precision]).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # tiles repeat the same shapes: autotuning pays off
    return prepared.to(memory_format=torch.channels_last)


@torch.inference_mode()
def run_tiled(model: nn.Module, x: Tensor, scale: int, tile: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> Tensor:
    """``model`` on a CPU float32 (1, C, H, W) tensor, in tiles of ``tile`` LR pixels; returns CPU float32.

    ``model`` is already on its device and dtype (see :func:`prepare`). ``tile``: None picks the
    measured-fastest (:func:`auto_tile`), 0 is the whole image. On CUDA
    out-of-memory the tile size halves (down to 16) and the image is processed again.
    """
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    if tile is None:
        tile = auto_tile(model, x.shape, device, dtype)
    _, _, h, w = x.shape
    while True:
        try:
            return _tiles(model, x, scale, tile, device, dtype, progress)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            size = tile or max(h, w)
            if size <= MIN_TILE:
                raise RepsrError("out of GPU memory even with 16-pixel tiles") from None
            tile = max(MIN_TILE, size // 2)


def _tiles(model, x, scale, tile, device, dtype, progress) -> Tensor:
    _, _, h, w = x.shape
    tile = tile or max(h, w)
    pad = receptive_radius(model)
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    out = None
    for index in range(rows * cols):
        y0, x0 = (index // cols) * tile, (index % cols) * tile
        y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
        py0, px0, py1, px1 = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
        part = x[:, :, py0:py1, px0:px1].to(device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        result = model(part)
        if not torch.isfinite(result).all():
            name = str(dtype).split(".")[-1]
            raise RepsrError(f"the network produced NaN/inf values in {name}; use --precision fp32")
        result = result[:, :, (y0 - py0) * scale : (y1 - py0) * scale, (x0 - px0) * scale : (x1 - px0) * scale]
        if out is None:
            out = torch.empty(1, result.shape[1], h * scale, w * scale)
        out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result.float().cpu()
        if progress is not None:
            progress(index + 1, rows * cols)
    return out


def _to_float(image: np.ndarray) -> tuple[np.ndarray, float | None]:
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255, 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535, 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32), None
    raise RepsrError(f"unsupported image dtype {image.dtype} (uint8, uint16 or float)")


def _from_float(image: np.ndarray, peak: float | None, dtype: np.dtype) -> np.ndarray:
    """Clip, scale and round in place (outputs of big images are large), then cast once."""
    np.clip(image, 0, 1, out=image)
    if peak is not None:
        image *= peak
        image += 0.5
        np.floor(image, out=image)
    return image.astype(dtype)


def upscale(image: np.ndarray, model: nn.Module | str, tile: int | None = None, device: str | torch.device = "auto",
            precision: str = "fp32", progress: Callable[[int, int], None] | None = None,
            prepared: bool = False) -> np.ndarray:
    """Super-resolve a NumPy image (HxW, HxWx1/2/3/4; uint8, uint16 or float in [0, 1]).

    The result has the input's dtype and channels: gray stays gray, alpha is upscaled by bicubic,
    a Y-channel model upscales Y and takes CbCr by bicubic. ``model`` is a network, a bundled
    model's name or a model file.
    """
    if isinstance(model, str):
        from .export import load_model

        model = load_model(model)
    if not prepared:
        model = prepare(model, pick_device(device), precision)
    scale = int(model.upscale)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise RepsrError(f"unsupported image shape {image.shape}")
    img, peak = _to_float(image)
    if img.ndim == 2:
        img = img[:, :, None]
    color, alpha = (img[:, :, :-1], img[:, :, -1]) if img.shape[2] in (2, 4) else (img, None)
    gray = color.shape[2] == 1

    def net(chw: np.ndarray) -> np.ndarray:
        out = run_tiled(model, torch.from_numpy(np.ascontiguousarray(chw))[None], scale, tile, progress)
        return out[0].numpy()

    if input_channels(model) == 1:
        if gray:
            result = net(color.transpose(2, 0, 1)).transpose(1, 2, 0)
        else:
            ycbcr = rgb2ycbcr(torch.from_numpy(color.transpose(2, 0, 1)).double())
            y = torch.from_numpy(net(ycbcr[:1].float().numpy())).double()
            cbcr = imresize(ycbcr[1:], scale)
            result = ycbcr2rgb(torch.cat([y, cbcr])).numpy().transpose(1, 2, 0)
    else:
        rgb = np.repeat(color, 3, axis=2) if gray else color
        result = net(rgb.transpose(2, 0, 1)).transpose(1, 2, 0)
        if gray:
            result = np.clip(result, 0, 1) @ GRAY_WEIGHTS.astype(np.float32)
            result = result[:, :, None]
    if alpha is not None:
        result = np.concatenate([result, imresize(alpha.astype(np.float64), scale)[:, :, None]], axis=2)
    if image.ndim == 2:
        result = result[:, :, 0]
    return _from_float(result, peak, image.dtype)
