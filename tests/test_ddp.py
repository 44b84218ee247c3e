"""Two DDP processes (gloo, CPU) train what one process trains on their global batch.

Each rank reads its share of every global batch (BatchKeys), its gradients are averaged over the ranks, and
with ``train.bn.sync`` its BNs normalize with the statistics of the global batch, its running statistics
follow them and the population statistics of the BN switch pool every rank's batches. So a 2-process run with
batch 2 per rank must end with the weights of a 1-process run with batch 4, up to float32 summation order.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from repsr.config import load_config
from repsr.images import write_image
from repsr.training import Trainer

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for folder, count in (("train", 6), ("val", 1)):
        (root / folder).mkdir()
        for i in range(count):
            yy, xx = np.mgrid[0:48, 0:56] / 9.0
            waves = [np.sin(xx * rng.uniform(0.5, 2) + c) * np.cos(yy * rng.uniform(0.5, 2)) for c in range(3)]
            write_image(root / folder / f"{i}.png", ((np.stack(waves, -1) + 1) * 127.5).astype(np.uint8))
    return root


def config_dict(images: Path, batch_size: int, degradation) -> dict:
    """A tiny x2 RepSR run (BN in every block) with synced BN and the BN switch halfway."""
    data = {
        "name": "ddp", "scale": 2, "seed": 3, "data_root": str(images), "deterministic": True,
        "network": {"num_feat": 8, "num_block": 2, "block": "repsr"},
        "data": {"train": {"paths": ["train"], "lr_patch": 12, "batch_size": batch_size, "repeat": 4,
                           "num_workers": 0, "cache_dir": str(images / "cache")},
                 "val": {"paths": ["val"], "every": 0}},
        "train": {"total_iter": 10, "ema_decay": 0.9, "bn": {"switch": 5, "recompute_batches": 2, "sync": True}},
        "checkpoint": {"every": 10, "keep": 1},
        "logger": {"print_every": 100, "tensorboard": False, "progress": False},
    }
    if degradation is not None:
        data["data"]["train"]["degradation"] = degradation
    return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "ddp_worker.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _final(out: Path) -> dict:
    (path,) = (out / "checkpoints").glob("iter_*.pth")
    return torch.load(path, weights_only=True)


def _function_of(state: dict) -> dict:
    """The state with each RepSR path's expand bias and BN running mean replaced by their difference.

    In the batch phase BN takes the batch mean out, so the expand bias's gradient is exactly zero in exact
    arithmetic and float32 noise of different summation orders moves it (Adam turns noise into full-size steps);
    the switch measures the running mean with that bias in it, so after the switch only bias - running mean
    enters the network's function. Every other value is compared as it is."""
    state = dict(state)
    for name in [n for n in state if n.endswith(".expand.bias")]:
        mean = name.replace(".expand.bias", ".bn.running_mean")
        state[name] = state[name] - state.pop(mean)
    return state


@pytest.mark.parametrize("degradation", [None, {}], ids=["bicubic", "real-world"])
def test_two_ranks_end_with_the_weights_of_one_process_on_the_global_batch(images, tmp_path, degradation):
    config_path = tmp_path / "ddp.yml"
    config_path.write_text(yaml.safe_dump(config_dict(images, 2, degradation)))
    result = _torchrun("train", str(config_path), str(tmp_path / "ddp"))
    assert result.returncode == 0, result.stderr[-3000:]
    single = Trainer(load_config(config_dict(images, 4, degradation)), tmp_path / "single")
    single.run()

    ddp, one = _final(tmp_path / "ddp"), _final(tmp_path / "single")
    assert ddp["iteration"] == one["iteration"] == 10
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "world size 2" in log and "population statistics re-estimated" in log
    for key in ("params", "params_ema"):
        a, b = _function_of(ddp[key]), _function_of(one[key])
        assert a.keys() == b.keys()
        for name in a:
            if not a[name].is_floating_point():
                assert torch.equal(a[name], b[name]), f"{key}.{name}"
                continue
            scale = b[name].abs().max().item()
            error = (a[name] - b[name]).abs().max().item()
            assert error <= 1e-5 * max(scale, 1e-3), f"{key}.{name}: off by {error:.3g} (values up to {scale:.3g})"
    # the ranks' own copies agree with rank 0's checkpoint (ddp_worker saves each rank's model)
    for r in (0, 1):
        rank = torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True)
        assert all(torch.equal(rank[n], ddp["params"][n]) for n in rank)
