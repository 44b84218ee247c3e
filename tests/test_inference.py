"""repsr.upscale: colour conventions, dtypes, precision, and tiled == untiled."""

import copy

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from repsr import RepSRNet, reparameterize_model
from repsr.archs.networks import CompactSRNet
from repsr.errors import RepsrError
from repsr.inference import prepare, receptive_radius, run_tiled, upscale
from repsr.metrics import rgb2ycbcr
from repsr.resize import imresize


@pytest.fixture(scope="module")
def model():
    return reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=3), seed=3))


@pytest.fixture(scope="module")
def y_model():
    return reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2, num_in_ch=1), seed=4))


def reference(model, rgb01: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(rgb01.transpose(2, 0, 1)).float()[None])[0]
    return out.numpy().transpose(1, 2, 0)


def test_uint8_uint16_float_round_trip_conventions(model):
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    out8 = upscale(img8, model)
    assert out8.dtype == np.uint8 and out8.shape == (26, 34, 3)
    expected = np.floor(np.clip(reference(model, img8 / 255.0), 0, 1) * 255 + 0.5)
    assert np.abs(out8.astype(int) - expected).max() <= 1
    img16 = img8.astype(np.uint16) * 257
    out16 = upscale(img16, model)
    assert out16.dtype == np.uint16 and np.abs(out16 // 257 - out8.astype(int)).max() <= 1
    outf = upscale(img8 / np.float32(255), model)
    assert outf.dtype == np.float32 and outf.min() >= 0 and outf.max() <= 1


def test_gray_stays_gray_and_alpha_is_bicubic(model):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (11, 9), dtype=np.uint8)
    assert upscale(gray, model).shape == (22, 18)
    assert upscale(gray[:, :, None], model).shape == (22, 18, 1)
    rgba = rng.integers(0, 256, (11, 9, 4), dtype=np.uint8)
    out = upscale(rgba, model)
    assert out.shape == (22, 18, 4)
    np.testing.assert_array_equal(out[:, :, 3], imresize(rgba[:, :, 3], 2))
    np.testing.assert_array_equal(out[:, :, :3], upscale(rgba[:, :, :3], model))
    assert upscale(rng.integers(0, 256, (11, 9, 2), dtype=np.uint8), model).shape == (22, 18, 2)


def test_y_channel_model_upscales_y_and_takes_cbcr_by_bicubic(y_model):
    rgb = np.random.default_rng(2).random((10, 12, 3)).astype(np.float32)
    out = upscale(rgb, y_model)
    y_in = rgb2ycbcr(torch.from_numpy(rgb.transpose(2, 0, 1)).double(), y_only=True).float()[None]
    with torch.no_grad():
        y_expected = y_model(y_in)[0, 0].numpy()
    y_out = rgb2ycbcr(torch.from_numpy(out.transpose(2, 0, 1)).double(), y_only=True)[0].numpy()
    inside = (out > 1e-3).all(-1) & (out < 1 - 1e-3).all(-1)  # clipping changes Y where a channel saturates
    assert np.abs(y_out - y_expected)[inside].max() < 1e-4


TILINGS = [(37, 29, 8), (37, 29, 5), (16, 16, 16), (9, 40, 7), (5, 5, 1), (23, 31, 100)]


@pytest.mark.parametrize(("h", "w", "tile"), TILINGS)
def test_tiled_equals_untiled(model, h, w, tile):
    x = torch.rand(1, 3, h, w)
    exact = prepare(model, torch.device("cpu"), "fp64")
    assert torch.equal(run_tiled(exact, x, 2, tile=tile), run_tiled(exact, x, 2))
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint16)
    tiled = upscale(img, model, tile=tile, precision="fp64")
    np.testing.assert_array_equal(tiled, upscale(img, model, precision="fp64"))
    # float32: equal up to the last bits (conv summation order depends on the tensor width)
    fast = prepare(model, torch.device("cpu"))
    torch.testing.assert_close(run_tiled(fast, x, 2, tile=tile), run_tiled(fast, x, 2), rtol=0, atol=2e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_fused_image_path_rounds_exactly_like_the_float_path(model, dtype):
    """upscale's fused path (residual before the shuffle, rounding on the device) == the network, then clip/round."""
    net = prepare(model, torch.device("cpu"), "fp32", "torch")
    peak = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
    img = np.random.default_rng(5).integers(0, 256, (19, 23, 3)).astype(dtype) * (257 if peak == 65535 else 1)
    if peak == 1:
        img /= 255
    x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1) / np.float32(peak))[None]
    for tile in (0, 6):  # fp32 tiles sum in another order than one pass: compare like with like
        expected = np.clip(run_tiled(net, x, 2, tile=tile)[0].numpy().transpose(1, 2, 0), 0, 1)
        if peak > 1:
            expected = np.floor(expected * np.float32(peak) + np.float32(0.5))
        np.testing.assert_array_equal(upscale(img, net, prepared=True, tile=tile), expected.astype(dtype))


def test_nan_guard_looks_at_the_values_when_their_sum_overflows(model):
    huge = copy.deepcopy(model)
    with torch.no_grad():
        huge.body[-1].bias.fill_(1e37)  # finite values whose sum is inf
    img = np.random.default_rng(6).integers(0, 256, (9, 9, 3), dtype=np.uint8)
    assert (upscale(img, huge) == 255).all()


def test_prepared_copy_is_cached_and_follows_weight_changes(model):
    from repsr.inference import prepared_model

    cpu = torch.device("cpu")
    mine = copy.deepcopy(model)
    first = prepared_model(mine, cpu, "fp32", "torch")
    assert prepared_model(mine, cpu, "fp32", "torch") is first
    assert prepared_model(mine, cpu, "fp64", "torch") is not first
    img = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    before = upscale(img, mine)
    with torch.no_grad():
        mine.body[-1].bias.sub_(0.25)  # the same tensors, modified in place
    assert prepared_model(mine, cpu, "fp32", "torch") is not first
    assert (before.astype(int) - upscale(img, mine)).mean() > 10  # 64 levels where not clipped
    with torch.inference_mode():  # inference tensors have no version counter: prepared afresh every call
        made_here = CompactSRNet(num_feat=4, num_conv=1, upscale=2)
    assert upscale(img, made_here).shape == (16, 16, 3)


def test_receptive_radius_counts_the_convs(model):
    assert receptive_radius(model) == 5  # head + 3 body + tail


def test_reduced_precision_and_nan_guard(model):
    img = np.random.default_rng(3).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    out = upscale(img, model, precision="bf16")
    assert np.abs(out.astype(int) - upscale(img, model).astype(int)).max() <= 8
    broken = reparameterize_model(RepSRNet(upscale=2, num_feat=8, num_block=1))
    with torch.no_grad():
        broken.body[0].weight.fill_(float("nan"))
    with pytest.raises(RepsrError, match="NaN/inf"):
        upscale(img, broken)
    with pytest.raises(RepsrError, match="precision"):
        upscale(img, model, precision="fp8")


def test_auto_tile_tiles_only_large_images_on_cpu():
    """One pass while the widest activation stays small; CPU_TILE tiles above the threshold; never on GPU."""
    from repsr.inference import CPU_TILE, CPU_TILE_ABOVE_BYTES, auto_tile

    model = CompactSRNet(num_feat=16, num_conv=2, upscale=4)  # widest conv: 3 * 4^2 = 48 channels
    side = int((CPU_TILE_ABOVE_BYTES / (48 * 4)) ** 0.5)
    cpu = torch.device("cpu")
    assert auto_tile(model, (1, 3, side - 8, side - 8), cpu, torch.float32) == 0
    assert auto_tile(model, (1, 3, side + 8, side + 8), cpu, torch.float32) == CPU_TILE
    assert auto_tile(model, (1, 3, side + 8, side + 8), cpu, torch.float16) == 0  # half the bytes
    assert auto_tile(model, (1, 3, 4 * side, 4 * side), torch.device("meta"), torch.float32) == 0
