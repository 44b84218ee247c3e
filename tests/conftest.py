"""Shared test helpers. Tests never read ../shared: they synthesize data or use tests/data/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

DATA = Path(__file__).parent / "data"


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics *and* affine parameters: default BN init makes merge tests trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.2)
                if m.affine:
                    m.weight.copy_(torch.randn(n, generator=gen) * 0.5 + 1)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.3)
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- tiny training runs

def write_wave_images(root: Path, counts: dict[str, int]) -> Path:
    """Smooth random colour waves, 56x48, as PNG folders (``counts``: folder -> image count)."""
    import numpy as np

    from repsr.images import write_image

    rng = np.random.default_rng(0)
    for folder, count in counts.items():
        (root / folder).mkdir()
        for i in range(count):
            yy, xx = np.mgrid[0:48, 0:56] / 9.0
            waves = [np.sin(xx * rng.uniform(0.5, 2) + c) * np.cos(yy * rng.uniform(0.5, 2)) for c in range(3)]
            write_image(root / folder / f"{i}.png", ((np.stack(waves, -1) + 1) * 127.5).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """6 training and 2 validation images for tiny training runs."""
    return write_wave_images(tmp_path_factory.mktemp("data"), {"train": 6, "val": 2})


def tiny_run(images: Path, **overrides) -> dict:
    """A tiny x2 RepSR training config (2 blocks of 8 features, 24 iterations), with dotted-key overrides."""
    data = {
        "name": "tiny", "scale": 2, "seed": 1, "data_root": str(images), "deterministic": True,
        "network": {"num_feat": 8, "num_block": 2},
        "data": {"train": {"paths": ["train"], "lr_patch": 12, "batch_size": 4, "repeat": 4, "num_workers": 0,
                           "cache_dir": str(images / "cache")},
                 "val": {"paths": ["val"], "every": 0}},
        "train": {"total_iter": 24, "ema_decay": 0.9, "bn": {"switch": 0.5, "recompute_batches": 2}},
        "checkpoint": {"every": 4, "keep": 2},
        "logger": {"print_every": 8, "tensorboard": False, "progress": False},
    }
    for key, value in overrides.items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return data


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """tests/ddp_worker.py under ``torchrun`` with 2 CPU processes (gloo) on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(Path(__file__).parent / "ddp_worker.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
