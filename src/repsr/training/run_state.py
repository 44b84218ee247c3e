"""Everything a run keeps outside the loop: processes, the run folder, its log, checkpoints and RNG state.

A checkpoint holds what a bit-exact resume needs (weights, EMA, optimizer, scheduler, BN phase and
frozen affine values, RNG state, iteration); the data stream is a function of (seed, iteration).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm import tqdm

from ..checkpoint import read_checkpoint, save_checkpoint
from ..config import Config
from ..errors import RepsrError
from ..fileio import atomic_write

CHECKPOINT_RE = re.compile(r"iter_(\d+)\.pth$")


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

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (every rank must ask at the same point), so that all stop together."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


@dataclass
class StopRequest:
    requested: bool = False  # set by SIGTERM while the loop runs


class StopRule:
    """When a run stops before its last iteration: past ``max_seconds`` of loop time (0: never) or on SIGTERM. With
    several ranks they decide together, every 10 iterations."""

    def __init__(self, max_seconds: float, dist: Distributed, request: StopRequest) -> None:
        self.limit, self.dist, self.request = max_seconds, dist, request
        self.started = time.perf_counter()

    def reason(self, iteration: int) -> str | None:
        if self.dist.world > 1 and iteration % 10:
            return None
        late = self.limit > 0 and time.perf_counter() - self.started >= self.limit
        if not self.dist.any(self.request.requested or late):
            return None
        return "SIGTERM" if self.request.requested else f"train.max_seconds ({self.limit:g} s)"


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[StopRequest]:
    """While the training loop runs, SIGTERM asks it to stop after the current iteration and finish (write its
    checkpoint, deploy file and results) instead of dying with them unwritten. The main thread only."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame) -> None:
        request.requested = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)


class RunLog:
    """train.log (and the terminal) on rank 0, plus TensorBoard when installed or asked for.

    It exists before anything is loaded, so resume messages reach train.log too.
    """

    def __init__(self, out: Path, main: bool) -> None:
        self.out, self.main = out, main
        self.file = out / "train.log"
        self.writer = None

    def log(self, message: str) -> None:
        if not self.main:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {message}"
        tqdm.write(line, file=sys.stderr)
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.file, "a") as f:
            f.write(line + "\n")

    def open_tensorboard(self, wanted: bool | None, iteration: int) -> None:
        """TensorBoard from ``iteration`` on (later events of a resumed run purged); rank 0 only."""
        if not self.main or wanted is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if wanted:
                raise RepsrError("logger.tensorboard is true but TensorBoard is not installed "
                                 "(pip install tensorboard)") from None
            return
        self.writer = SummaryWriter(str(self.out / "tb"), purge_step=iteration + 1 if iteration else None)

    def scalar(self, name: str, value: float, iteration: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(name, value, iteration)

    def progress(self, iteration: int, total: int, loss: float, lr: float, rate: float, phase: str | None) -> None:
        """A progress line (loss, learning rate, it/s, BN phase), also as TensorBoard scalars."""
        self.log(f"iter {iteration}/{total} loss {loss:.5f} lr {lr:.2e} {rate:.2f} it/s BN {phase or '-'}")
        for name, value in (("loss", loss), ("lr", lr), ("it_per_s", rate), ("bn_population", phase == "population")):
            self.scalar(f"train/{name}", float(value), iteration)


def prepare_run_folder(out: Path, config: Config, existing: list[Path], resume: bool, main: bool) -> None:
    """Refuse to overwrite a run unless resuming; clean up cut-short writes; record the config (rank 0)."""
    if existing and not resume:
        raise RepsrError(f"{out}: has checkpoints already; use --resume to continue or another --out")
    if main:
        ckpt_dir = out / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        for stale in ckpt_dir.glob(".*.tmp"):  # a write cut short by a kill; the previous file is intact
            stale.unlink(missing_ok=True)
        with atomic_write(out / "config.yml") as tmp:
            tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def set_determinism(deterministic: bool) -> None:
    """Deterministic kernels (bit-exact resumes) or cuDNN autotuning (speed)."""
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


class CheckpointFolder:
    """DIR/checkpoints: the run's checkpoints oldest first, the newest that reads, and saving with pruning."""

    def __init__(self, folder: Path, keep: int) -> None:
        self.folder, self.keep = folder, keep

    def paths(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := CHECKPOINT_RE.search(p.name))]
        return [p for _, p in sorted(found)]

    def newest(self, log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint that reads, logging the ones skipped (a write cut short, a damaged disk)."""
        for path in reversed(self.paths()):
            try:
                return path, read_checkpoint(path)
            except RepsrError as e:
                log(f"skipping unreadable checkpoint: {e}")
        raise RepsrError(f"{self.folder}: no readable checkpoint to resume from")

    def save(self, name: str, model: nn.Module, ema_model: nn.Module | None, prune: bool, **state: Any) -> Path:
        """Write checkpoint ``name`` atomically; with ``prune``, keep only the newest ``keep`` iteration checkpoints."""
        path = save_checkpoint(self.folder / name, model, ema_model, **state)
        if prune:
            for old in self.paths()[: -self.keep]:
                old.unlink(missing_ok=True)
        return path


def rng_state(device: torch.device) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)
