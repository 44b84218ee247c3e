import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_bn

from repsr import CompactSRNet, RepSRNet, reparameterize_model, set_bn_phase
from repsr.archs import branch_forward


def compact_keys(num_conv: int) -> set[str]:
    keys = set()
    for k in range(num_conv + 2):
        keys |= {f"body.{2 * k}.weight", f"body.{2 * k}.bias"}
        if k <= num_conv:
            keys.add(f"body.{2 * k + 1}.weight")
    return keys


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_merged_network_equals_training_network_fp64(scale, channels):
    model = randomize_bn(RepSRNet(upscale=scale, num_feat=8, num_block=3, num_in_ch=channels), seed=scale).double()
    deploy = reparameterize_model(model)
    x = torch.rand(2, channels, 17, 23, dtype=torch.float64)
    model.eval()
    with torch.no_grad(), branch_forward(model):
        assert (deploy(x) - model(x)).abs().max() <= 1e-10
    assert isinstance(deploy, CompactSRNet)
    assert set(deploy.state_dict()) == compact_keys(3)
    assert deploy.state_dict()["body.1.weight"].shape == (8,)


def test_merged_network_fp32_relative_error():
    model = randomize_bn(RepSRNet(upscale=4, num_feat=16, num_block=4), seed=7)
    deploy = reparameterize_model(model)
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad(), branch_forward(model):
        ref = model.eval()(x)
        assert ((deploy(x) - ref).abs().max() / ref.abs().max()) <= 1e-5


def test_reparameterize_model_leaves_the_model_alone_and_keeps_dtype():
    model = randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2), seed=1)
    before = copy.deepcopy(model.state_dict())
    deploy = reparameterize_model(model)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(b.deployed for b in model.blocks)
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        deploy = reparameterize_model(copy.deepcopy(model).to(dtype))
        assert all(p.dtype == dtype for p in deploy.parameters())


def test_compact_forward_matches_srvgg_definition():
    deploy = reparameterize_model(randomize_bn(RepSRNet(upscale=3, num_feat=8, num_block=2), seed=2))
    x = torch.rand(1, 3, 10, 12)
    out = x
    for layer in deploy.body:
        out = layer(out)
    expected = F.pixel_shuffle(out, 3) + F.interpolate(x, scale_factor=3, mode="nearest")
    with torch.no_grad():
        assert torch.equal(deploy(x), expected)


def test_training_keys_never_look_like_a_compact_model():
    for block in ("repsr", "plain"):
        keys = set(RepSRNet(upscale=4, num_feat=16, num_block=4, block=block).state_dict())
        assert not {"body.0.weight", "body.1.weight"} <= keys


def test_population_phase_model_merges_too():
    model = randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2), seed=3).double()
    set_bn_phase(model, "population").train()
    x = torch.rand(2, 3, 9, 11, dtype=torch.float64)
    with torch.no_grad(), branch_forward(model):
        train_out = model(x)  # population phase in train(): the function that gets deployed
    assert (reparameterize_model(model)(x) - train_out).abs().max() <= 1e-10


def test_plain_block_network_and_sizes():
    model = RepSRNet(upscale=4, num_feat=16, num_block=4, block="plain")
    assert sum(p.numel() for p in reparameterize_model(model).parameters()) == 16768  # M4C16 x4 RGB
    with pytest.raises(ValueError, match="num_block"):
        RepSRNet(upscale=4, num_feat=16, num_block=-1)
    with pytest.raises(ValueError, match="unknown block"):
        RepSRNet(upscale=4, num_feat=16, num_block=4, block="nope")


def test_constructors_are_keyword_only():
    """The two networks take their sizes in different orders: positional calls would silently swap them."""
    with pytest.raises(TypeError):
        RepSRNet(4, 16, 4)
    with pytest.raises(TypeError):
        CompactSRNet(3, 3, 16, 4, 4)
    assert CompactSRNet(num_feat=16, num_conv=4, upscale=4).config["num_conv"] == 4
