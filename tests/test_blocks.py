import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_bn

from repsr.blocks import BLOCKS, PlainBlock, RepSRBlock, branch_forward, build_block

VARIANTS = [
    {},
    {"expand": 1},
    {"expand": 4},
    {"identity": False},
    {"use_bn": False},
    {"num_paths": 1},
]


def _merged_output(block, x):
    kernel, bias = block.get_equivalent_kernel_bias()
    return F.conv2d(x, kernel, bias, padding=1)


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("size", [(17, 23), (1, 1), (5, 3)])
def test_repsr_block_merges_exactly_fp64(options, size):
    block = randomize_bn(RepSRBlock(8, **options), seed=1).double().eval()
    x = torch.randn(3, 8, *size, dtype=torch.float64)
    expected = block.forward_branches(x)
    assert (_merged_output(block, x) - expected).abs().max() <= 1e-10
    block.reparameterize()
    assert block.deployed and list(dict(block.named_children())) == ["reparam_conv"]
    assert (block(x) - expected).abs().max() <= 1e-10


def test_repsr_block_merge_fp32_relative_error():
    block = randomize_bn(RepSRBlock(16), seed=2).eval()
    x = torch.randn(2, 16, 17, 23)
    expected = block.forward_branches(x)
    block.switch_to_deploy()  # the RepVGG/timm alias
    rel = (block(x) - expected).abs().max() / expected.abs().max()
    assert rel <= 1e-5


def test_merge_uses_bn_eps_from_the_module():
    block = randomize_bn(RepSRBlock(4), seed=3).double().eval()
    for path in block.paths:
        path.bn.eps = 0.5
        path.bn.running_var.fill_(0.01)  # eps dominates: a hard-coded eps would be far off
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64)
    assert (_merged_output(block, x) - block.forward_branches(x)).abs().max() <= 1e-10


def test_default_structure_is_identity_plus_two_expand_squeeze_paths():
    block = RepSRBlock(16)
    assert block.identity and len(block.paths) == 2
    for path in block.paths:
        assert path.expand.weight.shape == (32, 16, 3, 3) and path.expand.bias is not None
        assert path.bn.num_features == 32
        assert path.squeeze.weight.shape == (16, 32, 1, 1) and path.squeeze.bias is not None


class _KernelOf(torch.nn.Module):
    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self):
        return self.block.get_equivalent_kernel_bias()


@pytest.mark.parametrize("name", ["repsr", "repsr_nobn", "repvgg", "acb", "dbb", "ecb"])
def test_equivalent_kernel_is_differentiable(name):
    """gradcheck of get_equivalent_kernel_bias() with respect to every parameter of the block."""
    wrapper = _KernelOf(randomize_bn(build_block(name, 2), seed=4).double())
    names = [n for n, _ in wrapper.named_parameters()]

    def kernel_and_bias(*values):
        return torch.func.functional_call(wrapper, dict(zip(names, values, strict=True)), ())

    inputs = tuple(p.detach().clone().requires_grad_(True) for p in wrapper.parameters())
    assert torch.autograd.gradcheck(kernel_and_bias, inputs)


def test_plain_block_is_one_conv():
    block = PlainBlock(4).double()
    x = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    expected = block.forward_branches(x)
    block.reparameterize()
    assert torch.allclose(block(x), expected, atol=1e-12)


def test_blocks_by_name_and_errors():
    assert set(BLOCKS) >= {"repsr", "plain"}
    assert isinstance(build_block("repsr", 8, expand=4), RepSRBlock)
    with pytest.raises(ValueError, match="unknown block 'nope'"):
        build_block("nope", 8)
    with pytest.raises(ValueError, match="identity path"):
        RepSRBlock(4, 8)
    assert RepSRBlock(4, 8, identity=False).get_equivalent_kernel_bias()[0].shape == (8, 4, 3, 3)


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("size", [(17, 23), (1, 1), (2, 5)])
def test_every_block_merges_exactly_including_borders(name, size):
    block = randomize_bn(build_block(name, 6), seed=11).double()
    with torch.no_grad():  # larger random weights everywhere (ECB's scales start at 1e-3)
        for p in block.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(2, 6, *size, dtype=torch.float64)
    block.eval()
    expected = block.forward_branches(x)
    assert (_merged_output(block, x) - expected).abs().max() <= 1e-10
    block.reparameterize()
    assert (block(x) - expected).abs().max() <= 1e-10


def test_block_variant_names():
    assert not build_block("repsr_nobn", 4).paths[0].bn
    assert not build_block("repsr_noidentity", 4).identity
    assert build_block("repsr_x4", 4).paths[0].expand.out_channels == 16
    assert build_block("repsr_x1", 4).paths[0].expand.out_channels == 4


@pytest.mark.parametrize("name", ["repsr", "dbb", "ecb", "repsr_nobn"])
def test_online_merge_gives_the_same_loss_and_gradients(name):
    """Once linear (population BN), a block trains through its merged kernel: same loss, same gradients."""
    from repsr import RepSRNet, set_bn_phase

    model = randomize_bn(RepSRNet(2, 8, 2, block=name), seed=13).double()
    set_bn_phase(model, "population").train()
    x, target = torch.rand(2, 3, 11, 13, dtype=torch.float64), torch.rand(2, 3, 22, 26, dtype=torch.float64)

    def loss_and_grads(expanded: bool):
        model.zero_grad()
        if expanded:
            with branch_forward(model):
                loss = F.l1_loss(model(x), target)
        else:
            loss = F.l1_loss(model(x), target)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref_loss, ref_grads = loss_and_grads(True)
    loss, grads = loss_and_grads(False)
    assert abs(loss - ref_loss) <= 1e-10 * ref_loss
    assert grads.keys() == ref_grads.keys()
    for n in grads:  # float64: far inside the 1e-5 relative the float32 training path needs
        assert (grads[n] - ref_grads[n]).abs().max() <= 1e-8 * ref_grads[n].abs().max() + 1e-15, n


def test_fused_paths_equal_separate_paths_in_training():
    """The batch-phase fast path (one wide conv + one BN + one 1x1) is the two-path module exactly."""
    fused = randomize_bn(RepSRBlock(8), seed=14).double().train()
    separate = copy.deepcopy(fused)
    separate.fuse_paths = False
    x = torch.randn(4, 8, 9, 10, dtype=torch.float64)
    out_f, out_s = fused(x), separate(x)
    assert (out_f - out_s).abs().max() <= 1e-12
    out_f.square().sum().backward()
    out_s.square().sum().backward()
    for (name, p), q in zip(fused.named_parameters(), separate.parameters(), strict=True):
        assert (p.grad - q.grad).abs().max() <= 1e-10 * max(1.0, q.grad.abs().max().item()), name
    for a, b in zip(fused.buffers(), separate.buffers(), strict=True):  # running statistics updated alike
        assert torch.allclose(a.double(), b.double(), atol=1e-12)
