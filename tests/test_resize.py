"""MATLAB imresize against an independent implementation (resize-right with symmetric padding)."""

import numpy as np
import pytest
import torch
from resize_right import interp_methods, resize

from repsr.resize import cubic, imresize


def reference(img: np.ndarray, scale: float) -> np.ndarray:
    factors = [scale, scale] + [1] * (img.ndim - 2)
    return resize(img, scale_factors=factors, interp_method=interp_methods.cubic, pad_mode="symmetric",
                  antialiasing=True)


CASES = [((64, 48, 3), 1 / 4), ((18, 24, 3), 1 / 2), ((30, 33, 3), 1 / 3), ((20, 25, 3), 2.0),
         ((9, 11), 3.0), ((40, 40, 1), 0.75), ((300, 204, 3), 1 / 4), ((7, 5, 3), 4.0), ((12, 12, 3), 1 / 6)]


@pytest.mark.parametrize(("shape", "scale"), CASES)
def test_matches_resize_right_symmetric(shape, scale):
    img = np.random.default_rng(1).random(shape)
    ours = imresize(img, scale)
    assert ours.shape == reference(img, scale).shape
    np.testing.assert_allclose(ours, reference(img, scale), atol=1e-12)


@pytest.mark.parametrize(("shape", "scale"), CASES)
def test_torch_path_matches_numpy(shape, scale):
    img = np.random.default_rng(2).random(shape)
    chw = torch.from_numpy(img if img.ndim == 2 else img.transpose(2, 0, 1))
    out = imresize(chw, scale).numpy()
    out = out if img.ndim == 2 else out.transpose(1, 2, 0)
    np.testing.assert_allclose(out, imresize(img, scale), atol=1e-12)
    batch = imresize(torch.stack([chw, chw]).float(), scale)  # (N, C, H, W) float32
    assert batch.dtype == torch.float32
    np.testing.assert_allclose(batch[1].numpy(), imresize(chw, scale).numpy(), atol=1e-5)


def test_output_size_is_ceil_and_size_argument():
    img = np.zeros((17, 23, 3))
    assert imresize(img, 0.5).shape == (9, 12, 3)
    assert imresize(img, size=(10, 40)).shape == (10, 40, 3)
    with pytest.raises(ValueError):
        imresize(img)


def test_constant_images_stay_constant_and_uint8_rounds_like_matlab():
    img = np.full((16, 16, 3), 77, np.uint8)
    np.testing.assert_array_equal(imresize(img, 0.25), img[:4, :4])
    ramp = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    out = imresize(ramp, 0.5)
    assert out.dtype == np.uint8
    expected = np.floor(np.clip(imresize(ramp.astype(np.float64), 0.5), 0, 255) + 0.5)
    np.testing.assert_array_equal(out, expected)


def test_cubic_kernel_values():
    np.testing.assert_allclose(cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])), [1, 0.5625, 0, -0.0625, 0, 0])
