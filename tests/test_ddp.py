"""Two DDP processes (gloo, CPU) train what one process trains on their global batch.

Each rank reads its share of every global batch (BatchKeys), its gradients are averaged over the ranks, and
with ``train.bn.sync`` its BNs normalize with the statistics of the global batch, its running statistics
follow them and the population statistics of the BN switch pool every rank's batches. So a 2-process run with
batch 2 per rank must end with the weights of a 1-process run with batch 4, up to float32 summation order.
"""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_run, torchrun

from repsr.config import load_config
from repsr.speed import torch_threads
from repsr.training import Trainer


def config_dict(images: Path, batch_size: int, degradation) -> dict:
    """A tiny x2 RepSR run (BN in every block) with synced BN and the BN switch halfway."""
    data = tiny_run(images, **{"name": "ddp", "seed": 3, "network.block": "repsr",
                               "data.train.batch_size": batch_size, "train.total_iter": 10,
                               "train.bn.switch": 5, "train.bn.sync": True, "checkpoint.every": 10,
                               "checkpoint.keep": 1, "logger.print_every": 100})
    if degradation is not None:
        data["data"]["train"]["degradation"] = degradation
    return data


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
    result = torchrun("train", str(config_path), str(tmp_path / "ddp"))
    assert result.returncode == 0, result.stderr[-3000:]
    with torch_threads(1):  # as each rank runs (OMP_NUM_THREADS=1): the same float reduction order within a batch
        Trainer(load_config(config_dict(images, 4, degradation)), tmp_path / "single").run()

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
