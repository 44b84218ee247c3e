"""PSNR/SSIM against a direct formula and scikit-image with the parameters that match BasicSR."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from repsr.metrics import psnr, rgb2ycbcr, ssim, ycbcr2rgb


def y_channel(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., i].astype(np.float64) / 255 for i in range(3))
    return 16 + 65.481 * r + 128.553 * g + 24.966 * b


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    return sr, hr


def test_psnr_direct_formula(pair):
    sr, hr = pair
    a, b = y_channel(sr)[4:-4, 4:-4], y_channel(hr)[4:-4, 4:-4]
    expected = 10 * math.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr(sr, hr, crop_border=4) == pytest.approx(expected, abs=1e-10)
    rgb = 10 * math.log10(255**2 / np.mean((sr[2:-2, 2:-2].astype(float) - hr[2:-2, 2:-2]) ** 2))
    assert psnr(sr, hr, 2, y_channel=False) == pytest.approx(rgb, abs=1e-10)
    assert psnr(hr, hr, 4) == math.inf


def test_ssim_matches_scikit_image(pair):
    sr, hr = pair
    a, b = y_channel(sr)[3:-3, 3:-3], y_channel(hr)[3:-3, 3:-3]
    expected = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    # with these parameters skimage also uses an 11x11 window and averages the valid region only
    assert ssim(sr, hr, crop_border=3) == pytest.approx(expected, abs=1e-10)


def _skimage_valid(a, b):
    _, full = structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return full[5:-5, 5:-5].mean()


def test_gray_images_are_measured_on_gray_values(pair):
    sr, hr = pair[0][..., 0], pair[1][..., 0]
    expected = 10 * math.log10(255**2 / np.mean((sr[4:-4, 4:-4].astype(float) - hr[4:-4, 4:-4]) ** 2))
    assert psnr(sr, hr, 4) == pytest.approx(expected, abs=1e-10)
    assert ssim(sr, hr, 4) == pytest.approx(_skimage_valid(sr[4:-4, 4:-4].astype(float), hr[4:-4, 4:-4].astype(float)),
                                            abs=1e-10)


def test_torch_batches_match_numpy_images(pair):
    sr, hr = pair
    to_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)  # noqa: E731
    batch_sr, batch_hr = torch.stack([to_t(sr), to_t(hr)]), torch.stack([to_t(hr), to_t(hr)])
    values = psnr(batch_sr, batch_hr, 4)
    assert values.shape == (2,) and values[0].item() == pytest.approx(psnr(sr, hr, 4), abs=1e-9)
    assert math.isinf(values[1].item())
    assert ssim(batch_sr, batch_hr, 4)[0].item() == pytest.approx(ssim(sr, hr, 4), abs=1e-12)
    # float NumPy images in [0, 1] are rounded to uint8 levels like BasicSR's tensor2img
    assert psnr(sr / 255.0, hr / 255.0, 4) == pytest.approx(psnr(sr, hr, 4), abs=1e-9)


def test_round_y_follows_matlab(pair):
    sr, hr = pair
    a, b = np.floor(y_channel(sr) + 0.5)[4:-4, 4:-4], np.floor(y_channel(hr) + 0.5)[4:-4, 4:-4]
    expected = 10 * math.log10(255**2 / np.mean((a - b) ** 2))
    assert psnr(sr, hr, 4, round_y=True) == pytest.approx(expected, abs=1e-10)


def test_ycbcr_matlab_values_and_inverse():
    white = torch.ones(3, 1, 1, dtype=torch.float64)
    black = torch.zeros(3, 1, 1, dtype=torch.float64)
    np.testing.assert_allclose(rgb2ycbcr(white).flatten() * 255, [235, 128, 128], atol=1e-3)
    np.testing.assert_allclose(rgb2ycbcr(black).flatten() * 255, [16, 128, 128])
    img = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(ycbcr2rgb(rgb2ycbcr(img)), img)


def test_shape_mismatch_is_an_error(pair):
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(pair[0][:-1], pair[1], 4)
