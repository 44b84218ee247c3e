"""Seamless tiles: the one grid every path cuts images into, and halving on out-of-memory.

Tiles overlap by the network's receptive radius (one LR pixel per 3x3 conv), so every output pixel of a tile
sees exactly the input it sees in the whole image, and at image borders the tile's zero padding is the image's:
tiled output equals untiled output. In float64 it is bit-identical; in float32 the conv libraries' summation order
depends on the tensor's width, so values can differ in the last bits (about 1e-7), which can flip a rare pixel at
a rounding boundary by one level.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

from .errors import RepsrError

MIN_TILE = 16
T = TypeVar("T")


@dataclass(frozen=True)
class Tile:
    """Rows y0:y1 and columns x0:x1 of the input are this tile's own; py0:py1, px0:px1 add the context it reads."""

    y0: int
    y1: int
    x0: int
    x1: int
    py0: int
    py1: int
    px0: int
    px1: int

    def crop(self, scale: int) -> tuple[slice, slice]:
        """Where the tile's own part lies in its upscaled result (rows, columns)."""
        return (slice((self.y0 - self.py0) * scale, (self.y1 - self.py0) * scale),
                slice((self.x0 - self.px0) * scale, (self.x1 - self.px0) * scale))

    def place(self, scale: int) -> tuple[slice, slice]:
        """Where the tile's own part goes in the upscaled image (rows, columns)."""
        return slice(self.y0 * scale, self.y1 * scale), slice(self.x0 * scale, self.x1 * scale)


def tile_grid(h: int, w: int, tile: int, pad: int) -> Iterator[Tile]:
    """Tiles of ``tile`` x ``tile`` input pixels (0: one tile) covering h x w in row order, each with ``pad`` pixels
    of context where the image has them."""
    tile = tile or max(h, w)
    for i in range(math.ceil(h / tile) * math.ceil(w / tile)):
        cols = math.ceil(w / tile)
        y0, x0 = (i // cols) * tile, (i % cols) * tile
        y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
        yield Tile(y0, y1, x0, x1, max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad))


def halving_on_oom(run: Callable[[int], T], tile: int, hw: tuple[int, int]) -> T:
    """``run(tile)``; on GPU out-of-memory, again with half the tile (0, one pass, counts as the image's size), down
    to :data:`MIN_TILE` pixels."""
    while True:
        try:
            return run(tile)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            size = tile or max(hw)
            if size <= MIN_TILE:
                raise RepsrError("out of GPU memory even with 16-pixel tiles") from None
            tile = max(MIN_TILE, size // 2)
