import pytest
import torch
from conftest import randomize_bn

from repsr import RepSRNet, get_bn_phase, recompute_population_stats, set_bn_phase
from repsr.archs import branch_forward
from repsr.bn import SwitchableBatchNorm2d


def test_population_phase_makes_samples_independent_of_the_batch():
    model = randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2)).train()
    x = torch.rand(4, 3, 12, 12)
    other = torch.rand(4, 3, 12, 12)
    mixed = torch.cat([x[:1], other[1:]])
    with torch.no_grad(), branch_forward(model):
        assert not torch.allclose(model(x)[0], model(mixed)[0])  # batch phase: depends on the batch
        set_bn_phase(model, "population")
        model.train()  # the phase must survive train()
        assert torch.allclose(model(x)[0], model(mixed)[0], atol=1e-6)
        assert torch.allclose(model(x), model.eval()(x))


def test_population_phase_does_not_touch_running_stats_but_trains_affine():
    model = randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=1))
    set_bn_phase(model, "population").train()
    bn = model.blocks[0].paths[0].bn
    mean = bn.running_mean.clone()
    model(torch.rand(2, 3, 8, 8)).sum().backward()
    assert torch.equal(bn.running_mean, mean)
    assert bn.weight.grad is not None and bn.weight.grad.abs().sum() > 0


def test_phase_is_part_of_the_state_dict():
    model = set_bn_phase(RepSRNet(upscale=2, num_feat=8, num_block=2), "population")
    state = model.state_dict()
    assert any(k.endswith("population_phase") for k in state)
    fresh = RepSRNet(upscale=2, num_feat=8, num_block=2)
    assert get_bn_phase(fresh) == "batch"
    fresh.load_state_dict(state)
    assert get_bn_phase(fresh) == "population"


def test_set_bn_phase_rejects_unknown_phases_and_plain_bn():
    with pytest.raises(ValueError, match="phase"):
        set_bn_phase(RepSRNet(upscale=2, num_feat=8, num_block=1), "frozen")
    with pytest.raises(TypeError, match="SwitchableBatchNorm2d"):
        set_bn_phase(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), "population")


def test_recompute_population_stats_is_exact_pooled_statistics():
    torch.manual_seed(0)
    model = RepSRNet(upscale=2, num_feat=4, num_block=2)
    set_bn_phase(model, "population").eval()
    batches = [torch.rand(3, 3, 10, 10) * (i + 1) for i in range(4)]  # batches with different statistics
    assert recompute_population_stats(model, batches) == 4
    # the first block's BNs see head features, which do not depend on any BN: compare directly
    with torch.no_grad():
        feats = torch.cat([model.head_act(model.head(b)) for b in batches])
        for path in model.blocks[0].paths:
            z = path.expand(feats).double().transpose(0, 1).flatten(1)
            torch.testing.assert_close(path.bn.running_mean.double(), z.mean(1), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(path.bn.running_var.double(), z.var(1), rtol=1e-5, atol=1e-6)
    # nothing else changed: phase, mode
    assert get_bn_phase(model) == "population" and not model.training


def test_recompute_population_stats_needs_batches():
    with pytest.raises(ValueError, match="at least one batch"):
        recompute_population_stats(RepSRNet(upscale=2, num_feat=4, num_block=1), [])


def test_switchable_bn_equals_batchnorm_in_batch_phase():
    bn, ref = SwitchableBatchNorm2d(5), torch.nn.BatchNorm2d(5)
    x = torch.randn(4, 5, 6, 6)
    torch.testing.assert_close(bn(x), ref(x))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)


def test_eval_mode_restores_the_mode_also_on_errors():
    from repsr.modes import eval_mode
    from repsr.speed import time_forward

    model = RepSRNet(upscale=2, num_feat=4, num_block=1).train()
    time_forward(model, torch.rand(1, 3, 8, 8), repeat=1, warmup=0)  # repsr demo used to leave it in eval mode
    assert model.training
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not model.training and not model.blocks[0].training
        raise RuntimeError
    assert model.training and all(m.training for m in model.modules())
