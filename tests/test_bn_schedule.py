"""The BN switch shared by `repsr train` and `repsr demo`, and the ordering bugs the Trainer split fixed."""

from pathlib import Path

import pytest
import torch
from conftest import randomize_bn

import repsr
from repsr import RepSRNet, get_bn_phase
from repsr._version import __version__
from repsr.ema import ModelEMA
from repsr.errors import RepsrError
from repsr.training.bn_schedule import BNSchedule, bn_affine_params


def batches(count):
    return (torch.rand(2, 3, 8, 8) for _ in range(count))


def test_switch_restarts_ema_and_freezes_affine():
    model = randomize_bn(RepSRNet(upscale=2, num_feat=4, num_block=2), seed=2).train()
    ema = ModelEMA(model, 0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the EMA lags behind the model
    messages = []
    bn = BNSchedule(model, ema, batches, recompute_batches=2, train_affine=False, switch_at=3, log=messages.append)
    assert not bn.due(2) and bn.due(3)
    bn.switch(3)
    assert get_bn_phase(model) == "population" and not bn.due(4)
    assert "iteration 3: population statistics re-estimated over 2 batches" in messages[0]
    for p, q in zip(model.parameters(), ema.module.parameters(), strict=True):
        assert torch.equal(p, q)  # the average restarts at the switch
    before = [p.detach().clone() for p in bn_affine_params(model)]
    with torch.no_grad():
        for p in bn_affine_params(model):
            p.add_(0.5)  # what an optimizer step would do
    bn.restore_frozen()
    assert all(torch.equal(p, b) for p, b in zip(bn_affine_params(model), before, strict=True))


def test_frozen_affine_restore_checks_counts():
    model = RepSRNet(upscale=2, num_feat=4, num_block=2)
    bn = BNSchedule(model, None, batches, recompute_batches=1)
    with pytest.raises(RepsrError, match="frozen BN affine tensors"):
        bn.load_frozen([torch.ones(4)], torch.device("cpu"), "ckpt")
    bn.load_frozen([p.detach().clone() for p in bn_affine_params(model)], torch.device("cpu"), "ckpt")
    assert len(bn.frozen_affine) == len(bn_affine_params(model))


def test_no_bn_means_no_switch():
    bn = BNSchedule(RepSRNet(upscale=2, num_feat=4, num_block=1, block="plain"), None, batches, 1, switch_at=0)
    assert bn.switch_at is None and not bn.due(10)


def test_version_has_one_home():
    """export and checkpoint read the version from repsr._version (no cycle through repsr/__init__)."""
    assert repsr.__version__ == __version__
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'version = { attr = "repsr._version.__version__" }' in pyproject
