"""Training: schedule, EMA/merge consistency, bit-exact resume after SIGKILL, 2-process DDP (gloo)."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_run, torchrun

from repsr.archs import branch_forward
from repsr.config import load_config
from repsr.data import HRFolder, TrainPatches
from repsr.errors import RepsrError
from repsr.loading import load_deploy
from repsr.training import BatchKeys, DevicePatches, Trainer, lr_factor, train


def final_state(out: Path) -> dict:
    newest = sorted((out / "checkpoints").glob("iter_*.pth"))[-1]
    return torch.load(newest, weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    for key in ("params", "params_ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"


def test_lr_schedule():
    cfg = load_config({"data": {"train": {"paths": ["x"]}}, "train": {
        "total_iter": 100, "optimizer": {"lr": 1.0},
        "scheduler": {"type": "cosine", "warmup_iter": 10, "min_lr": 0.01}}}, check_paths=False)
    assert lr_factor(cfg, 0) == pytest.approx(0.1) and lr_factor(cfg, 9) == pytest.approx(1.0)
    assert lr_factor(cfg, 10) == pytest.approx(1.0) and lr_factor(cfg, 100) == pytest.approx(0.01)
    assert lr_factor(cfg, 55) == pytest.approx(0.01 + 0.99 * 0.5)
    cfg.train.scheduler.type, cfg.train.scheduler.milestones, cfg.train.scheduler.warmup_iter = "multistep", [40, 70], 0
    assert [lr_factor(cfg, i) for i in (39, 40, 70)] == [1.0, 0.5, 0.25]


def test_batch_keys_depend_only_on_seed_and_iteration():
    full = iter(BatchKeys(20, 4, seed=3))
    stream = [next(full) for _ in range(12)]
    resumed = iter(BatchKeys(20, 4, seed=3, start=7))
    assert [next(resumed) for _ in range(5)] == stream[7:]
    assert {i for b in stream[:5] for _, i in b} == set(range(20))  # an epoch visits every patch once
    ranks = [iter(BatchKeys(20, 2, seed=3, rank=r, world=2)) for r in (0, 1)]
    assert sorted(next(ranks[0]) + next(ranks[1])) == sorted(stream[0])  # ranks split the global batch
    with pytest.raises(RepsrError, match="larger than"):
        BatchKeys(3, 4, seed=0)


def test_device_patches_equal_dataloader_patches(images):
    patches = TrainPatches(HRFolder(images / "train", 2), 12, repeat=2, seed=5)
    keys = [(0, 3), (1, 7), (2, 0)]
    batch = DevicePatches(patches, torch.device("cpu")).batch(keys)
    assert torch.equal(batch["lr"], torch.stack([patches[k]["lr"] for k in keys]))
    assert torch.equal(batch["hr"], torch.stack([patches[k]["hr"] for k in keys]))


@pytest.mark.parametrize("switch", [0.5, None])
def test_merged_ema_equals_ema_in_eval(images, tmp_path, switch):
    trainer = Trainer(load_config(tiny_run(images, **{"train.bn.switch": switch})), tmp_path)
    results = trainer.run()
    deploy, _ = load_deploy(tmp_path / "model_deploy.safetensors")
    ema = trainer.eval_model("ema").eval()
    x = torch.rand(2, 3, 13, 17)
    with torch.no_grad(), branch_forward(ema):
        torch.testing.assert_close(deploy(x), ema(x), rtol=1e-5, atol=1e-5)
    assert results["model"] == "ema" and set(results["datasets"]) == {"val"}
    assert {"psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "images"} <= set(results["datasets"]["val"])
    assert (tmp_path / "config.yml").is_file() and len(list((tmp_path / "checkpoints").glob("iter_*.pth"))) == 2
    if switch is None:  # statistics re-estimated for the EMA weights, not the averaged running stats
        raw_stats = trainer.ema.module.blocks[0].paths[0].bn.running_mean
        assert not torch.allclose(ema.blocks[0].paths[0].bn.running_mean, raw_stats)


def test_population_phase_after_switch_and_frozen_affine(images, tmp_path):
    config = tiny_run(images, **{"train.bn.train_affine": False, "train.total_iter": 8})
    trainer = Trainer(load_config(config), tmp_path)
    trainer.run()
    bn = trainer.model.blocks[0].paths[0].bn
    assert bn.phase == "population"
    frozen = dict(trainer.bn.frozen_affine)
    assert frozen and all(torch.equal(p, frozen[p]) for p in (bn.weight, bn.bias))


def test_existing_run_needs_resume(images, tmp_path):
    train(load_config(tiny_run(images, **{"train.total_iter": 4})), tmp_path)
    with pytest.raises(RepsrError, match="use --resume"):
        Trainer(load_config(tiny_run(images)), tmp_path)


def test_nonfinite_loss_stops_with_a_checkpoint(images, tmp_path):
    trainer = Trainer(load_config(tiny_run(images, **{"train.optimizer.lr": 1e30})), tmp_path)
    with pytest.raises(RepsrError, match="loss became .* the state before it was saved"):
        trainer.run()
    assert list((tmp_path / "checkpoints").glob("nonfinite_iter_*.pth"))


def _cli(config_path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "repsr.cli", "train", str(config_path), "--out", str(out), *extra]


@pytest.mark.parametrize("degradation", [None, {}], ids=["bicubic", "real-world"])
def test_sigkill_and_resume_reach_the_same_weights(images, tmp_path, degradation):
    cfg = tiny_run(images, **{"train.total_iter": 400, "checkpoint.every": 10, "checkpoint.keep": 2,
                          "data.train.degradation": degradation})
    config_path = tmp_path / "tiny.yml"
    config_path.write_text(yaml.safe_dump(cfg))
    # the reference run is a process like the killed ones: same thread count, so the same float reduction order
    assert subprocess.run(_cli(config_path, tmp_path / "straight"), capture_output=True).returncode == 0

    out = tmp_path / "killed"
    rng = np.random.default_rng(0)
    for attempt in range(2):  # kill twice at random points, each time after a new checkpoint exists
        proc = subprocess.Popen(_cli(config_path, out, *(["--resume"] if attempt else [])),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = 10 + 100 * attempt + int(rng.integers(0, 80))
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            done = [int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("iter_*.pth")] if out.exists() else []
            if done and max(done) >= target:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert subprocess.run(_cli(config_path, out, "--resume"), capture_output=True).returncode == 0
    assert_same_weights(final_state(tmp_path / "straight"), final_state(out))
    assert not list((out / "checkpoints").glob(".*.tmp"))  # temp files of interrupted writes are cleaned up


def test_two_process_ddp_ranks_agree_and_resume(images, tmp_path):
    config_path = tmp_path / "tiny.yml"
    config_path.write_text(yaml.safe_dump(tiny_run(images, **{"train.total_iter": 12})))
    out = tmp_path / "run"
    result = torchrun("train", str(config_path), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert (out / "model_deploy.safetensors").is_file()
    result = torchrun("resume", str(config_path), str(out), "train.total_iter=16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "at iteration 12" in result.stderr
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(torch.equal(ranks[0][n], ranks[1][n]) for n in ranks[0])
    assert torch.load(sorted((out / "checkpoints").glob("iter_*.pth"))[-1], weights_only=True)["iteration"] == 16


def test_sync_bn_equals_global_batch_bn(tmp_path):
    result = torchrun("syncbn", "-", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    for r in (0, 1):
        errors = [float(v) for v in (tmp_path / f"syncbn_rank{r}.txt").read_text().split()]
        assert max(errors) < 1e-5, errors


def test_models_without_bn_have_no_switch(images, tmp_path):
    trainer = Trainer(load_config(tiny_run(images, **{"network.block": "plain", "train.total_iter": 8})), tmp_path)
    trainer.run()
    log = (tmp_path / "train.log").read_text()
    assert "population statistics re-estimated" not in log and "BN switch at None" in log


def test_compiled_training_follows_the_eager_trajectory(images, tmp_path):
    """train.compile: the same loss at every iteration as eager within float32 tolerance, across the BN switch.
    (Weights are not compared: Adam turns the float32 noise of exactly-zero gradients, such as a
    batch-phase BN path's expand bias, into full-size steps, differently in each.)"""
    overrides = {"train.total_iter": 8, "train.bn.switch": 0.5, "deterministic": False, "logger.print_every": 1}
    losses = []
    for run, compile_ in (("eager", False), ("compiled", True)):
        Trainer(load_config(tiny_run(images, **overrides, **{"train.compile": compile_})), tmp_path / run).run()
        losses.append(np.float64(re.findall(r"loss ([0-9.]+)", (tmp_path / run / "train.log").read_text())))
    assert len(losses[0]) == 8
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_max_seconds_stops_and_still_finishes(images, tmp_path):
    trainer = Trainer(load_config(tiny_run(images, **{"train.total_iter": 100000, "train.max_seconds": 1.5,
                                                  "checkpoint.every": 100000})), tmp_path)
    results = trainer.run()
    assert results["stopped_early"] and 0 < results["iterations"] < 100000 and results["total_iter"] == 100000
    assert (tmp_path / "model_deploy.safetensors").is_file() and (tmp_path / "results.json").is_file()
    assert final_state(tmp_path)["iteration"] == results["iterations"]  # resumable from where it stopped
    assert "stopping at iteration" in (tmp_path / "train.log").read_text()


def test_sigterm_stops_after_the_iteration_and_writes_results(images, tmp_path):
    cfg = tiny_run(images, **{"train.total_iter": 100000, "checkpoint.every": 100000, "logger.print_every": 1})
    config_path = tmp_path / "tiny.yml"
    config_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    proc = subprocess.Popen(_cli(config_path, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and "iter 5/" not in ((out / "train.log").read_text()
                                                        if (out / "train.log").is_file() else ""):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["stopped_early"] and results["iterations"] >= 5
    assert (out / "model_deploy.safetensors").is_file()
