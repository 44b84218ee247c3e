"""``repsr train``: the RepSR training loop, assembled from its parts.

Mini-batch BN statistics until ``train.bn.switch``, population statistics after (:mod:`.bn_schedule`);
the update of one iteration is :mod:`.step`; run folder, log, checkpoints and RNG are :mod:`.run_state`;
validation and the final deploy file are :mod:`.validation`; the batches are :mod:`.data_stream`.
Multi-GPU and multi-node runs use ``torchrun`` and DistributedDataParallel.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..archs.networks import RepSRNet
from ..bn import get_bn_phase, set_bn_sync
from ..checkpoint import model_from_checkpoint
from ..config import Config
from ..ema import ModelEMA
from ..errors import RepsrError
from . import run_state, validation
from .bn_schedule import BNSchedule
from .data_stream import TrainingData
from .step import TrainStep


class Trainer:
    """One training run in folder ``out``: build everything (resuming the newest checkpoint), then :meth:`run`."""

    def __init__(self, config: Config, out: str | os.PathLike, resume: bool = False) -> None:
        self.config, self.out = config, Path(out)
        self.dist = run_state.Distributed(config.device)
        self.device = self.dist.device
        self.checkpoints = run_state.CheckpointFolder(self.out / "checkpoints", config.checkpoint.keep)
        self.run_log = run_state.RunLog(self.out, self.dist.main)  # before _load, whose messages belong in it
        existing = self.checkpoints.paths()
        run_state.prepare_run_folder(self.out, config, existing, resume, self.dist.main)
        self.dist.barrier()
        run_state.set_determinism(config.deterministic)

        self.model, net = build_networks(config, self.dist)
        self.ema = ModelEMA(self.model, config.train.ema_decay) if config.train.ema_decay > 0 else None
        self.step = TrainStep(self.model, net, config, self.device)
        b = config.train.bn
        self.bn = BNSchedule(self.model, self.ema, lambda count: self.data.stats(count), b.recompute_batches,
                             b.train_affine, config.switch_iteration(), self.run_log.log)
        self.iteration = 0
        self.stopped_early = False  # by train.max_seconds or SIGTERM
        self.train_seconds, self.train_iterations = 0.0, 0  # time in training steps only (not validation)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, float] = {}
        if existing:
            self._load()

        self.data = TrainingData(config, self.device, self.dist.rank, self.dist.world, self.run_log.log)
        self.run_log.open_tensorboard(config.logger.tensorboard, self.iteration)

    # ------------------------------------------------------------------ checkpoints
    def _load(self) -> None:
        path, payload = self.checkpoints.newest(self.run_log.log)
        saved = model_from_checkpoint(payload, use_ema=False, source=str(path))
        if saved.config != self.model.config:
            raise RepsrError(f"{path}: network {saved.config} does not match the config's {self.model.config}")
        self.model.load_state_dict(payload["params"])
        if self.ema is not None:
            self.ema.module.load_state_dict(payload.get("params_ema", payload["params"]))
        self.step.optimizer.load_state_dict(payload["optimizer"])
        self.step.scheduler.load_state_dict(payload["scheduler"])
        run_state.restore_rng(payload["rng"], self.device)
        self.iteration = payload["iteration"]
        self.train_seconds = payload.get("train_seconds", 0.0)
        self.train_iterations = payload.get("train_iterations", 0)
        self.history, self.best = payload.get("history", []), payload.get("best", {})
        self.bn.load_frozen(payload.get("frozen_affine", []), self.device, str(path))
        self.run_log.log(f"resumed from {path} at iteration {self.iteration} (BN phase: {get_bn_phase(self.model)})")

    def save(self, tag: str | None = None) -> Path | None:
        if not self.dist.main:
            return None
        return self.checkpoints.save(
            tag or f"iter_{self.iteration:08d}.pth", self.model, self.ema.module if self.ema else None,
            prune=tag is None, iteration=self.iteration, optimizer=self.step.optimizer.state_dict(),
            scheduler=self.step.scheduler.state_dict(), rng=run_state.rng_state(self.device),
            config=self.config.to_dict(), history=self.history, best=self.best, train_seconds=self.train_seconds,
            train_iterations=self.train_iterations, frozen_affine=self.bn.frozen_state())

    # ------------------------------------------------------------------ BN and validation
    def eval_model(self, which: str) -> nn.Module:
        """The raw or EMA model as validated and merged (see :func:`.validation.eval_model`)."""
        model = self.model if which == "raw" else self.ema.module
        return validation.eval_model(model, which, lambda: self.data.stats(self.config.train.bn.recompute_batches))

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        models = {which: self.eval_model(which) for which in (("raw", "ema") if self.ema else ("raw",))}
        entry = validation.validate(models, self.data.val_sets, self.run_log, self.iteration, get_bn_phase(self.model),
                                    self.best, self.config.data.val.save_images)
        self.history.append(entry)
        return entry

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Train to ``train.total_iter`` (or until ``train.max_seconds`` or SIGTERM), then :meth:`finish`."""
        with run_state.stop_on_sigterm() as request:
            return self._run(run_state.StopRule(self.config.train.max_seconds, self.dist, request))

    def _run(self, stop: run_state.StopRule) -> dict[str, Any]:
        c = self.config
        total = c.train.total_iter
        stream = self.data.stream(self.iteration)
        show = c.logger.progress if c.logger.progress is not None else sys.stderr.isatty()
        bar = tqdm(total=total, initial=self.iteration, disable=not (show and self.dist.main), dynamic_ncols=True,
                   desc=c.name, file=sys.stderr)
        self.model.train()
        if self.iteration == 0:
            self.run_log.log(f"training {c.name}: x{c.scale} M{c.network.num_block}C{c.network.num_feat} "
                             f"'{c.network.block}' blocks, {total} iterations, BN switch at {self.bn.switch_at}, "
                             f"{self.data.patches.num_images} images, device {self.device}, world size "
                             f"{self.dist.world}")
        window_loss, window_start, window_count = 0.0, time.perf_counter(), 0
        while self.iteration < total:
            if self.bn.due(self.iteration):
                self.bn.switch(self.iteration)
            step_start = time.perf_counter()
            loss = self.step.loss(next(stream))
            if not torch.isfinite(loss):
                path = self.save(tag=f"nonfinite_iter_{self.iteration + 1:08d}.pth")
                raise RepsrError(f"loss became {loss.item()} at iteration {self.iteration + 1}; the state before it "
                                 f"was saved to {path}. Lower train.optimizer.lr or set train.grad_clip")
            self.step.update(loss, self.bn, self.ema)
            self.iteration += 1
            bar.update(1)
            window_loss += loss.item()  # .item() waits for the device, so the step time below is real
            self.train_seconds += time.perf_counter() - step_start
            self.train_iterations += 1
            window_count += 1
            if self.iteration % c.logger.print_every == 0 or self.iteration == total:
                self.run_log.progress(self.iteration, c.train.total_iter, window_loss / window_count, self.step.lr,
                                      window_count / (time.perf_counter() - window_start), get_bn_phase(self.model))
                bar.set_postfix(loss=f"{window_loss / window_count:.4f}")
                window_loss, window_start, window_count = 0.0, time.perf_counter(), 0
            if c.data.val.every and self.iteration % c.data.val.every == 0 and self.iteration < total:
                if self.dist.main:
                    self.validate()
                self.dist.barrier()
            saved = self.iteration % c.checkpoint.every == 0 or self.iteration == total
            if saved:
                self.save()
                self.dist.barrier()
            if self.iteration < total and (reason := stop.reason(self.iteration)):
                self.run_log.log(f"stopping at iteration {self.iteration} of {total}: {reason}; finishing")
                self.stopped_early = True
                if not saved:
                    self.save()
                    self.dist.barrier()
                break
        bar.close()
        return self.finish()

    def finish(self) -> dict[str, Any]:
        """Final validation, the deploy file and results.json (rank 0)."""
        results: dict[str, Any] = {}
        if self.dist.main:
            if self.data.val_sets:
                self.validate()
            which = "ema" if self.ema else "raw"
            header = {"name": self.config.name, "scale": self.config.scale, "iterations": self.iteration,
                      "total_iter": self.config.train.total_iter, "stopped_early": self.stopped_early}
            results = validation.export_and_score(self.eval_model(which), which, self.out, self.data.val_sets,
                                                  self.device, self.run_log, header)
        if self.run_log.writer is not None:
            self.run_log.writer.close()
        self.dist.barrier()
        return results


def build_networks(config: Config, dist: run_state.Distributed) -> tuple[RepSRNet, nn.Module]:
    """The training network on its device, and what the step calls: it, or it wrapped by DDP over several processes
    and compiled if asked (wrapped once, before the step is built)."""
    torch.manual_seed(config.seed)
    n = config.network
    model = RepSRNet(upscale=config.scale, num_feat=n.num_feat, num_block=n.num_block,
                     num_in_ch=1 if config.data.color == "y" else 3, block=n.block, expand=n.expand).to(dist.device)
    set_bn_sync(model, config.train.bn.sync)
    net: nn.Module = model
    if dist.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda"
                                                  else None)
    if config.train.compile:
        net = torch.compile(net)
    return model, net


def train(config: Config, out: str | os.PathLike, resume: bool = False) -> dict[str, Any]:
    """Train with ``config`` into ``out`` (continuing its newest checkpoint when ``resume``)."""
    return Trainer(config, out, resume).run()
