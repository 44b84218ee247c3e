import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_bn

from repsr.archs import BLOCKS, PlainBlock, RepSRBlock, branch_forward, build_block
from repsr.archs.patch_moments import patch_moments

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


def options_id(options: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in options.items()) or "default"


@pytest.mark.parametrize("options", VARIANTS, ids=options_id)
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

    model = randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2, block=name), seed=13).double()
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


def _unfolded_moments(x):
    patches = F.unfold(x, 3, padding=1).transpose(0, 1).flatten(1)  # (C*9, N*H*W), conv weight order
    mean = patches.mean(1)
    centred = patches - mean[:, None]
    return mean, centred @ centred.T / patches.shape[1], patches.shape[1]


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 2, 1, 1), (3, 2, 1, 6), (2, 3, 5, 1), (1, 4, 2, 2), (2, 2, 3, 3)])
def test_patch_moments_equal_unfolded_patches(shape):
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape, dtype=torch.float64) + 0.5
    mean, cov, count = patch_moments(x)
    ref_mean, ref_cov, ref_count = _unfolded_moments(x)
    assert count == ref_count
    assert (mean - ref_mean).abs().max() <= 1e-12
    assert (cov - ref_cov).abs().max() <= 1e-12


def test_patch_moments_gradients_and_float32_accuracy():
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: patch_moments(t)[:2], (x,))
    # an offset 50x the spread: plain E[pp^T] - m m^T in float32 would keep ~2 digits of the covariance
    x = torch.randn(8, 4, 16, 16, dtype=torch.float64) + 50
    ref_mean, ref_cov, _ = _unfolded_moments(x)
    mean, cov, _ = patch_moments(x.float())
    assert (mean.double() - ref_mean).abs().max() <= 1e-6 * ref_mean.abs().max()
    assert (cov.double() - ref_cov).abs().max() <= 1e-5 * ref_cov.abs().max()


@pytest.mark.parametrize("options", [{}, {"expand": 1}, {"expand": 4}, {"identity": False}, {"num_paths": 1},
                                     {"num_paths": 3}], ids=options_id)
def test_batch_phase_merge_equals_two_path_module(options):
    """Batch phase, training: one conv whose kernel comes from the patch moments is the module with
    mini-batch BN exactly: outputs, gradients of input and of every parameter, running statistics."""
    merged = randomize_bn(RepSRBlock(6, **options), seed=14).double().train()
    merged.batch_merge_min_channels = 1
    separate = copy.deepcopy(merged)
    x = torch.randn(4, 6, 9, 10, dtype=torch.float64) + 0.7
    x_m, x_s = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    assert merged._batch_moments_apply(x)  # the merged path really runs
    with branch_forward(separate):
        out_s = separate(x_s)
    out_m = merged(x_m)
    assert (out_m - out_s).abs().max() <= 1e-10 * out_s.abs().max()
    weights = torch.randn_like(out_s)
    (out_m * weights).sum().backward()
    (out_s * weights).sum().backward()
    assert (x_m.grad - x_s.grad).abs().max() <= 1e-10 * x_s.grad.abs().max()
    for (name, p), q in zip(merged.named_parameters(), separate.parameters(), strict=True):
        # BN removes the expand bias: its gradient is zero either way (exactly here, so DDP sees it used)
        assert (p.grad - q.grad).abs().max() <= 1e-10 * max(1.0, q.grad.abs().max().item()), name
    for a, b in zip(merged.buffers(), separate.buffers(), strict=True):  # running statistics updated alike
        assert torch.allclose(a.double(), b.double(), rtol=1e-10, atol=1e-12)


def test_batch_phase_merge_float32_relative_error():
    """float32 training: loss and every gradient within 1e-5 relative of the float64 two-path module
    (or within twice the float32 module's own error, where float32 itself is that far off)."""
    from repsr import RepSRNet

    net = randomize_bn(RepSRNet(upscale=2, num_feat=32, num_block=3), seed=5).train()
    x, target = torch.rand(4, 3, 24, 24), torch.rand(4, 3, 48, 48)
    ref = copy.deepcopy(net).double()

    def loss_and_grads(model, dtype, expanded):
        model.zero_grad()
        with contextlib.ExitStack() as stack:
            if expanded:
                stack.enter_context(branch_forward(model))
            loss = F.l1_loss(model(x.to(dtype)), target.to(dtype))
        loss.backward()
        return loss.item(), [p.grad.double() for p in model.parameters()]

    exact_loss, exact = loss_and_grads(ref, torch.float64, True)
    _, module = loss_and_grads(copy.deepcopy(net), torch.float32, True)  # float32's own error, for scale
    loss, grads = loss_and_grads(net, torch.float32, False)
    assert abs(loss - exact_loss) <= 1e-5 * exact_loss
    scale = max(e.norm() for e in exact)  # the expand biases' true gradient is 0: an absolute floor for them
    for g, e, m in zip(grads, exact, module, strict=True):
        assert (g - e).norm() <= max(1e-5 * e.norm(), 2 * (m - e).norm()) + 1e-7 * scale


def test_forward_modes_named_in_one_place():
    """forward_mode() names the path forward takes; a hook on a BN moves the batch phase to the branches,
    which compute the same output and running statistics (only slower)."""
    from repsr.archs import ForwardMode

    block = randomize_bn(RepSRBlock(6), seed=15).double().train()
    block.batch_merge_min_channels = 1
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    assert block.forward_mode(x) is ForwardMode.BATCH_MOMENTS
    hooked = copy.deepcopy(block)
    handle = hooked.paths[0].bn.register_forward_hook(lambda *args: None)
    assert hooked.forward_mode(x) is ForwardMode.BRANCHES
    out, out_hooked = block(x), hooked(x)
    assert (out - out_hooked).abs().max() <= 1e-10 * out.abs().max()
    for a, b in zip(block.buffers(), hooked.buffers(), strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    handle.remove()
    with branch_forward(block):
        assert block.forward_mode(x) is ForwardMode.BRANCHES
    assert block.eval().forward_mode(x) is ForwardMode.ONLINE_MERGED
    block.reparameterize()
    assert block.forward_mode(x) is ForwardMode.DEPLOYED
