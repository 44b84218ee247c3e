"""Upscaling images and video frames with a network: colour and dtype conventions, tiles, precision, runtime.

:class:`Upscaler` holds a network prepared to run (a :class:`~repsr.runtimes.Runner`: PyTorch, OpenVINO or ncnn)
and upscales NumPy images with it; :func:`upscale` is the one-call convenience. An image whose channels are the
network's (RGB, RGBA's colour, gray for a 1-channel network) takes the runner's fused path: uint8 stays uint8 up
to the device, and the clip and round happen there (:func:`repsr.runtimes.clip_round_`, the same arithmetic on
every path). Other images go through the float path with conversions around the network: gray into an RGB
network, RGB into a Y network (CbCr by bicubic), alpha by bicubic. Images are cut into the seamless tiles of
:mod:`repsr.tiling`; only tiles move to the device, and on GPU out-of-memory the tile (or a video batch) halves.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .errors import RepsrError
from .images import PEAKS
from .loading import load_model
from .metrics import rgb2ycbcr, ycbcr2rgb
from .resize import imresize
from .runtimes import Runner, make_runner, to_image
from .tiling import halving_on_oom, tile_grid
from .zoo import DEFAULT_MODEL

GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])  # MATLAB rgb2gray: RGB output of a gray input -> gray
Progress = Callable[[int, int], None]  # (tiles done, tiles in all)


class Upscaler:
    """A network ready to upscale: ``Upscaler(model)(image)``. ``model``: a network, a bundled model's name or a
    model file (default: the bundled real-world x4 model, ``repsr.zoo.DEFAULT_MODEL``). ``tile``: LR tile size
    (None: the fastest for the runtime, 0: never tile). Make one and reuse it: preparing copies the network (and
    compiles it for OpenVINO)."""

    def __init__(self, model: nn.Module | str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "auto",
                 precision: str = "fp32", backend: str = "auto", tile: int | None = None,
                 threads: int | None = None) -> None:
        network = load_model(model) if isinstance(model, (str, os.PathLike)) else model
        self.runner: Runner = make_runner(network, device, precision, backend, threads)
        self.tile = tile
        self.scale = self.runner.scale

    def __call__(self, image: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Super-resolve a NumPy image (HxW, HxWx1/2/3/4; uint8, uint16 or float in [0, 1]). The result has its
        dtype and channels: gray stays gray, alpha is upscaled by bicubic, a Y-channel network upscales Y and takes
        CbCr by bicubic."""
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise RepsrError(f"unsupported image shape {image.shape}")
        if image.dtype not in PEAKS and not np.issubdtype(image.dtype, np.floating):
            raise RepsrError(f"unsupported image dtype {image.dtype} (uint8, uint16 or float)")
        hwc = image[:, :, None] if image.ndim == 2 else image
        has_alpha = hwc.shape[2] in (2, 4)
        color = hwc[:, :, :-1] if has_alpha else hwc
        if self.runner.fused(color.shape[2]):
            fused = color if color.dtype in PEAKS else color.astype(np.float32, copy=False)
            result = self.images(fused, progress).astype(image.dtype, copy=False)
        else:
            result = self._float_path(color, progress)
        if has_alpha:  # alpha by MATLAB bicubic, which rounds integer images as MATLAB does
            alpha = imresize(hwc[:, :, -1], self.scale)
            alpha = alpha if alpha.dtype in PEAKS else np.clip(alpha, 0, 1).astype(image.dtype)
            result = np.concatenate([result, alpha[:, :, None]], axis=2)
        return result[:, :, 0] if image.ndim == 2 else result

    def images(self, image: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """The fused path: an HWC image with the network's channels (uint8, uint16 or float32), in tiles."""
        h, w, c = image.shape
        tile = self.tile if self.tile is not None else self.runner.auto_tile(h, w)
        return halving_on_oom(lambda t: self._tiles(image, t, progress, self.runner.images, "image"), tile, (h, w))

    def floats(self, x: Tensor, progress: Progress | None = None) -> Tensor:
        """The network on a CPU float32 (1, C, H, W) tensor in tiles; the float32 result on the CPU, unclipped."""
        h, w = x.shape[-2:]
        tile = self.tile if self.tile is not None else self.runner.auto_tile(h, w)
        return halving_on_oom(lambda t: self._tiles(x, t, progress, self.runner.floats, "tensor"), tile, (h, w))

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """Video frames (N, H, W, C) as :meth:`__call__` makes each of them, in whole batches where no tiles are
        needed (the batch halves on out-of-memory, down to single frames, which then halve their tiles)."""
        n, h, w, c = frames.shape
        tile = self.tile if self.tile is not None else self.runner.auto_tile(h, w)
        if tile or not self.runner.fused(c) or frames.dtype not in PEAKS:
            return np.stack([self(f) for f in frames])
        return self._batch(frames)

    def _batch(self, frames: np.ndarray) -> np.ndarray:
        try:
            return self.runner.images(frames)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
        if len(frames) > 1:
            half = len(frames) // 2
            return np.concatenate([self._batch(frames[:half]), self._batch(frames[half:])])
        return self(frames[0])[None]

    def _tiles(self, source, tile: int, progress: Progress | None, run: Callable, kind: str):
        """``run`` over the tiles of an HWC image or an NCHW tensor, each tile's own part placed in the result."""
        s = self.scale
        h, w = (source.shape[:2] if kind == "image" else source.shape[-2:])
        grid = list(tile_grid(h, w, tile, self.runner.radius))
        out = None
        for i, t in enumerate(grid):
            if kind == "image":
                result = run(source[None, t.py0 : t.py1, t.px0 : t.px1])[0]
                if len(grid) == 1:
                    out = result
                else:
                    if out is None:
                        out = np.empty((h * s, w * s, result.shape[2]), dtype=result.dtype)
                    rows, cols = t.crop(s)
                    out[t.place(s)] = result[rows, cols]
            else:
                result = run(source[:, :, t.py0 : t.py1, t.px0 : t.px1])
                if out is None:
                    out = torch.empty(source.shape[0], result.shape[1], h * s, w * s)
                rows, cols = t.crop(s)
                out[(slice(None), slice(None), *t.place(s))] = result[:, :, rows, cols]
            if progress is not None:
                progress(i + 1, len(grid))
        return out

    def _float_path(self, color: np.ndarray, progress: Progress | None) -> np.ndarray:
        """Colour conversions around the network in float: gray into an RGB network, RGB into a Y network."""
        img = _as_float(color)
        gray = img.shape[2] == 1

        def net(chw: np.ndarray) -> np.ndarray:
            return self.floats(torch.from_numpy(np.ascontiguousarray(chw))[None], progress)[0].numpy()

        if self.runner.in_channels == 1:
            if gray:
                result = net(img.transpose(2, 0, 1)).transpose(1, 2, 0)
            else:
                ycbcr = rgb2ycbcr(torch.from_numpy(img.transpose(2, 0, 1)).double())
                y = torch.from_numpy(net(ycbcr[:1].float().numpy())).double()
                cbcr = imresize(ycbcr[1:], self.scale)
                result = ycbcr2rgb(torch.cat([y, cbcr])).numpy().transpose(1, 2, 0)
        else:
            result = net((np.repeat(img, 3, axis=2) if gray else img).transpose(2, 0, 1)).transpose(1, 2, 0)
            if gray:
                result = (np.clip(result, 0, 1) @ GRAY_WEIGHTS.astype(np.float32))[:, :, None]
        return _from_float(result, color.dtype)


def _as_float(image: np.ndarray) -> np.ndarray:
    peak = PEAKS.get(image.dtype)
    return image.astype(np.float32) / peak if peak is not None else image.astype(np.float32)


def _from_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A float result in [0, 1] units clipped and rounded into ``dtype`` (the runners' clip and round)."""
    return to_image(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), dtype)


def upscale(image: np.ndarray, model: nn.Module | str | os.PathLike = DEFAULT_MODEL, tile: int | None = None,
            device: str | torch.device = "auto", precision: str = "fp32", progress: Progress | None = None,
            backend: str = "auto") -> np.ndarray:
    """Super-resolve one NumPy image: ``Upscaler(model, device, precision, backend, tile)(image)``. For many images,
    make an :class:`Upscaler` once."""
    return Upscaler(model, device, precision, backend, tile)(image, progress)
