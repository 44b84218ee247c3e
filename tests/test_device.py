"""The accelerator subset (``pytest -m device``): what must hold on any device, against float64 on the CPU.

Runs on the CPU in the ordinary suite; ``REPSR_TEST_DEVICE=cuda pytest -m device`` (scripts/gpu_run.py)
runs the same checks on a GPU: merge exactness in fp32/fp16/bf16, the online merge in both BN phases,
patch moments, tiled upscaling and on-device training patches. fp32 means fp32 here: TF32 (cuDNN's default
for convolutions on NVIDIA GPUs, a 10-bit mantissa) is off in every test and restored after.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, randomize_bn

from repsr import RepSRNet, reparameterize_model, set_bn_phase
from repsr.archs import RepSRBlock, branch_forward
from repsr.archs.patch_moments import patch_moments
from repsr.data import HRFolder, TrainPatches
from repsr.inference import Upscaler, upscale
from repsr.runtimes import make_runner
from repsr.speed import tf32
from repsr.training import DevicePatches

pytestmark = pytest.mark.device

# relative error of the deploy network against the float64 training network, per precision
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-2, "bf16": 6e-2}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}


@pytest.fixture(scope="module")
def device() -> torch.device:
    name = os.environ.get("REPSR_TEST_DEVICE", "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.fail("REPSR_TEST_DEVICE=cuda but CUDA is not available")
    return torch.device(name)


@pytest.fixture(autouse=True)
def _no_tf32():
    """Exactness checks at fp32's own precision: TF32 would miss the 1e-5 tolerances by 10-40x."""
    with tf32(False):
        yield


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double().cpu() - b.double().cpu()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_merged_network_matches_training_network(device, precision):
    model = randomize_bn(RepSRNet(upscale=2, num_feat=16, num_block=3), seed=3).eval()
    x = torch.rand(2, 3, 19, 23, dtype=torch.float64)
    with torch.no_grad(), branch_forward(model):
        expected = model.double()(x)
    runner = make_runner(reparameterize_model(model), device, precision, backend="torch")
    out = runner.floats(x)
    assert _relative_error(out, expected) <= TOLERANCE[precision]


@pytest.mark.parametrize("phase", ["population", "batch"])
def test_online_merge_equals_branches(device, phase):
    """Training forward and backward through the merged kernel equal the branches (float32 on the device)."""
    torch.manual_seed(5)
    model = randomize_bn(RepSRNet(upscale=2, num_feat=32, num_block=2), seed=4)
    set_bn_phase(model, phase)
    model.train()
    for block in model.modules():
        if isinstance(block, RepSRBlock):
            block.batch_merge_min_channels = 1  # the patch-moment path in the batch phase
    reference = copy.deepcopy(model).double()
    model = model.to(device)
    x, target = torch.rand(4, 3, 16, 16, dtype=torch.float64), torch.rand(4, 3, 32, 32, dtype=torch.float64)
    with branch_forward(reference):
        ref_loss = F.l1_loss(reference(x), target)
    ref_loss.backward()
    loss = F.l1_loss(model(x.float().to(device)), target.float().to(device))
    loss.backward()
    assert abs(loss.item() - ref_loss.item()) <= 1e-5 * ref_loss.item()
    ref_grads = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        g, ref = p.grad.double().cpu(), ref_grads[name].grad
        assert (g - ref).abs().max() <= 2e-4 * ref.abs().max() + 1e-7, name


def test_patch_moments_on_device(device):
    x = torch.randn(4, 8, 12, 10, dtype=torch.float64) + 3
    patches = F.unfold(x, 3, padding=1).transpose(0, 1).flatten(1)
    ref_mean = patches.mean(1)
    centred = patches - ref_mean[:, None]
    ref_cov = centred @ centred.T / patches.shape[1]
    mean, cov, count = patch_moments(x.float().to(device))
    assert count == patches.shape[1]
    assert (mean.double().cpu() - ref_mean).abs().max() <= 1e-5 * ref_mean.abs().max()
    assert (cov.double().cpu() - ref_cov).abs().max() <= 1e-5 * ref_cov.abs().max()


@pytest.mark.parametrize(("h", "w", "tile"), [(37, 29, 8), (23, 31, 100), (9, 40, 7)])
def test_tiled_upscale_equals_untiled(device, h, w, tile):
    model = reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2), seed=6).eval())
    x = torch.rand(1, 3, h, w, dtype=torch.float64)
    tiled = Upscaler(model, device, "fp64", tile=tile).floats(x)
    whole = Upscaler(model, device, "fp64", tile=0).floats(x)
    if device.type == "cpu":
        assert torch.equal(tiled, whole)
    else:  # cuDNN may pick another algorithm (summation order) for another tile shape: fp64 rounding only
        torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-12)
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    tiled = upscale(img, model, tile=tile, device=device)
    whole = upscale(img, model, tile=0, device=device)
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1  # float32: summation order, rarely one level


def test_device_patches_equal_loader_patches(device):
    patches = TrainPatches(HRFolder(DATA / "Set5", 2), 16, repeat=2, seed=9)
    keys = [(0, 1), (1, 4), (3, 0)]
    batch = DevicePatches(patches, device).batch(keys)
    assert torch.equal(batch["lr"].cpu(), torch.stack([patches[k]["lr"] for k in keys]))
    assert torch.equal(batch["hr"].cpu(), torch.stack([patches[k]["hr"] for k in keys]))


def test_tf32_is_off_inside_the_device_tests_and_restored_after():
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    assert flags == (False, False)
    with tf32(True):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags
