"""The BN switch shared by `repsr train` and `repsr demo`, and the ordering bugs the Trainer split fixed."""

from pathlib import Path

import pytest
import torch
from conftest import randomize_bn, tiny_run

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


# ----------------------------------------------------------------------------- the switch inside a training run

def tiny(images, **overrides):
    """The tiny training run with 3 blocks, a checkpoint every iteration and dotted-key overrides."""
    from repsr.config import load_config

    return load_config(tiny_run(images, **{"network.num_block": 3, "train.total_iter": 8,
                                           "train.bn.recompute_batches": 3, "checkpoint.every": 1,
                                           "checkpoint.keep": 100, "logger.print_every": 100, **overrides}))


def _bns(model):
    return [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _checkpoint(out: Path, iteration: int) -> dict:
    return torch.load(out / "checkpoints" / f"iter_{iteration:08d}.pth", weights_only=True)


@torch.no_grad()
def _population_stats(model, batches) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each BN's mean and unbiased variance of its input over ``batches`` with the model in the batch phase (the
    definition, computed here on its own rather than by repsr.bn.recompute_population_stats)."""
    inputs = {name: [] for name, _ in _bns(model)}
    hooks = [bn.register_forward_pre_hook(lambda m, args, name=name: inputs[name].append(args[0].double()))
             for name, bn in _bns(model)]
    model.train()
    for batch in batches:
        model(batch)
    for hook in hooks:
        hook.remove()
    stats = {}
    for name, xs in inputs.items():
        x = torch.cat([t.transpose(0, 1).flatten(1) for t in xs], dim=1)  # (channels, every pixel of every batch)
        stats[name] = (x.mean(1).float(), x.var(1, correction=1).float())
    return stats


def test_switch_in_training_sets_every_bn_to_exact_population_statistics(images, tmp_path):
    """At the switch (before iteration 7 of 8), every BN of every block, in the model and in its EMA copy, gets the
    exact statistics of its input over the trainer's statistics batches (recompute_batches batches of a fixed
    stream apart from the training one) at the weights of that moment, the checkpoint of iteration 7; they
    stay fixed after (the last iteration moves the weights, not the statistics)."""
    import copy

    from repsr.training import Trainer
    from repsr.training.data_stream import stats_batches

    config = tiny(images, **{"train.bn.switch": 7})
    trainer = Trainer(config, tmp_path)
    trainer.run()
    assert get_bn_phase(trainer.model) == "population"
    at_switch = copy.deepcopy(trainer.model)
    at_switch.load_state_dict(_checkpoint(tmp_path, 7)["params"])
    assert get_bn_phase(at_switch) == "batch"
    measured = list(stats_batches(trainer.data.patches, None, 4, config.seed, torch.device("cpu"), 3))
    assert len(measured) == 3 and all(b.shape == (4, 3, 12, 12) for b in measured)
    expected = _population_stats(at_switch, measured)
    assert len(expected) == 3 * 2  # 3 blocks of 2 paths

    final = _checkpoint(tmp_path, 8)
    for which, model in (("model", trainer.model), ("ema", trainer.ema.module)):
        bns = _bns(model)
        assert [name for name, _ in bns] == list(expected)
        for name, bn in bns:
            mean, var = expected[name]
            torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6, msg=f"{which} {name} mean")
            torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6, msg=f"{which} {name} var")
            key = "params" if which == "model" else "params_ema"
            assert torch.equal(final[key][f"{name}.running_var"], bn.running_var), f"{which} {name} saved"
    # the weights did move after the switch (so the statistics above are those of the switch, not of the end)
    assert not torch.equal(trainer.model.head.weight, at_switch.head.weight)


def test_resume_after_the_switch_with_frozen_affine_is_bit_exact(images, tmp_path):
    """train.bn.train_affine: false. A run resumed from a checkpoint saved after the switch (iteration 6 of 12,
    switch at 4) ends with the weights of an uninterrupted run: the frozen BN affine values come back from the
    checkpoint, or Adam would move them."""
    import shutil

    from repsr.training import Trainer
    from repsr.training.bn_schedule import bn_affine_params

    overrides = {"train.total_iter": 12, "train.bn.switch": 4, "train.bn.train_affine": False, "checkpoint.every": 2}
    straight = Trainer(tiny(images, **overrides), tmp_path / "straight")
    straight.run()
    assert len(straight.bn.frozen_affine) == len(bn_affine_params(straight.model)) == 3 * 2 * 2  # 6 BNs' weight, bias

    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "straight", killed)
    for path in (killed / "checkpoints").glob("iter_*.pth"):
        if int(path.stem.split("_")[1]) > 6:
            path.unlink()  # as if killed after the checkpoint of iteration 6
    for path in ("model_deploy.safetensors", "results.json"):
        (killed / path).unlink(missing_ok=True)
    resumed = Trainer(tiny(images, **overrides), killed, resume=True)
    assert resumed.iteration == 6 and get_bn_phase(resumed.model) == "population"
    resumed.run()

    a, b = _checkpoint(tmp_path / "straight", 12), _checkpoint(killed, 12)
    for key in ("params", "params_ema"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs"
    # and the frozen values are those of the switch: the affine parameters did not move after it
    at_switch = _checkpoint(tmp_path / "straight", 4)["params"]
    names = [f"{n}.{p}" for n, _ in _bns(straight.model) for p in ("weight", "bias")]
    assert all(torch.equal(a["params"][n], at_switch[n]) for n in names)
