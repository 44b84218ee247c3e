"""The real-world degradation model: kernels against closed forms, noise statistics, real JPEG, branch
probabilities over many draws, determinism per (seed, epoch, index), named test degradations and their cache."""

import io
import json
import math

import numpy as np
import pytest
import torch
from conftest import DATA
from PIL import Image

from repsr.cli import main as cli_main
from repsr.config import load_config
from repsr.data import HRFolder, TrainPatches, open_dataset
from repsr.degradation import DegradationConfig, EvalDegradation, SecondOrderDegradation, ops, parse_degradations
from repsr.degradation import kernels as K
from repsr.degradation.second_order import KERNEL_TYPES, degrade_batch, draw_params, sample_rng
from repsr.errors import RepsrError
from repsr.images import read_image, write_image
from repsr.metrics import psnr
from repsr.resize import imresize
from repsr.training import DevicePatches
from repsr.training.data_stream import DegradedBatches


def grid(size):
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    return x, y


# ----------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("make", [
    lambda: K.gaussian_kernel(21, 2.5),
    lambda: K.gaussian_kernel(7, 0.2),
    lambda: K.gaussian_kernel(15, 3.0, 0.7, 1.1),
    lambda: K.generalized_gaussian_kernel(13, 1.2, 2.4, -0.4, beta=3.5),
    lambda: K.plateau_kernel(9, 1.5, 0.9, 2.0, beta=1.3),
    lambda: K.sinc_kernel(11, math.pi / 3),
    lambda: K.sinc_kernel(21, math.pi / 5),
])
def test_kernels_sum_to_one_and_are_point_symmetric(make):
    k = make()
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-15)  # convolution and correlation agree


def test_gaussian_kernels_match_their_closed_forms():
    x, y = grid(15)
    iso = np.exp(-(x**2 + y**2) / (2 * 2.0**2))
    np.testing.assert_allclose(K.gaussian_kernel(15, 2.0), iso / iso.sum(), rtol=1e-12)
    # axis-aligned anisotropic = outer product of 1-D Gaussians (sigma_x along columns, sigma_y along rows)
    gx, gy = np.exp(-x[0] ** 2 / (2 * 3.0**2)), np.exp(-y[:, 0] ** 2 / (2 * 0.8**2))
    np.testing.assert_allclose(K.gaussian_kernel(15, 3.0, 0.8), np.outer(gy, gx) / np.outer(gy, gx).sum(), rtol=1e-12)
    # a quarter turn swaps the axes' sigmas
    np.testing.assert_allclose(K.gaussian_kernel(15, 3.0, 0.8, math.pi / 2), K.gaussian_kernel(15, 0.8, 3.0),
                               atol=1e-15)
    # a rotated kernel at offset (cos t, sin t) * r along its long axis has q = (r / sigma_x)^2
    t, sx, sy = 0.6, 2.0, 0.5
    x, y = grid(21)
    k = K.gaussian_kernel(21, sx, sy, t)
    q = ((x * math.cos(t) + y * math.sin(t)) / sx) ** 2 + ((-x * math.sin(t) + y * math.cos(t)) / sy) ** 2
    np.testing.assert_allclose(k, np.exp(-q / 2) / np.exp(-q / 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(K.generalized_gaussian_kernel(21, sx, sy, t, beta=1.0), k, rtol=1e-12)
    plateau = 1 / (1 + q**1.7)
    np.testing.assert_allclose(K.plateau_kernel(21, sx, sy, t, beta=1.7), plateau / plateau.sum(), rtol=1e-12)


def test_bessel_j1_and_sinc_kernel_match_scipy():
    special = pytest.importorskip("scipy.special")
    xs = np.linspace(0, 15 * math.pi, 400)
    np.testing.assert_allclose(K.bessel_j1(xs), special.j1(xs), atol=1e-13)
    x, y = grid(13)
    r = np.hypot(x, y)
    cutoff = 0.7 * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(r == 0, cutoff**2 / (4 * math.pi), cutoff * special.j1(cutoff * r) / (2 * math.pi * r))
    np.testing.assert_allclose(K.sinc_kernel(13, cutoff), expected / expected.sum(), atol=1e-13)


def test_filter2d_is_a_reflect_padded_convolution_per_sample():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((3, 2, 23, 30))).double()
    kernels = [K.gaussian_kernel(5, 1.0, 0.5, 0.3), K.sinc_kernel(11, 2.0), K.plateau_kernel(9, 1.0, 2.0, 1.0, 1.5)]
    batch = torch.from_numpy(np.stack([K.pad_kernel(k, 11) for k in kernels]))
    out = ops.filter2d(images, batch)
    for i, k in enumerate(kernels):
        padded = np.pad(images[i].numpy(), ((0, 0), (5, 5), (5, 5)), mode="reflect")
        kk = K.pad_kernel(k, 11)[::-1, ::-1]
        expected = np.stack([[[np.sum(p[r : r + 11, c : c + 11] * kk) for c in range(30)] for r in range(23)]
                             for p in padded])
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-12)
        # one image with a large kernel goes through the FFT: the same convolution
        np.testing.assert_allclose(ops.filter2d(images[i : i + 1], batch[i : i + 1])[0].numpy(), expected, atol=1e-12)


# ----------------------------------------------------------------------------- noise and JPEG

def test_gaussian_noise_has_its_sigma():
    img = torch.full((1, 3, 256, 256), 0.5)
    gen = torch.Generator().manual_seed(0)
    noise = ops.gaussian_noise(img, 10 / 255, gray=False, generator=gen) - img
    assert noise.std().item() == pytest.approx(10 / 255, rel=0.01) and abs(noise.mean().item()) < 1e-3
    gray = ops.gaussian_noise(img, 20 / 255, gray=True, generator=gen) - img
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert gray.std().item() == pytest.approx(20 / 255, rel=0.01)


def test_poisson_noise_variance_follows_the_signal():
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.integers(0, 256, (1, 3, 192, 192)) / 255.0).float()  # 256 levels: v = 256
    gen = torch.Generator().manual_seed(0)
    scale = 2.0
    noise = ops.poisson_noise(img, scale, gray=False, generator=gen) - img
    # Poisson(x v) / v - x has mean 0 and variance x / v, times scale^2
    assert abs(noise.mean().item()) < 2e-3
    assert (noise**2).mean().item() == pytest.approx(img.mean().item() / 256 * scale**2, rel=0.03)
    gray = ops.poisson_noise(img, 1.0, gray=True, generator=gen) - img
    torch.testing.assert_close(gray[:, 0], gray[:, 2], rtol=0, atol=1e-6)


@pytest.mark.parametrize("quality", [30, 75, 95])
def test_jpeg_is_what_libjpeg_gives(quality):
    img = read_image(DATA / "Set5" / "butterfly.png")[:96, :80]
    out = ops.jpeg(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, [quality])
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)  # Pillow's libjpeg, an independent path
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(ops.to_uint8(out[0]), expected)


def test_jpeg_quality_orders_the_error():
    img = read_image(DATA / "Set5" / "butterfly.png")
    t = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    errors = [(ops.jpeg(t, [q]) - t).abs().mean().item() for q in (20, 50, 90)]
    assert errors[0] > errors[1] > errors[2] > 0


def test_usm_sharpen_only_touches_edges():
    img = torch.full((1, 3, 64, 64), 0.4)
    img[..., 32:] = 0.6
    sharp = ops.usm_sharpen(img)
    torch.testing.assert_close(sharp[..., :4], img[..., :4], rtol=0, atol=1e-6)  # flat far from the edge
    assert sharp[0, 0, 10, 31] < 0.4 and sharp[0, 0, 10, 32] > 0.6  # overshoot on both sides of the edge


# ----------------------------------------------------------------------------- the second-order pipeline

def test_branch_probabilities_match_the_config():
    config = DegradationConfig()
    draws = [draw_params(np.random.default_rng([7, i]), config) for i in range(3000)]
    n = len(draws)

    def close(count, p):  # within 4 binomial standard deviations
        assert abs(count / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-9, (count / n, p)

    for stage, cfg in (("first", config.first), ("second", config.second)):
        rounds = [getattr(d, stage) for d in draws]
        blurred = [r for r in rounds if r.kernel is not None]
        close(len(blurred), cfg.blur_prob)
        kinds = [r.kernel_type for r in blurred]
        close(sum(k == "sinc" for k in kinds) * n / len(blurred), cfg.sinc_prob)
        for name, p in zip(KERNEL_TYPES, cfg.kernel_prob, strict=True):
            close(sum(k == name for k in kinds) * n / len(blurred), (1 - cfg.sinc_prob) * p)
        up = sum(r.resize > 1 for r in rounds)
        keep = sum(r.resize == 1 for r in rounds)
        close(up, cfg.resize_prob[0])
        close(keep, cfg.resize_prob[2])
        assert all(cfg.resize_range[0] <= r.resize <= cfg.resize_range[1] for r in rounds)
        close(sum(r.noise.kind == "gaussian" for r in rounds), cfg.gaussian_noise_prob)
        close(sum(r.noise.gray for r in rounds), cfg.gray_noise_prob)
        sigmas = [r.noise.amount * 255 for r in rounds if r.noise.kind == "gaussian"]
        assert cfg.noise_range[0] <= min(sigmas) and max(sigmas) <= cfg.noise_range[1]
        qualities = [r.jpeg_quality for r in rounds]
        assert min(qualities) == cfg.jpeg_range[0] and max(qualities) == cfg.jpeg_range[1]
        for mode in config.resize_modes:
            close(sum(r.resize_mode == mode for r in rounds), 1 / len(config.resize_modes))
    close(sum(d.jpeg_last for d in draws), config.jpeg_last_prob)
    assert all(d.first_round for d in draws)  # the published model always runs both rounds
    first_order = DegradationConfig(first_round_prob=0.3, resize_modes=["area", "bicubic_antialias"])
    other = [draw_params(np.random.default_rng([7, i]), first_order) for i in range(n)]
    close(sum(d.first_round for d in other), 0.3)
    assert {d.second.resize_mode for d in other} == {"area", "bicubic_antialias"}
    # the choice is drawn last: every other draw of a sample is the published stream's
    assert [d.noise_seed for d in other[:50]] != [] and all(
        a.second.jpeg_quality == b.second.jpeg_quality for a, b in zip(draws[:50], other[:50], strict=True))
    assert not any(d.clean for d in draws + other)
    with_clean = [draw_params(np.random.default_rng([7, i]), DegradationConfig(first_round_prob=0.3, clean_prob=0.2))
                  for i in range(n)]
    close(sum(d.clean for d in with_clean), 0.2)
    assert [d.first_round for d in with_clean] == [d.first_round for d in other]  # drawn after everything else
    close(sum(d.final_kernel.shape[0] > 1 for d in draws), config.final_sinc_prob)
    sizes = {d.first.kernel.shape[0] for d in draws if d.first.kernel is not None}
    assert sizes == set(range(7, 22, 2))


def smooth_patches(n, size, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = [np.stack([np.sin(xx * rng.uniform(3, 9) + c) * np.cos(yy * rng.uniform(3, 9)) for c in range(3)])
            for _ in range(n)]
    return torch.from_numpy((np.stack(imgs) + 1) / 2).float()


def test_a_seed_gives_the_same_batch_and_samples_do_not_depend_on_their_batch():
    hr = smooth_patches(4, 64)
    keys = [(0, 3), (0, 8), (1, 3), (2, 0)]
    d = SecondOrderDegradation(DegradationConfig(), scale=4, seed=5)
    lr, target = d(hr, keys)
    assert lr.shape == (4, 3, 16, 16) and torch.equal(target, hr)
    assert torch.equal(lr, d(hr, keys)[0])
    assert torch.equal(torch.round(lr * 255), lr * 255)  # 8-bit levels, like a saved LR image
    # a sample's LR depends on its key only: the same in any batch, on any rank of a DDP run
    swapped = d(hr[[2, 0]], [keys[2], keys[0]])[0]
    assert torch.equal(swapped[0], lr[2]) and torch.equal(swapped[1], lr[0])
    other = SecondOrderDegradation(DegradationConfig(), scale=4, seed=6)(hr, keys)[0]
    assert not torch.equal(other, lr)


def test_antialiased_bicubic_downscale_is_close_to_matlab():
    hr = smooth_patches(1, 64, 3)
    ours = ops.resize(hr, (16, 16), "bicubic_antialias")[0].permute(1, 2, 0).numpy()
    matlab = imresize(hr[0].permute(1, 2, 0).double().numpy(), 1 / 4)
    assert np.abs(ours - matlab)[2:-2, 2:-2].max() < 0.02  # the same kernel; only the borders are handled apart
    aliased = ops.resize(hr, (16, 16), "bicubic")[0].permute(1, 2, 0).numpy()
    assert np.abs(aliased - matlab)[2:-2, 2:-2].max() > np.abs(ours - matlab)[2:-2, 2:-2].max()


def test_first_order_samples_skip_the_first_round():
    hr = smooth_patches(2, 64)
    config = DegradationConfig(first_round_prob=0.0)
    params = SecondOrderDegradation(config, 4, 0).params([(0, 0), (0, 1)])
    assert not any(p.first_round for p in params)
    lr = degrade_batch(hr, params, 4)
    for p in params:  # the first round's blur, resize factor, noise and JPEG no longer matter; its mode does
        p.first.resize, p.first.jpeg_quality, p.first.kernel = 0.2, 5, None
    assert torch.equal(lr, degrade_batch(hr, params, 4))
    for p in params:  # the second round acts on the HR resized to the LR size: no resize, blur, sinc or noise left
        p.first.resize_mode, p.second.resize, p.second.kernel = "bicubic_antialias", 1.0, None
        p.second.noise.amount, p.final_kernel = 0.0, np.ones((1, 1))
        p.second.jpeg_quality = 100
    clean = degrade_batch(hr, params, 4)
    expected = ops.jpeg(ops.resize(hr, (16, 16), "bicubic_antialias"), [100, 100])
    torch.testing.assert_close(clean, torch.round(expected * 255) / 255, rtol=0, atol=1.5 / 255)


def test_clean_samples_are_the_antialiased_bicubic_downscale():
    hr = smooth_patches(3, 64)
    params = SecondOrderDegradation(DegradationConfig(clean_prob=1.0), 4, 0).params([(0, 0), (0, 1), (0, 2)])
    assert all(p.clean for p in params)
    params[1].clean = False  # one degraded sample in the batch changes nothing for the others
    lr = degrade_batch(hr, params, 4)
    expected = torch.round(ops.resize(hr, (16, 16), "bicubic_antialias").clamp(0, 1) * 255) / 255
    assert torch.equal(lr[[0, 2]], expected[[0, 2]]) and not torch.equal(lr[1], expected[1])
    with pytest.raises(RepsrError, match="clean_prob"):
        DegradationConfig(clean_prob=1.5).check("data.train.degradation")


def test_sharpened_target_and_pipeline_on_tiny_images():
    hr = smooth_patches(2, 16)  # x2 from 16 px: intermediate images smaller than the kernels' reach
    d = SecondOrderDegradation(DegradationConfig(sharpen_target=True), scale=2, seed=0)
    lr, target = d(hr, [(0, i) for i in range(2)])
    assert lr.shape == (2, 3, 8, 8) and torch.isfinite(lr).all()
    assert torch.equal(target, ops.usm_sharpen(hr)) and not torch.equal(target, hr)


def test_degraded_batches_on_device_equal_dataloader(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"{i}.png", (smooth_patches(1, 40, i)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    patches = TrainPatches(HRFolder(folder, 2), 12, repeat=2, color="rgb", seed=5)
    keys = [(0, 3), (1, 5), (2, 0)]
    degraded = DegradedBatches(DegradationConfig(), 2, seed=5, color="y")
    on_device = degraded(DevicePatches(patches, torch.device("cpu")).batch(keys))
    items = [patches[k] for k in keys]
    loader = degraded({name: torch.stack([it[name] for it in items]) for name in items[0]})
    assert on_device["lr"].shape == (3, 1, 12, 12) and on_device["hr"].shape == (3, 1, 24, 24)
    assert torch.equal(on_device["lr"], loader["lr"]) and torch.equal(on_device["hr"], loader["hr"])


def test_degradation_config_is_checked():
    base = {"data": {"train": {"paths": ["x"], "degradation": {}}}}
    config = load_config(base, check_paths=False)
    assert config.data.train.degradation == DegradationConfig()
    assert config.data.train.degradation.second.blur_prob == 0.8 and config.data.train.degradation.first.blur_prob == 1
    for override, message in (
        ("data.train.degradation.frist={}", "did you mean data.train.degradation.first"),
        ("data.train.degradation.first.jpeg_range=[20, 101]", "first.jpeg_range: must be"),
        ("data.train.degradation.second.kernel_prob=[0.5, 0.5]", "second.kernel_prob"),
        ("data.train.degradation.first.kernel_list=[iso, box]", "unknown kernel box"),
        ("data.train.degradation.final_sinc_size=[8, 8]", "no odd kernel size"),
        ("data.train.degradation.resize_modes=[nearest]", "resize_modes"),
        ("data.train.degradation.first.resize_prob=[0.5, 0.5, 0.5]", "resize_prob"),
        ("data.val.degradations=[jpeg200]", r"data.val.degradations\[0\].*1-100"),
    ):
        with pytest.raises(RepsrError, match=message):
            load_config(base, [override], check_paths=False)


# ----------------------------------------------------------------------------- named test degradations

def test_named_degradations_parse_and_label():
    assert [d.name if d else None for d in parse_degradations(["clean", "standard"])] == [
        None, "jpeg40", "noise10+jpeg60", "blur1+jpeg60", "real"]
    assert EvalDegradation("noise10+jpeg60", 3).label == "noise 10 + JPEG q60 (seed 3)"
    assert EvalDegradation("jpeg40").label == "JPEG q40" and not EvalDegradation("jpeg40").random
    for bad, message in (("jpg40", "cannot read"), ("jpeg0", "1-100"), ("blur9", "3.3"), ("real+jpeg40", "cannot")):
        with pytest.raises(RepsrError, match=message):
            EvalDegradation(bad)


def test_named_degradations_apply_their_steps():
    hr = read_image(DATA / "Set5" / "butterfly.png")
    lr = imresize(hr, 1 / 4)
    jpeg = EvalDegradation("jpeg40").apply(hr, 4, "butterfly")
    buf = io.BytesIO()
    Image.fromarray(lr).save(buf, "JPEG", quality=40)
    assert np.array_equal(jpeg, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    noisy = EvalDegradation("noise10").apply(hr, 4, "butterfly").astype(np.float64)
    assert np.std(noisy - lr) == pytest.approx(10, rel=0.1)
    blurred = EvalDegradation("blur1").apply(hr, 4, "butterfly")
    assert psnr(blurred, lr, 0) < 30
    for name in ("noise10+jpeg60", "real"):  # seeded by (seed, image name)
        d = EvalDegradation(name, seed=2)
        a, b = d.apply(hr, 4, "butterfly"), d.apply(hr, 4, "butterfly")
        assert np.array_equal(a, b) and a.shape == lr.shape and a.dtype == np.uint8
        assert not np.array_equal(a, d.apply(hr, 4, "other")) and not np.array_equal(a, EvalDegradation(name).apply(
            hr, 4, "butterfly"))


def test_degraded_test_sets_are_cached_by_name_and_seed(tmp_path):
    cache = tmp_path / "cache"
    ds = open_dataset(DATA / "Set5", 4, cache, EvalDegradation("noise10+jpeg60", 1))
    assert ds.label == "Set5 noise10+jpeg60" and ds.name == "Set5"
    first = ds[0].lr
    names = sorted(p.name for p in cache.iterdir())
    assert len(names) == 2 and any("noise10_jpeg60_s1" in n for n in names)  # the bicubic LR and the degraded one
    again = open_dataset(DATA / "Set5", 4, cache, EvalDegradation("noise10+jpeg60", 1))[0].lr
    assert np.array_equal(first, again) and len(list(cache.iterdir())) == 2
    clean = open_dataset(DATA / "Set5", 4, cache)[0].lr
    assert not np.array_equal(clean, first)


def test_eval_cli_scores_degradations(capsys):
    assert cli_main(["eval", "--model", "bicubic", "--scale", "4", "--data", str(DATA / "Set5"),
                     "--degradation", "clean", "jpeg40", "--cache-dir", "none", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["dataset"], r["degradation"]) for r in rows] == [("Set5", None), ("Set5", "jpeg40")]
    assert rows[1]["psnr"] < rows[0]["psnr"] - 0.5
    assert cli_main(["eval", "--model", "bicubic", "--scale", "4", "--data", str(DATA / "Set5"),
                     "--degradation", "jpeg40", "--cache-dir", "none"]) == 0
    assert "JPEG q40" in capsys.readouterr().out
    assert cli_main(["eval", "--model", "bicubic", "--scale", "4", "--data", str(DATA / "Set5"),
                     "--degradation", "jpg40"]) == 1
    assert "cannot read 'jpg40'" in capsys.readouterr().err


def test_degraded_batches_draw_from_sample_rng():
    config = DegradationConfig()
    params = SecondOrderDegradation(config, 4, 9).params([(3, 11)])[0]
    again = draw_params(sample_rng(9, 3, 11), config)
    assert params.noise_seed == again.noise_seed and np.array_equal(params.final_kernel, again.final_kernel)
    hr = smooth_patches(1, 32)
    assert torch.equal(degrade_batch(hr, [params], 4), degrade_batch(hr, [again], 4))
