"""SR datasets: HR-only folders (LR made by MATLAB bicubic), paired folders (DIV2K/BasicSR layout),
and random training patches.

LR images for HR-only folders follow the standard MATLAB script: modcrop to the scale,
``imresize(hr, 1/scale, 'bicubic')``, rounded to uint8 as ``imwrite`` does. They are made once and
cached in memory and on disk (keyed by the HR file's hash and the scale).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .degradation import EvalDegradation
from .errors import RepsrError
from .images import IMAGE_EXTENSIONS, read_image, to_rgb, to_tensor, write_image
from .metrics import rgb2ycbcr
from .resize import imresize

LR_CACHE_VERSION = "v1"  # bump when the LR recipe changes, so stale cache entries are not reused


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "repsr" / "lr"


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder``, sorted by name; an empty or missing folder is an error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RepsrError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise RepsrError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop height and width down to multiples of ``scale`` (top-left kept)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` of an integer image, rounded as MATLAB's ``imwrite``."""
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise ValueError(f"image {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}")
    return imresize(hr, 1 / scale)


@dataclass
class SRPair:
    name: str
    lr: np.ndarray  # uint8/uint16, HxW or HxWxC
    hr: np.ndarray  # same dtype and channels, exactly scale x the LR size


class SRDataset:
    """A list of LR/HR pairs, loaded on first access and kept in memory."""

    degradation: EvalDegradation | None = None  # the named degradation its LR images went through, if any

    def __init__(self, name: str, hr_files: list[Path], scale: int) -> None:
        if scale < 1:
            raise RepsrError(f"scale must be >= 1, got {scale}")
        self.name = name
        self.hr_files = hr_files
        self.scale = scale
        self._pairs: dict[int, SRPair] = {}

    @property
    def label(self) -> str:
        """The set's name, with its degradation's (``B100 jpeg40``): what results and logs are keyed by."""
        return f"{self.name} {self.degradation.name}" if self.degradation else self.name

    def __len__(self) -> int:
        return len(self.hr_files)

    def __getitem__(self, index: int) -> SRPair:
        if index not in self._pairs:
            self._pairs[index] = self._load(index)
        return self._pairs[index]

    def _load(self, index: int) -> SRPair:
        raise NotImplementedError


class HRFolder(SRDataset):
    """HR images only; LR made by MATLAB bicubic downscaling, cached on disk (``cache_dir=None``: memory only).

    With a ``degradation`` (:class:`~repsr.degradation.EvalDegradation`) the LR is the bicubic LR degraded
    by it, cached the same way under a name that holds the degradation and its seed."""

    def __init__(self, folder: str | os.PathLike, scale: int, cache_dir: str | os.PathLike | None = None,
                 name: str | None = None, degradation: EvalDegradation | None = None) -> None:
        folder = Path(folder)
        super().__init__(name or folder.name, list_images(folder), scale)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.degradation = degradation

    def _cached(self, digest: str, tag: str, shape: tuple[int, int], make: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached LR image ``tag`` of an HR file, made and stored if missing, damaged or of the wrong size."""
        cached = self.cache_dir / f"{digest}_x{self.scale}_{tag}.png" if self.cache_dir is not None else None
        if cached is not None and cached.is_file():
            try:
                lr = read_image(cached)
                if lr.shape[:2] == shape:
                    return lr
            except RepsrError:
                pass  # a damaged cache entry is simply rebuilt
        lr = make()
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                write_image(cached, lr)
            except (OSError, RepsrError):
                pass  # a read-only cache only costs time
        return lr

    def _load(self, index: int) -> SRPair:
        path = self.hr_files[index]
        hr = modcrop(read_image(path), self.scale)
        if hr.shape[0] < self.scale or hr.shape[1] < self.scale:
            raise RepsrError(f"{path}: image is smaller than the scale {self.scale}")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:32] if self.cache_dir is not None else ""
        shape = (hr.shape[0] // self.scale, hr.shape[1] // self.scale)
        lr = self._cached(digest, LR_CACHE_VERSION, shape, lambda: bicubic_downscale(hr, self.scale))
        if self.degradation is not None:
            if hr.dtype != np.uint8:
                raise RepsrError(f"{path}: degraded evaluation needs 8-bit images")
            rgb_hr, rgb_lr = (to_rgb(hr), to_rgb(lr)) if hr.ndim == 3 else (hr, lr)
            degradation = self.degradation
            lr = self._cached(digest, f"{LR_CACHE_VERSION}_{degradation.cache_tag}", shape,
                              lambda: degradation.apply(rgb_hr, self.scale, path.stem, rgb_lr))
        return SRPair(path.stem, lr, hr)


class PairedFolder(SRDataset):
    """HR and LR folders in the BasicSR/DIV2K layout: ``HR/0001.png`` with ``LR/0001x4.png``.

    ``filename_tmpl`` maps an HR stem to the LR stem; ``{}`` is the HR stem, ``{scale}`` the scale.
    """

    def __init__(self, hr_folder: str | os.PathLike, lr_folder: str | os.PathLike, scale: int,
                 filename_tmpl: str = "{}x{scale}", name: str | None = None) -> None:
        hr_folder, lr_folder = Path(hr_folder), Path(lr_folder)
        super().__init__(name or hr_folder.name, list_images(hr_folder), scale)
        if not lr_folder.is_dir():
            raise RepsrError(f"{lr_folder}: no such folder")
        self.lr_files = []
        for hr in self.hr_files:
            lr = lr_folder / (filename_tmpl.format(hr.stem, scale=scale) + hr.suffix)
            if not lr.is_file():
                raise RepsrError(f"{hr}: no matching LR image {lr}")
            self.lr_files.append(lr)

    def _load(self, index: int) -> SRPair:
        hr_path, lr_path = self.hr_files[index], self.lr_files[index]
        hr, lr = read_image(hr_path), read_image(lr_path)
        s = self.scale
        if hr.ndim != lr.ndim or hr.dtype != lr.dtype or lr.shape[0] * s > hr.shape[0] or lr.shape[1] * s > hr.shape[1]:
            raise RepsrError(f"{lr_path}: {lr.shape} does not match HR {hr_path.name} {hr.shape} at x{s}")
        return SRPair(hr_path.stem, lr, hr[: lr.shape[0] * s, : lr.shape[1] * s])


def open_dataset(path: str | os.PathLike, scale: int, cache_dir: str | os.PathLike | None = None,
                 degradation: EvalDegradation | None = None) -> SRDataset:
    """A test or training set by folder: ``DIR/HR`` + ``DIR/LR_bicubic/X{s}`` (BasicSR benchmark layout),
    ``X_HR`` + ``X_LR_bicubic/X{s}`` (DIV2K), or a folder of HR images. With a ``degradation``, the LR
    images are made from the HR ones (MATLAB bicubic, then the degradation), whatever LR folder exists."""
    path = Path(path)
    if not path.is_dir():
        raise RepsrError(f"{path}: no such folder")
    if degradation is not None:
        hr = path / "HR" if (path / "HR").is_dir() else path
        return HRFolder(hr, scale, cache_dir, name=path.name, degradation=degradation)
    if (path / "HR").is_dir():
        lr = path / "LR_bicubic" / f"X{scale}"
        if lr.is_dir():
            return PairedFolder(path / "HR", lr, scale, name=path.name)
        return HRFolder(path / "HR", scale, cache_dir, name=path.name)
    if path.name.endswith("_HR"):
        lr = path.with_name(path.name[: -len("_HR")] + "_LR_bicubic") / f"X{scale}"
        if lr.is_dir():
            return PairedFolder(path, lr, scale)
    return HRFolder(path, scale, cache_dir)


def color_convert(img: Tensor, color: str) -> Tensor:
    """CxHxW in [0,1] to the training colour space: ``rgb`` (3 channels) or ``y`` (1 channel)."""
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    img = img[:3]
    return rgb2ycbcr(img, y_only=True) if color == "y" else img


@dataclass(frozen=True)
class PatchParams:
    """Where one training patch comes from and how it is flipped (LR coordinates)."""

    image: int
    top: int
    left: int
    hflip: bool
    vflip: bool
    transpose: bool


class TrainPatches(torch.utils.data.Dataset):
    """Random paired crops with flips and 90-degree rotations, values in [0, 1].

    An item is addressed by ``(epoch, index)`` (a plain ``index`` means epoch 0), and its randomness
    comes from ``(seed, epoch, index)`` alone: an epoch yields the same patches whatever the number
    of workers, the device that crops them, or where training resumed. ``repeat`` makes one epoch
    visit each image that many times (291 images make a short epoch otherwise).
    """

    def __init__(self, sources: SRDataset | list[SRDataset], lr_patch: int, repeat: int = 1, augment: bool = True,
                 color: str = "rgb", seed: int = 0) -> None:
        if color not in ("rgb", "y"):
            raise RepsrError(f"color must be 'rgb' or 'y', got {color!r}")
        if lr_patch < 1 or repeat < 1:
            raise RepsrError(f"lr_patch and repeat must be >= 1, got {lr_patch} and {repeat}")
        self.sources = sources if isinstance(sources, list) else [sources]
        if len({s.scale for s in self.sources}) != 1:
            raise RepsrError("training sets must share one scale")
        self.scale = self.sources[0].scale
        self.lr_patch, self.repeat = lr_patch, repeat
        self.augment, self.color, self.seed = augment, color, seed
        self.items, self.skipped = [], []  # images smaller than a patch cannot give one: skipped, and listed
        for source in self.sources:
            for i in range(len(source)):
                lr = source[i].lr
                too_small = lr.shape[0] < lr_patch or lr.shape[1] < lr_patch
                (self.skipped if too_small else self.items).append((source, i))
        if not self.items:
            raise RepsrError(f"every training image is smaller than the LR patch {lr_patch}; use a smaller patch")

    @property
    def num_images(self) -> int:
        return len(self.items)

    def pair(self, image: int) -> SRPair:
        source, i = self.items[image]
        return source[i]

    def __len__(self) -> int:
        return self.num_images * self.repeat

    def params(self, key: int | tuple[int, int]) -> PatchParams:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, epoch, index])
        image = index % self.num_images
        lr = self.pair(image).lr
        top = int(rng.integers(0, lr.shape[0] - self.lr_patch + 1))
        left = int(rng.integers(0, lr.shape[1] - self.lr_patch + 1))
        flips = rng.integers(0, 2, size=3) if self.augment else (0, 0, 0)
        return PatchParams(image, top, left, *(bool(f) for f in flips))

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        p = self.params(key)
        pair = self.pair(p.image)
        s, n = self.scale, self.lr_patch
        lr = to_tensor(pair.lr[p.top : p.top + n, p.left : p.left + n])
        hr = to_tensor(pair.hr[p.top * s : (p.top + n) * s, p.left * s : (p.left + n) * s])
        lr, hr = (augment(t, p.hflip, p.vflip, p.transpose) for t in (lr, hr))
        epoch, index = key if isinstance(key, tuple) else (0, key)
        return {"lr": color_convert(lr, self.color), "hr": color_convert(hr, self.color),
                "key": torch.tensor([epoch, index])}


def augment(t: Tensor, hflip: bool, vflip: bool, transpose: bool) -> Tensor:
    """Flip/transpose the last two axes; the three choices give all 8 rotations and reflections."""
    if hflip:
        t = t.flip(-1)
    if vflip:
        t = t.flip(-2)
    if transpose:
        t = t.transpose(-1, -2)
    return t.contiguous()
