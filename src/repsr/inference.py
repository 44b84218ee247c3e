"""Upscaling images with a network: colour handling, precision, and seamless tiling.

Tiles overlap by the network's receptive radius (one LR pixel per 3x3 conv), so every output
pixel of a tile sees exactly the input it sees in the whole image, and at image borders the tile's
zero padding is the image's: tiled output equals untiled output. In float64 it is bit-identical;
in float32 the conv libraries' summation order depends on the tensor's width, so values can
differ in the last bits (about 1e-7), which can flip a rare pixel at a rounding boundary by one
level. The image stays on the CPU and only tiles move to the device; on GPU out-of-memory the
tile size halves and the image restarts.

End to end, an image whose channels are the network's (RGB, RGBA's colour, gray for a 1-channel network)
takes the fused path: the tile goes to the device as it is (uint8 stays uint8), the nearest-upsampled input
is added to the tail conv's output before the pixel shuffle (in LR layout: no upsampled copy), clipping and
rounding happen on the device, and the pixel shuffle moves the rounded values (a quarter of the bytes for
uint8); a sum of the float result is the NaN/inf check (one read; an exact check runs only when it fails).
The result equals the float path's (:func:`run_tiled`, then clip and round) value for value. Prepared
networks are cached per model (weakly, keyed by its parameters' identity and version), so calling
:func:`upscale` with the same model again costs no copy and no recompilation.
"""

from __future__ import annotations

import copy
import itertools
import math
import weakref
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .archs.networks import CompactSRNet
from .backends import NcnnNet, OpenVINONet, RuntimeNet, resolve_backend
from .errors import RepsrError
from .images import PEAKS
from .loading import load_model
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
# OpenVINO and ncnn run one pass faster than 320 px tiles (1.1-1.16x at 540x960 and 750x1000 inputs): they tile
# only to bound memory, in large tiles, once the widest activation of one pass would exceed 1 GiB.
RUNTIME_TILE = 1024
RUNTIME_TILE_ABOVE_BYTES = 2**30


def auto_tile(model: nn.Module, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> int:
    """The tile size :func:`run_tiled` uses when none is given: 0 (one pass), :data:`CPU_TILE` or, for OpenVINO
    and ncnn, :data:`RUNTIME_TILE`."""
    if device.type != "cpu":
        return 0
    widest = max(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    activation = shape[-2] * shape[-1] * widest * torch.empty((), dtype=dtype).element_size()
    if isinstance(model, RuntimeNet):
        return RUNTIME_TILE if activation > RUNTIME_TILE_ABOVE_BYTES else 0
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


def prepare(model: nn.Module, device: torch.device | str, precision: str = "fp32",
            backend: str = "auto") -> nn.Module:
    """A copy of ``model`` ready to run: on ``device`` in ``precision``, eval mode, channels_last; or, on the CPU,
    a :class:`~repsr.backends.RuntimeNet` (OpenVINO, ncnn) where that is the faster runtime (``backend="auto"``,
    see :func:`repsr.backends.resolve_backend`)."""
    if precision not in PRECISIONS:
        raise RepsrError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = pick_device(device)
    if isinstance(model, RuntimeNet):
        model = model.net
    backend, precision = resolve_backend(model, device, precision, backend)
    if backend == "openvino":
        return OpenVINONet(model, precision)
    if backend == "ncnn":
        return NcnnNet(model)
    prepared = copy.deepcopy(model).to(device=device, dtype=PRECISIONS[precision]).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # tiles repeat the same shapes: autotuning pays off
    return prepared.to(memory_format=torch.channels_last)


_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple | None:
    """Changes whenever a parameter or buffer is replaced or modified in place (None: cannot tell)."""
    try:
        return tuple((id(t), t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers()))
    except RuntimeError:  # inference tensors (made under torch.inference_mode) keep no version counter
        return None


def prepared_model(model: nn.Module, device: torch.device | str = "auto", precision: str = "fp32",
                   backend: str = "auto") -> nn.Module:
    """:func:`prepare`, cached per model while its weights stay the same (a copy, or an OpenVINO compilation,
    costs as much as the network on a small image)."""
    device = pick_device(device)
    if isinstance(model, RuntimeNet):
        return model
    key = (str(device), precision, backend)
    fingerprint = _fingerprint(model)
    try:
        cache = _prepared.setdefault(model, {})
    except TypeError:  # not weak-referenceable
        fingerprint = None
    if fingerprint is None:
        return prepare(model, device, precision, backend)
    hit = cache.get(key)
    if hit is None or hit[0] != fingerprint:
        hit = cache[key] = (fingerprint, prepare(model, device, precision, backend))
    return hit[1]


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype, str]:
    """Device and dtype of the tensors ``model`` takes, and the name of the precision it computes in."""
    param = next(model.parameters())
    name = model.precision if isinstance(model, RuntimeNet) else str(param.dtype).split(".")[-1]
    return param.device, param.dtype, name


def _nan_error(name: str) -> RepsrError:
    return RepsrError(f"the network produced NaN/inf values in {name}; use --precision fp32")


@torch.inference_mode()
def run_tiled(model: nn.Module, x: Tensor, scale: int, tile: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> Tensor:
    """``model`` on a CPU float32 (1, C, H, W) tensor, in tiles of ``tile`` LR pixels; returns CPU float32.

    ``model`` is already on its device and dtype (see :func:`prepare`). ``tile``: None picks the
    measured-fastest (:func:`auto_tile`), 0 is the whole image. On CUDA
    out-of-memory the tile size halves (down to 16) and the image is processed again.
    """
    device, dtype, _ = _placement(model)
    if tile is None:
        tile = auto_tile(model, x.shape, device, dtype)
    return _halving_on_oom(lambda t: _tiles(model, x, scale, t, device, dtype, progress), tile, x.shape[-2:])


def _halving_on_oom(run: Callable[[int], object], tile: int, hw: tuple[int, int]):
    while True:
        try:
            return run(tile)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            size = tile or max(hw)
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
            raise _nan_error(_placement(model)[2])
        result = result[:, :, (y0 - py0) * scale : (y1 - py0) * scale, (x0 - px0) * scale : (x1 - px0) * scale]
        if out is None:
            out = torch.empty(1, result.shape[1], h * scale, w * scale)
        out[:, :, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result.float().cpu()
        if progress is not None:
            progress(index + 1, rows * cols)
    return out


def _to_float(image: np.ndarray) -> tuple[np.ndarray, float | None]:
    peak = PEAKS.get(image.dtype)
    if peak is not None:
        return image.astype(np.float32) / peak, peak
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


def _fusable(model: nn.Module, channels: int) -> bool:
    """Whether the fused image path computes this model's function: a Compact network whose input and output
    channels are the image's (the same layers in the same order; an OpenVINO network always is one)."""
    net = model.net if isinstance(model, RuntimeNet) else model
    return isinstance(net, CompactSRNet) and net.num_in_ch == net.num_out_ch == channels


def _shuffle_order(channels: int, scale: int, device: torch.device) -> Tensor:
    """Tail conv output channels in (row, column, channel) order: PixelShuffle's output is then a copy of whole
    ``scale * channels`` runs (in PyTorch's (channel, row, column) order it is a copy of single values)."""
    return torch.arange(channels * scale * scale, device=device).view(channels, scale, scale).permute(1, 2, 0).flatten()


def _replicate(channels: int, scale: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The (C, s*s*C) 0/1 matrix taking a pixel's C values to its s*s sub-pixels in (row, column, channel) order."""
    return torch.eye(channels, dtype=dtype, device=device).repeat(1, scale * scale)


def _torch_image(model: nn.Module, part: np.ndarray, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """One HWC tile through a PyTorch Compact network, returned upscaled, clipped and rounded in ``part``'s dtype.

    The same arithmetic as the network followed by :func:`_from_float`: the input is divided by the peak in
    float32 and cast to the network's dtype, the residual is added in that dtype, and the result is clipped,
    scaled, offset by 0.5 and truncated in float32 (truncation is floor for values >= 0). The tail conv's
    output channels are reordered (its weight rows permuted: the same dot products), so that its
    channels_last output is (H, W, row, column, channel) and the pixel shuffle moves runs of values.
    """
    h, w, c = part.shape
    s = int(model.upscale)
    t = torch.from_numpy(np.ascontiguousarray(part)).to(device).permute(2, 0, 1)[None]  # NCHW, channels_last strides
    peak = PEAKS.get(part.dtype)
    x = (t.div(peak) if peak is not None else t.float()).to(dtype)  # int / float divides in float32, in one pass
    y = x
    *body, tail = model.body
    for layer in body:
        y = layer(y)
    order = _shuffle_order(c, s, device)
    y = F.conv2d(y, tail.weight[order], tail.bias[order], tail.stride, tail.padding, tail.dilation, tail.groups)
    y = y.permute(0, 2, 3, 1).reshape(h * w, s * s * c)  # channels_last: a view
    # the nearest-upsampled input, before the pixel shuffle: y += x @ E with E copying each channel to its s*s
    # places (0/1 entries: exactly y + x); one GEMM pass is several times faster than the broadcast add here
    try:
        y.addmm_(x[0].permute(1, 2, 0).reshape(h * w, c), _replicate(c, s, y.dtype, device))
    except RuntimeError:  # no GEMM for this dtype on this device (fp16 on the CPU of older PyTorch)
        y.view(h, w, s * s, c).add_(x[0].permute(1, 2, 0)[:, :, None, :])
    y = y.float().view(h, w, s, s, c)
    if not torch.isfinite(y.sum()) and not torch.isfinite(y).all():  # the sum overflows only for huge values
        raise _nan_error(str(dtype).split(".")[-1])
    y.clamp_(0, 1)
    if peak is not None:
        y.mul_(peak).add_(0.5)
    # the pixel shuffle: one copy into the output's layout, converting (truncating) to the output dtype on the way
    kind = {255.0: torch.uint8, 65535.0: torch.int32, None: torch.float32}[peak]
    out = torch.empty(h, s, w, s, c, dtype=kind, device=device)
    out.permute(0, 2, 1, 3, 4).copy_(y)
    out = out.view(h * s, w * s, c).cpu().numpy()
    return out.astype(np.uint16) if part.dtype == np.uint16 else out


def _image_tile(model: nn.Module, part: np.ndarray, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    if not isinstance(model, RuntimeNet):
        return _torch_image(model, part, device, dtype)
    out, finite = model.run_image(part)
    if not finite:  # the sum check failed: look at the values themselves
        x = torch.from_numpy(part.astype(np.float32) / PEAKS.get(part.dtype, 1.0)).permute(2, 0, 1)[None]
        if not torch.isfinite(model(x)).all():
            raise _nan_error(model.precision)
    return out


@torch.inference_mode()
def run_image(model: nn.Module, image: np.ndarray, tile: int | None = None,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The fused path of :func:`upscale`: a prepared Compact ``model`` on an HWC ``image`` (uint8, uint16 or
    float32) with as many channels as the model, in tiles as in :func:`run_tiled`; the result has its dtype."""
    device, dtype, _ = _placement(model)
    h, w, c = image.shape
    if tile is None:
        tile = auto_tile(model, (1, c, h, w), device, dtype)
    return _halving_on_oom(lambda t: _image_tiles(model, image, t, device, dtype, progress), tile, (h, w))


def _image_tiles(model, image, tile, device, dtype, progress) -> np.ndarray:
    h, w, c = image.shape
    scale = int(model.upscale)
    tile = tile or max(h, w)
    rows, cols = math.ceil(h / tile), math.ceil(w / tile)
    if rows * cols == 1:
        out = _image_tile(model, image, device, dtype)
        if progress is not None:
            progress(1, 1)
        return out
    pad = receptive_radius(model)
    out = np.empty((h * scale, w * scale, c), dtype=image.dtype)
    for index in range(rows * cols):
        y0, x0 = (index // cols) * tile, (index % cols) * tile
        y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
        py0, px0, py1, px1 = max(0, y0 - pad), max(0, x0 - pad), min(h, y1 + pad), min(w, x1 + pad)
        result = _image_tile(model, image[py0:py1, px0:px1], device, dtype)
        out[y0 * scale : y1 * scale, x0 * scale : x1 * scale] = result[
            (y0 - py0) * scale : (y1 - py0) * scale, (x0 - px0) * scale : (x1 - px0) * scale]
        if progress is not None:
            progress(index + 1, rows * cols)
    return out


def upscale(image: np.ndarray, model: nn.Module | str, tile: int | None = None, device: str | torch.device = "auto",
            precision: str = "fp32", progress: Callable[[int, int], None] | None = None,
            prepared: bool = False, backend: str = "auto") -> np.ndarray:
    """Super-resolve a NumPy image (HxW, HxWx1/2/3/4; uint8, uint16 or float in [0, 1]).

    The result has the input's dtype and channels: gray stays gray, alpha is upscaled by bicubic,
    a Y-channel model upscales Y and takes CbCr by bicubic. ``model`` is a network, a bundled
    model's name or a model file; ``prepared=True`` says it came from :func:`prepare` already (otherwise
    the prepared copy is cached for the next call). ``backend``: see :mod:`repsr.backends`.
    """
    if isinstance(model, str):
        model = load_model(model)
    if not prepared:
        model = prepared_model(model, device, precision, backend)
    scale = int(model.upscale)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise RepsrError(f"unsupported image shape {image.shape}")
    if image.dtype not in PEAKS and not np.issubdtype(image.dtype, np.floating):
        raise RepsrError(f"unsupported image dtype {image.dtype} (uint8, uint16 or float)")
    hwc = image[:, :, None] if image.ndim == 2 else image
    color = hwc[:, :, :-1] if hwc.shape[2] in (2, 4) else hwc
    if _fusable(model, color.shape[2]):
        fused = color if color.dtype in PEAKS else color.astype(np.float32, copy=False)
        result = run_image(model, fused, tile, progress)
        if hwc.shape[2] in (2, 4):
            alpha, peak = _to_float(hwc[:, :, -1])
            alpha = _from_float(imresize(alpha.astype(np.float64), scale), peak, image.dtype)
            result = np.concatenate([result, alpha[:, :, None]], axis=2)
        result = result.astype(image.dtype, copy=False)
        return result[:, :, 0] if image.ndim == 2 else result
    return _upscale_float(image, model, scale, tile, progress)


def _upscale_float(image: np.ndarray, model: nn.Module, scale: int, tile: int | None,
                   progress: Callable[[int, int], None] | None) -> np.ndarray:
    """Colour conversions around the network in float: gray into an RGB network, RGB into a Y network."""
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
    result = _from_float(result, peak, image.dtype)
    if alpha is not None:  # rounded on its own, in float64, as on the fused path
        alpha = _from_float(imresize(alpha.astype(np.float64), scale), peak, image.dtype)
        result = np.concatenate([result, alpha[:, :, None]], axis=2)
    return result[:, :, 0] if image.ndim == 2 else result
