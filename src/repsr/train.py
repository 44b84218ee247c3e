"""``repsr train``: the RepSR training loop.

Mini-batch BN statistics until ``train.bn.switch``; there the population statistics are re-estimated
exactly over ``train.bn.recompute_batches`` training batches, every BN switches to them and training
goes on; at the end the EMA (or raw) model is merged into a Compact deploy file. Checkpoints hold
everything a bit-exact resume needs (weights, EMA, optimizer, scheduler, BN phase, RNG state,
iteration); the data stream is a pure function of (seed, iteration), so it needs no state at all.
Multi-GPU and multi-node runs use ``torchrun`` and DistributedDataParallel.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import Tensor, nn
from tqdm import tqdm

from .archs.networks import RepSRNet
from .bn import get_bn_phase, recompute_population_stats, set_bn_phase, set_bn_sync
from .checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from .config import Config
from .data import TrainPatches, augment, color_convert, default_cache_dir, open_dataset
from .ema import ModelEMA
from .errors import RepsrError
from .evaluate import evaluate_dataset, super_resolve
from .export import save_deploy
from .fileio import atomic_write
from .inference import prepare
from .modes import eval_mode
from .reparam import reparameterize_model

CHECKPOINT_RE = re.compile(r"iter_(\d+)\.pth$")


# ----------------------------------------------------------------------------- distributed setup

class Distributed:
    """Rank, world size and device from torchrun's environment (a single process without it)."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        if device not in ("auto", "cuda", "cpu"):
            raise RepsrError(f"config key device: expected auto, cuda or cpu, got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RepsrError("config key device: cuda requested but no CUDA device is available")
        self.device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


# ----------------------------------------------------------------------------- data stream

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
            scale = 65535.0 if pair.lr.dtype == np.uint16 else 255.0
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
                "hr": torch.stack([color_convert(t, color) for t in hrs])}


def _batches(patches: TrainPatches, keys: BatchKeys, config: Config, device: torch.device,
             on_device: DevicePatches | None) -> Iterator[dict[str, Tensor]]:
    if on_device is not None:
        for batch_keys in keys:
            yield on_device.batch(batch_keys)
        return
    workers = config.data.train.num_workers
    loader = torch.utils.data.DataLoader(patches, batch_sampler=keys, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                                         prefetch_factor=4 if workers > 0 else None)
    for batch in loader:
        yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


# ----------------------------------------------------------------------------- schedule

def lr_factor(config: Config, iteration: int) -> float:
    """Learning-rate multiplier after ``iteration`` completed iterations (warm-up, then the schedule)."""
    s, total = config.train.scheduler, config.train.total_iter
    if iteration < s.warmup_iter:
        return (iteration + 1) / s.warmup_iter
    if s.type == "multistep":
        return s.gamma ** sum(iteration >= m for m in s.milestones)
    if s.type == "cosine":
        progress = (iteration - s.warmup_iter) / max(1, total - s.warmup_iter)
        floor = s.min_lr / config.train.optimizer.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


# ----------------------------------------------------------------------------- the trainer

class Trainer:
    def __init__(self, config: Config, out: str | os.PathLike, resume: bool = False) -> None:
        self.config, self.out = config, Path(out)
        self.dist = Distributed(config.device)
        self.device = self.dist.device
        self.ckpt_dir = self.out / "checkpoints"
        self.log_file = self.out / "train.log"  # before _load, whose messages belong in it
        existing = self.checkpoints()
        if existing and not resume:
            raise RepsrError(f"{self.out}: has checkpoints already; use --resume to continue or another --out")
        if self.dist.main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.ckpt_dir.glob(".*.tmp"):  # a write cut short by a kill; the previous file is intact
                stale.unlink(missing_ok=True)
            with atomic_write(self.out / "config.yml") as tmp:
                tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        self.dist.barrier()
        if config.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True

        torch.manual_seed(config.seed)
        color = config.data.color
        channels = 1 if color == "y" else 3
        n = config.network
        self.model = RepSRNet(upscale=config.scale, num_feat=n.num_feat, num_block=n.num_block, num_in_ch=channels,
                              block=n.block, expand=n.expand).to(self.device)
        set_bn_sync(self.model, config.train.bn.sync)
        self.ema = ModelEMA(self.model, config.train.ema_decay) if config.train.ema_decay > 0 else None
        opt = config.train.optimizer
        # fused: one kernel over all parameters (RepSR blocks have many small ones)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=opt.lr, betas=tuple(opt.betas),
                                          weight_decay=opt.weight_decay, fused=self.device.type in ("cpu", "cuda"))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda it: lr_factor(config, it))
        self.iteration = 0
        self.train_seconds, self.train_iterations = 0.0, 0  # time in training steps only (not validation)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, float] = {}
        self.frozen_affine: list[tuple[Tensor, Tensor]] = []
        if existing:
            self._load(existing)

        cache = config.data.train.cache_dir
        cache_dir = Path(cache) if cache else default_cache_dir()
        d = config.data.train
        train_sets = [open_dataset(config.data_path(p), config.scale, cache_dir) for p in d.paths]
        self.val_sets = [open_dataset(config.data_path(p), config.scale, cache_dir) for p in config.data.val.paths]
        self.patches = TrainPatches(train_sets, d.lr_patch, d.repeat, d.augment, color, config.seed)
        self.on_device = DevicePatches(self.patches, self.device) if d.on_device else None
        self.net = self.model
        if self.dist.world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if config.train.compile:
            self.net = torch.compile(self.net)
        if self.patches.skipped:
            names = ", ".join(s.hr_files[i].name for s, i in self.patches.skipped)
            self.log(f"skipping {len(self.patches.skipped)} training images smaller than the LR patch "
                     f"{d.lr_patch}: {names}")
        self.writer = self._tensorboard() if self.dist.main else None

    # ------------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        """Checkpoint files in DIR/checkpoints, oldest first."""
        if not self.ckpt_dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.ckpt_dir.iterdir() if (m := CHECKPOINT_RE.search(p.name))]
        return [p for _, p in sorted(found)]

    def _load(self, candidates: list[Path]) -> None:
        for path in reversed(candidates):
            try:
                payload = read_checkpoint(path)
                break
            except RepsrError as e:
                self.log(f"skipping unreadable checkpoint: {e}")
        else:
            raise RepsrError(f"{self.ckpt_dir}: no readable checkpoint to resume from")
        saved = model_from_checkpoint(payload, use_ema=False, source=str(path))
        if saved.config != self.model.config:
            raise RepsrError(f"{path}: network {saved.config} does not match the config's {self.model.config}")
        self.model.load_state_dict(payload["params"])
        if self.ema is not None:
            self.ema.module.load_state_dict(payload.get("params_ema", payload["params"]))
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"]["torch"])
        if torch.cuda.is_available() and payload["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(payload["rng"]["cuda"], self.device)
        self.iteration = payload["iteration"]
        self.train_seconds = payload.get("train_seconds", 0.0)
        self.train_iterations = payload.get("train_iterations", 0)
        self.history, self.best = payload.get("history", []), payload.get("best", {})
        frozen, params = payload.get("frozen_affine", []), self._bn_affine_params()
        if frozen and len(frozen) != len(params):
            raise RepsrError(f"{path}: holds {len(frozen)} frozen BN affine tensors, the network has {len(params)}")
        self.frozen_affine = [(p, t.to(self.device)) for p, t in zip(params, frozen, strict=True)] if frozen else []
        self.log(f"resumed from {path} at iteration {self.iteration} (BN phase: {get_bn_phase(self.model)})")

    def save(self, tag: str | None = None) -> Path | None:
        if not self.dist.main:
            return None
        name = tag or f"iter_{self.iteration:08d}.pth"
        rng = {"torch": torch.get_rng_state(),
               "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None}
        path = save_checkpoint(
            self.ckpt_dir / name, self.model, self.ema.module if self.ema else None,
            iteration=self.iteration, optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            rng=rng, config=self.config.to_dict(), history=self.history, best=self.best,
            train_seconds=self.train_seconds, train_iterations=self.train_iterations,
            frozen_affine=[t.detach().cpu() for _, t in self.frozen_affine])
        if tag is None:
            for old in self.checkpoints()[: -self.config.checkpoint.keep]:
                old.unlink(missing_ok=True)
        return path

    # ------------------------------------------------------------------ logging
    def log(self, message: str) -> None:
        if not self.dist.main:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        tqdm.write(line, file=sys.stderr)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "a") as f:
            f.write(line + "\n")

    def _tensorboard(self):
        wanted = self.config.logger.tensorboard
        if wanted is False:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if wanted:
                raise RepsrError("logger.tensorboard is true but TensorBoard is not installed "
                                 "(pip install tensorboard)") from None
            return None
        return SummaryWriter(str(self.out / "tb"), purge_step=self.iteration + 1 if self.iteration else None)

    def scalar(self, name: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, self.iteration)

    # ------------------------------------------------------------------ BN switch
    def _bn_affine_params(self) -> list[Tensor]:
        return [p for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
                for p in (m.weight, m.bias)]

    def _stats_batches(self, count: int) -> Iterator[Tensor]:
        """``count`` training batches of a fixed, separate stream (this rank's share), LR only."""
        keys = BatchKeys(len(self.patches), self.config.data.train.batch_size, self.config.seed + 7919,
                         rank=self.dist.rank, world=self.dist.world)
        keys_iter = iter(keys)
        for _ in range(count):
            batch_keys = next(keys_iter)
            if self.on_device is not None:
                yield self.on_device.batch(batch_keys)["lr"]
            else:
                yield torch.stack([self.patches[k]["lr"] for k in batch_keys]).to(self.device)

    def switch_bn(self) -> None:
        count = self.config.train.bn.recompute_batches
        recompute_population_stats(self.model, self._stats_batches(count))
        set_bn_phase(self.model, "population")
        if self.ema is not None:
            self.ema.reset(self.model)  # the average restarts among weights trained with these statistics
        if not self.config.train.bn.train_affine:
            self.frozen_affine = [(p, p.detach().clone()) for p in self._bn_affine_params()]
        self.log(f"iteration {self.iteration}: population statistics re-estimated over {count} batches; "
                 "BN now uses them")

    def eval_model(self, which: str) -> nn.Module:
        """The raw or EMA model as validated and merged: in the batch phase the EMA model's statistics
        are re-estimated (on a copy) for its own weights; the raw model keeps its running statistics."""
        if which == "raw":
            return self.model
        model = self.ema.module
        if get_bn_phase(model) == "batch":
            model = copy.deepcopy(model)
            recompute_population_stats(model, self._stats_batches(self.config.train.bn.recompute_batches))
        return model

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"iteration": self.iteration, "bn_phase": get_bn_phase(self.model)}
        models = {which: self.eval_model(which) for which in (("raw", "ema") if self.ema else ("raw",))}
        for which, model in models.items():
            with eval_mode(model):
                for ds in self.val_sets:
                    r = evaluate_dataset(model, ds, progress=False)
                    entry[f"{which}/{ds.name}"] = {"psnr": r["psnr"], "ssim": r["ssim"]}
                    self.scalar(f"val_{which}/{ds.name}/psnr", r["psnr"])
                    self.scalar(f"val_{which}/{ds.name}/ssim", r["ssim"])
                    self.best[f"{which}/{ds.name}"] = max(self.best.get(f"{which}/{ds.name}", -1.0), r["psnr"])
        if self.writer is not None and self.val_sets:
            ds = self.val_sets[0]
            with eval_mode(models["ema" if self.ema else "raw"]) as model:
                for i in range(min(self.config.data.val.save_images, len(ds))):
                    sr = super_resolve(model, ds[i].lr, ds.scale)
                    self.writer.add_image(f"val/{ds[i].name}", sr, self.iteration,
                                          dataformats="HW" if sr.ndim == 2 else "HWC")
        self.history.append(entry)
        summary = ", ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.4f}" for k, v in entry.items() if isinstance(v, dict))
        self.log(f"validation at {self.iteration} ({entry['bn_phase'] or 'no'} BN): {summary}")
        return entry

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        c = self.config
        total, switch_at = c.train.total_iter, c.switch_iteration()
        if get_bn_phase(self.model) is None:
            switch_at = None  # no BN, nothing to switch (and no EMA restart)
        keys = BatchKeys(len(self.patches), c.data.train.batch_size, c.seed, self.iteration,
                         self.dist.rank, self.dist.world)
        batches = _batches(self.patches, keys, c, self.device, self.on_device)
        loss_fn = F.l1_loss if c.train.loss == "l1" else F.mse_loss
        show = c.logger.progress if c.logger.progress is not None else sys.stderr.isatty()
        bar = tqdm(total=total, initial=self.iteration, disable=not (show and self.dist.main), dynamic_ncols=True,
                   desc=c.name, file=sys.stderr)
        self.model.train()
        if self.iteration == 0:
            self.log(f"training {c.name}: x{c.scale} M{c.network.num_block}C{c.network.num_feat} "
                     f"'{c.network.block}' blocks, {total} iterations, BN switch at {switch_at}, "
                     f"{self.patches.num_images} images, device {self.device}, world size {self.dist.world}")
        window_loss, window_start, window_count = 0.0, time.perf_counter(), 0
        while self.iteration < total:
            if switch_at is not None and self.iteration >= switch_at and get_bn_phase(self.model) == "batch":
                self.switch_bn()
            step_start = time.perf_counter()
            batch = next(batches)
            out = self.net(batch["lr"])
            loss = loss_fn(out, batch["hr"])
            if not torch.isfinite(loss):
                path = self.save(tag=f"nonfinite_iter_{self.iteration + 1:08d}.pth")
                raise RepsrError(f"loss became {loss.item()} at iteration {self.iteration + 1}; the state before it "
                                 f"was saved to {path}. Lower train.optimizer.lr or set train.grad_clip")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if c.train.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), c.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            with torch.no_grad():
                for p, value in self.frozen_affine:
                    p.copy_(value)
            if self.ema is not None:
                self.ema.update(self.model)
            self.iteration += 1
            bar.update(1)
            window_loss += loss.item()  # .item() waits for the device, so the step time below is real
            self.train_seconds += time.perf_counter() - step_start
            self.train_iterations += 1
            window_count += 1
            if self.iteration % c.logger.print_every == 0 or self.iteration == total:
                elapsed = time.perf_counter() - window_start
                rate = window_count / elapsed
                lr = self.optimizer.param_groups[0]["lr"]
                self.log(f"iter {self.iteration}/{total} loss {window_loss / window_count:.5f} lr {lr:.2e} "
                         f"{rate:.2f} it/s BN {get_bn_phase(self.model) or '-'}")
                self.scalar("train/loss", window_loss / window_count)
                self.scalar("train/lr", lr)
                self.scalar("train/it_per_s", rate)
                self.scalar("train/bn_population", float(get_bn_phase(self.model) == "population"))
                bar.set_postfix(loss=f"{window_loss / window_count:.4f}")
                window_loss, window_start, window_count = 0.0, time.perf_counter(), 0
            if c.data.val.every and self.iteration % c.data.val.every == 0 and self.iteration < total:
                if self.dist.main:
                    self.validate()
                self.dist.barrier()
            if self.iteration % c.checkpoint.every == 0 or self.iteration == total:
                self.save()
                self.dist.barrier()
        bar.close()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Final validation, the deploy file and results.json (rank 0)."""
        results: dict[str, Any] = {}
        if self.dist.main:
            if self.val_sets:
                self.validate()
            which = "ema" if self.ema else "raw"
            deploy = reparameterize_model(self.eval_model(which)).cpu()
            deploy_path = save_deploy(deploy, self.out / "model_deploy.safetensors",
                                      param_key="params_ema" if self.ema else "params")
            results = {"name": self.config.name, "scale": self.config.scale, "iterations": self.iteration,
                       "model": which, "deploy": deploy_path.name, "datasets": {}}
            deploy = prepare(deploy, self.device)
            for ds in self.val_sets:
                ours = evaluate_dataset(deploy, ds, progress=False)
                bicubic = evaluate_dataset("bicubic", ds, progress=False)
                results["datasets"][ds.name] = {"psnr": ours["psnr"], "ssim": ours["ssim"], "images": ours["images"],
                                                "bicubic_psnr": bicubic["psnr"], "bicubic_ssim": bicubic["ssim"]}
                self.log(f"deploy model on {ds.name}: {ours['psnr']:.2f} dB / {ours['ssim']:.4f} "
                         f"(bicubic {bicubic['psnr']:.2f} / {bicubic['ssim']:.4f})")
            with atomic_write(self.out / "results.json") as tmp:
                tmp.write_text(json.dumps(results, indent=2) + "\n")
            self.log(f"wrote {deploy_path} and {self.out / 'results.json'}")
        if self.writer is not None:
            self.writer.close()
        self.dist.barrier()
        return results


def train(config: Config, out: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Train with ``config`` into ``out`` (continuing its newest checkpoint when ``resume``)."""
    return Trainer(config, out, resume).run()
