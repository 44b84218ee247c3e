"""repsr.upscale: colour conventions, dtypes, precision, and tiled == untiled."""

import copy

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from repsr import RepSRNet, reparameterize_model
from repsr.archs.networks import CompactSRNet
from repsr.errors import RepsrError
from repsr.inference import Upscaler, upscale
from repsr.metrics import rgb2ycbcr
from repsr.resize import imresize
from repsr.runtimes import make_runner


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
    assert torch.equal(Upscaler(model, "cpu", "fp64", tile=tile).floats(x), Upscaler(model, "cpu", "fp64").floats(x))
    img = np.random.default_rng(h).integers(0, 256, (h, w, 3), dtype=np.uint16)
    tiled = upscale(img, model, tile=tile, precision="fp64")
    np.testing.assert_array_equal(tiled, upscale(img, model, precision="fp64"))
    # float32: equal up to the last bits (conv summation order depends on the tensor width)
    torch.testing.assert_close(Upscaler(model, "cpu", tile=tile).floats(x), Upscaler(model, "cpu").floats(x), rtol=0,
                               atol=2e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_fused_image_path_rounds_exactly_like_the_float_path(model, dtype):
    """upscale's fused path (residual before the shuffle, rounding on the device) == the network, then clip/round."""
    peak = {np.uint8: 255, np.uint16: 65535, np.float32: 1}[dtype]
    img = np.random.default_rng(5).integers(0, 256, (19, 23, 3)).astype(dtype) * (257 if peak == 65535 else 1)
    if peak == 1:
        img /= 255
    x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1) / np.float32(peak))[None]
    for tile in (0, 6):  # fp32 tiles sum in another order than one pass: compare like with like
        net = Upscaler(model, "cpu", "fp32", "torch", tile=tile)
        expected = np.clip(net.floats(x)[0].numpy().transpose(1, 2, 0), 0, 1)
        if peak > 1:
            expected = np.floor(expected * np.float32(peak) + np.float32(0.5))
        np.testing.assert_array_equal(net(img), expected.astype(dtype))


def test_nan_guard_looks_at_the_values_when_their_sum_overflows(model):
    huge = copy.deepcopy(model)
    with torch.no_grad():
        huge.body[-1].bias.fill_(1e37)  # finite values whose sum is inf
    img = np.random.default_rng(6).integers(0, 256, (9, 9, 3), dtype=np.uint8)
    assert (upscale(img, huge) == 255).all()


def test_upscale_follows_weight_changes(model):
    mine = copy.deepcopy(model)
    img = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    before = upscale(img, mine)
    with torch.no_grad():
        mine.body[-1].bias.sub_(0.25)  # the same tensors, modified in place
    assert (before.astype(int) - upscale(img, mine)).mean() > 10  # 64 levels where not clipped
    with torch.inference_mode():  # inference tensors have no version counter: prepared afresh every call
        made_here = CompactSRNet(num_feat=4, num_conv=1, upscale=2)
    assert upscale(img, made_here).shape == (16, 16, 3)


def test_receptive_radius_counts_the_convs(model):
    assert make_runner(model, "cpu").radius == 5  # head + 3 body + tail


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
    from repsr.runtimes import CPU_TILE, CPU_TILE_ABOVE_BYTES

    model = CompactSRNet(num_feat=16, num_conv=2, upscale=4)  # widest conv: 3 * 4^2 = 48 channels
    side = int((CPU_TILE_ABOVE_BYTES / (48 * 4)) ** 0.5)
    fp32, fp16 = make_runner(model, "cpu", "fp32", "torch"), make_runner(model, "cpu", "fp16", "torch")
    assert fp32.auto_tile(side - 8, side - 8) == 0
    assert fp32.auto_tile(side + 8, side + 8) == CPU_TILE
    assert fp16.auto_tile(side + 8, side + 8) == 0  # half the bytes
    assert make_runner(model, torch.device("meta"), "fp32", "torch").auto_tile(4 * side, 4 * side) == 0


# ----------------------------------------------------------------------------- out-of-memory halving, faked on the CPU

def _oom_above(module: torch.nn.Module, too_big) -> list[tuple[int, ...]]:
    """Make ``module`` (the network's first conv) raise CUDA's out-of-memory error on inputs ``too_big`` says are
    too big, as a GPU would; returns the list of input shapes it saw (a runaway retry loop stops after 500)."""
    seen = []

    def hook(_, args):
        seen.append(tuple(args[0].shape))
        if len(seen) > 500:
            raise AssertionError("no end to the retries")
        if too_big(args[0].shape):
            raise torch.OutOfMemoryError("CUDA out of memory (faked)")

    module.register_forward_pre_hook(hook)
    return seen


def test_out_of_memory_halves_the_tile_and_the_result_stays_the_same(model):
    """The fused image path and the float path: on out-of-memory the tile halves until it fits (64 -> 32 -> 16
    here) and the image is done again; the result equals the one-pass result."""
    from repsr.tiling import MIN_TILE

    img = np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    runs = {"image": lambda u: u(img), "float": lambda u: u.floats(x)}
    assert MIN_TILE == 16
    for name, run in runs.items():
        expected = run(Upscaler(model, "cpu", "fp64", tile=0))  # fp64: tiles are bit-identical to one pass
        oom = Upscaler(model, "cpu", "fp64", tile=0)
        pad = oom.runner.radius
        seen = _oom_above(oom.runner.net.body[0], lambda shape: max(shape[-2:]) > MIN_TILE + 2 * pad)  # noqa: B023
        got = run(oom)
        if name == "float":
            assert torch.equal(got, expected)
        else:
            np.testing.assert_array_equal(got, expected)
        # the whole image failed, then the first 32-pixel tile (with its context), then 16 tiles of 16 all ran
        assert seen[0][-2:] == (64, 64) and seen[1][-2:] == (32 + pad, 32 + pad)
        assert len(seen) == 2 + 16 and all(max(s[-2:]) <= MIN_TILE + 2 * pad for s in seen[2:])


def test_out_of_memory_with_16_pixel_tiles_is_a_clear_error(model):
    net = Upscaler(model, "cpu", tile=0)
    seen = _oom_above(net.runner.net.body[0], lambda shape: True)
    with pytest.raises(RepsrError, match="out of GPU memory even with 16-pixel tiles"):
        net(np.zeros((40, 40, 3), np.uint8))
    pad = net.runner.radius
    assert [max(s[-2:]) for s in seen] == [40, 20 + pad, 16 + pad]  # 40 -> 20 -> 16, and not below 16


def test_video_batches_halve_on_out_of_memory(model):
    """The batched video path on out-of-memory: the batch halves down to single frames, and a frame that fails
    alone goes through the image path, whose tiles halve; every frame comes back, in order, as without it."""
    net = Upscaler(model, "cpu", "fp64", tile=0)
    pad = net.runner.radius
    frames = np.random.default_rng(9).integers(0, 256, (7, 12, 10, 3), dtype=np.uint8)
    expected = np.stack([net(f) for f in frames])

    upscaler = Upscaler(model, "cpu", "fp64", tile=0)
    seen = _oom_above(upscaler.runner.net.body[0], lambda shape: shape[0] > 2)
    np.testing.assert_array_equal(upscaler.frames(frames), expected)
    # 7 fails, 3 fails, 1 and 2 run, 4 fails, 2 and 2 run
    assert [s[0] for s in seen] == [7, 3, 1, 2, 4, 2, 2]

    big = np.random.default_rng(10).integers(0, 256, (3, 40, 36, 3), dtype=np.uint8)
    expected = np.stack([net(f) for f in big])
    upscaler = Upscaler(model, "cpu", "fp64", tile=0)
    seen = _oom_above(upscaler.runner.net.body[0], lambda shape: shape[0] > 1 or max(shape[-2:]) > 16 + 2 * pad)
    np.testing.assert_array_equal(upscaler.frames(big), expected)
    assert max(seen[-1][-2:]) <= 16 + 2 * pad  # the frames were done in tiles


# ----------------------------------------------------------------------------- MATLAB rounding: half levels go up

S = 16  # a x16 network: its tail bias sets 3 * 16 * 16 = 768 output values at once


def _exact_level(z: float, peak: int) -> np.float32 | None:
    """A float32 network output y whose float32 product y * peak is exactly ``z`` (what clip-and-round sees)."""
    z32, y0 = np.float32(z), np.float32(np.float64(z) / peak)
    candidates = [y0]
    for way in (np.float32(np.inf), np.float32(-np.inf)):
        y = y0
        for _ in range(16):
            y = np.nextafter(y, way)
            candidates.append(y)
    return next((y for y in candidates if y * np.float32(peak) == z32), None)


def _levels(peak: int) -> tuple[np.ndarray, np.ndarray]:
    """768 network outputs and what they must become: every half level k + 0.5 (of uint8; 250 spread over
    uint16) goes up to k + 1 (0.5 -> 1, 1.5 -> 2, 2.5 -> 3: not to the even neighbour), the float just below
    k + 0.5 goes down to k, whole levels stay, and clipping takes what is outside [0, 1] to 0 and the peak."""
    ks = range(255) if peak == 255 else np.linspace(0, peak - 1, 250).astype(int).tolist()
    halves = [(k + 0.5, k + 1) for k in ks]
    others = [(k, k) for k in ks] + [(np.nextafter(np.float32(k + 0.5), np.float32(0)), k) for k in ks if k]
    values, wanted = [], []
    for z, want in halves + others:
        y = _exact_level(z, peak)
        if y is not None:
            values.append(y)
            wanted.append(want)
        elif (z, want) in halves:
            raise AssertionError(f"no float32 output lands on {z}")
    values += [np.float32(-0.25), np.float32(1.0), np.float32(1.5), np.float32(0.0)]
    wanted += [0, peak, peak, 0]
    values, wanted = values[: 3 * S * S], wanted[: 3 * S * S]
    pad = 3 * S * S - len(values)
    return np.array(values + [np.float32(0)] * pad, np.float32), np.array(wanted + [0] * pad)


def _level_network(values: np.ndarray, training_network: bool = False) -> torch.nn.Module:
    """A x16 network whose output on a black image is ``values`` at the 768 sub-pixel places of every input pixel:
    its tail conv's weight is zero and its bias holds them (the residual adds exactly 0)."""
    if training_network:  # a RepSRNet is not fused: upscale takes the float path (run_tiled, then clip and round)
        net = RepSRNet(upscale=S, num_feat=4, num_block=1, block="plain")
        tail = net.tail
    else:
        net = CompactSRNet(num_feat=4, num_conv=1, upscale=S)
        tail = net.body[-1]
    with torch.no_grad():
        tail.weight.zero_()
        tail.bias.copy_(torch.from_numpy(values))
    return net.eval()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_half_levels_round_up_on_every_path(dtype):
    """Network output that lands exactly on k + 0.5 levels becomes k + 1, as MATLAB's im2uint8 rounds, on every
    path that clips and rounds: upscale's fused path, its float path, the batched video path, ncnn and OpenVINO.

    (No float32 y has y * 255 exactly k + 0.5, so the half levels are the float32 products the code computes.
    Just below 0.5 the float32 arithmetic "add 0.5, truncate" rounds 0.49999997 up: that one case is left out.)"""
    from repsr.runtimes import ncnn_available, openvino_available

    peak = 255 if dtype == np.uint8 else 65535
    values, wanted = _levels(peak)
    block = wanted.reshape(3, S, S).transpose(1, 2, 0)  # PixelShuffle: tail channel c * S * S + row * S + column
    black = np.zeros((2, 3, 3), dtype)
    expected = np.tile(block, (2, 3, 1)).astype(dtype)
    compact = _level_network(values)
    np.testing.assert_array_equal(upscale(black, compact, backend="torch"), expected)  # fused
    np.testing.assert_array_equal(upscale(black, compact, backend="torch", tile=1), expected)  # fused, in tiles
    np.testing.assert_array_equal(upscale(black, _level_network(values, training_network=True)), expected)  # float
    video = Upscaler(compact, "cpu", backend="torch", tile=0)  # the batched path: clipped and rounded on the device
    np.testing.assert_array_equal(video.frames(np.stack([black, black])), np.stack([expected, expected]))
    runtimes = [name for name, ok in (("ncnn", ncnn_available()), ("openvino", openvino_available())) if ok]
    for backend in runtimes:
        np.testing.assert_array_equal(upscale(black, compact, backend=backend), expected, err_msg=backend)
