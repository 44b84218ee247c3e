"""The training data stream: a pure function of (seed, iteration), so a resumed run needs no data state.

:class:`BatchKeys` says which patches each rank reads at each iteration; :class:`DevicePatches` cuts
them on the device; :func:`batches` turns keys into batches (on the device, or through a DataLoader);
:class:`DegradedBatches` replaces their LR by the real-world degradation of their HR, on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..config import Config
from ..data import TrainPatches, augment, color_convert, default_cache_dir, open_dataset
from ..degradation import DegradationConfig, SecondOrderDegradation, parse_degradations
from ..errors import RepsrError
from ..images import PEAKS
from ..metrics import rgb2ycbcr


class BatchKeys:
    """The (epoch, index) keys of this rank's share of each global batch, from ``start`` on, forever.

    Epoch e is a permutation seeded by (seed, e); iteration i reads global batch i mod per-epoch of
    epoch i // per-epoch. So the stream depends only on the seed and the iteration, and a resumed
    run sees exactly the batches an uninterrupted run would have.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0, rank: int = 0, world: int = 1) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.rank, self.world = start, rank, world
        self.per_epoch = size // (batch_size * world)
        if self.per_epoch == 0:
            raise RepsrError(f"a global batch of {batch_size * world} is larger than the {size} patches of an "
                             "epoch; raise data.train.repeat or lower data.train.batch_size")

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration, perm, perm_epoch = self.start, None, -1
        global_batch = self.batch_size * self.world
        while True:
            epoch, offset = divmod(iteration, self.per_epoch)
            if epoch != perm_epoch:
                perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100003 + epoch))
                perm_epoch = epoch
            chunk = perm[offset * global_batch : (offset + 1) * global_batch]
            mine = chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
            yield [(epoch, int(i)) for i in mine]
            iteration += 1


class DevicePatches:
    """The training set decoded once onto the device; crops and flips are cut there.

    Gives exactly the patches of :class:`TrainPatches` (same parameters per key) without a
    DataLoader, so a tiny model on a GPU is not starved by Python workers.
    """

    def __init__(self, patches: TrainPatches, device: torch.device) -> None:
        self.patches, self.device = patches, device
        self.images = []
        for i in range(patches.num_images):
            pair = patches.pair(i)
            scale = PEAKS.get(pair.lr.dtype, 255.0)
            self.images.append(tuple(self._upload(a, scale) for a in (pair.lr, pair.hr)))

    def _upload(self, arr: np.ndarray, scale: float) -> tuple[Tensor, float]:
        a = arr[:, :, None] if arr.ndim == 2 else arr
        a = a.astype(np.int32) if a.dtype == np.uint16 else a  # torch has few uint16 kernels
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(self.device), scale

    def batch(self, keys: list[tuple[int, int]]) -> dict[str, Tensor]:
        lrs, hrs = [], []
        s, n = self.patches.scale, self.patches.lr_patch
        for key in keys:
            p = self.patches.params(key)
            (lr, lr_scale), (hr, hr_scale) = self.images[p.image]
            lr_patch = lr[:, p.top : p.top + n, p.left : p.left + n].float() / lr_scale
            hr_patch = hr[:, p.top * s : (p.top + n) * s, p.left * s : (p.left + n) * s].float() / hr_scale
            lrs.append(augment(lr_patch, p.hflip, p.vflip, p.transpose))
            hrs.append(augment(hr_patch, p.hflip, p.vflip, p.transpose))
        color = self.patches.color
        return {"lr": torch.stack([color_convert(t, color) for t in lrs]),
                "hr": torch.stack([color_convert(t, color) for t in hrs]), "key": torch.tensor(keys)}


class DegradedBatches:
    """Batches of the real-world model (``data.train.degradation``): each LR made from its RGB HR patch by
    the second-order degradation, keyed by the patch's (epoch, index), then both in the training colour.
    The patches must come in RGB (``TrainPatches(color="rgb")``); the degradation runs on their device."""

    def __init__(self, config: DegradationConfig, scale: int, seed: int, color: str) -> None:
        self.degradation = SecondOrderDegradation(config, scale, seed)
        self.color = color

    def __call__(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        keys = [tuple(k) for k in batch["key"].tolist()]
        lr, hr = self.degradation(batch["hr"], keys)
        if self.color == "y":
            lr, hr = rgb2ycbcr(lr, y_only=True), rgb2ycbcr(hr, y_only=True)
        return {"lr": lr, "hr": hr, "key": batch["key"]}


def _read(patches: TrainPatches, batch_keys: list[tuple[int, int]], on_device: DevicePatches | None,
          device: torch.device) -> dict[str, Tensor]:
    if on_device is not None:
        return on_device.batch(batch_keys)
    items = [patches[k] for k in batch_keys]
    return {name: torch.stack([item[name] for item in items]).to(device) for name in items[0]}


def batches(patches: TrainPatches, keys: BatchKeys, config: Config, device: torch.device,
            on_device: DevicePatches | None, degraded: DegradedBatches | None = None) -> Iterator[dict[str, Tensor]]:
    """The batches of ``keys``, on ``device``: cut there by ``on_device``, else read by a DataLoader;
    with ``degraded``, their LR is the real-world degradation of their HR."""
    finish = degraded or (lambda batch: batch)
    if on_device is not None:
        for batch_keys in keys:
            yield finish(on_device.batch(batch_keys))
        return
    workers = config.data.train.num_workers
    loader = torch.utils.data.DataLoader(patches, batch_sampler=keys, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                         prefetch_factor=4 if workers > 0 else None)
    for batch in loader:
        yield finish({k: v.to(device, non_blocking=True) for k, v in batch.items()})


def stats_batches(patches: TrainPatches, on_device: DevicePatches | None, batch_size: int, seed: int,
                  device: torch.device, count: int, rank: int = 0, world: int = 1,
                  degraded: DegradedBatches | None = None) -> Iterator[Tensor]:
    """``count`` LR training batches of a fixed stream apart from the training one (this rank's share):
    what population statistics are measured on, the same at every call."""
    keys_iter = iter(BatchKeys(len(patches), batch_size, seed + 7919, rank=rank, world=world))
    for _ in range(count):
        batch = _read(patches, next(keys_iter), on_device, device)
        yield (degraded(batch) if degraded else batch)["lr"]


class TrainingData:
    """A config's training and validation sets on this rank, and the two batch streams drawn from the training
    set: the training stream (from an iteration on) and the fixed stream population statistics are measured on."""

    def __init__(self, config: Config, device: torch.device, rank: int = 0, world: int = 1,
                 log: Callable[[str], None] = print) -> None:
        d, v = config.data.train, config.data.val
        cache_dir = Path(d.cache_dir) if d.cache_dir else default_cache_dir()
        train_sets = [open_dataset(config.data_path(p), config.scale, cache_dir) for p in d.paths]
        degradations = dict.fromkeys([None, *parse_degradations(v.degradations or ["clean"], v.degradation_seed)])
        self.val_sets = [open_dataset(config.data_path(p), config.scale, cache_dir, degradation)
                         for degradation in degradations for p in v.paths]
        # the real-world model degrades RGB patches and converts colour after (DegradedBatches)
        self.degraded = (DegradedBatches(d.degradation, config.scale, config.seed, config.data.color)
                         if d.degradation is not None else None)
        self.patches = TrainPatches(train_sets, d.lr_patch, d.repeat, d.augment,
                                    "rgb" if self.degraded else config.data.color, config.seed)
        self.on_device = DevicePatches(self.patches, device) if d.on_device else None
        self.config, self.device, self.rank, self.world = config, device, rank, world
        if self.patches.skipped:
            names = ", ".join(s.hr_files[i].name for s, i in self.patches.skipped)
            log(f"skipping {len(self.patches.skipped)} training images smaller than the LR patch {d.lr_patch}: "
                f"{names}")

    def stream(self, start: int) -> Iterator[dict[str, Tensor]]:
        """The training batches from iteration ``start`` on (this rank's share of each)."""
        keys = BatchKeys(len(self.patches), self.config.data.train.batch_size, self.config.seed, start, self.rank,
                         self.world)
        return batches(self.patches, keys, self.config, self.device, self.on_device, self.degraded)

    def stats(self, count: int) -> Iterator[Tensor]:
        """``count`` LR batches of the fixed statistics stream (this rank's share)."""
        return stats_batches(self.patches, self.on_device, self.config.data.train.batch_size, self.config.seed,
                             self.device, count, self.rank, self.world, self.degraded)
