"""Upscaled outputs are bit-identical to those of the code before the runner refactor (commit 4123f1f).

The digests below were made by that commit's API (``prepare`` + ``upscale(prepared=True)``, video frames through
``FrameUpscaler``) and equal what :class:`repsr.Upscaler` and ``Upscaler.frames`` make today, for both bundled
bicubic models, untiled and in tiles of 16 LR px, on RGB uint8, RGB uint16, gray, RGBA, float32 images and a batch
of frames. In fp64, so that they hold on any CPU: fp32 convolutions may sum in another order on another instruction
set, while a fp64 result would have to fall within ~1e-12 of a rounding boundary to change a uint8 or uint16 value.
(The fp32 outputs were compared too, on the machine that made these digests: all equal.)
"""

import hashlib

import numpy as np
import pytest

from repsr.images import read_image
from repsr.inference import Upscaler
from repsr.loading import load_model
from repsr.zoo import sample_image

BEFORE_REFACTOR = {
    "repsr-x4-m4c16 fp64 tile=None butterfly": "9730c13d35c368e1",
    "repsr-x4-m4c16 fp64 tile=None rgb16": "bb14ea1de49186b8",
    "repsr-x4-m4c16 fp64 tile=None gray": "2dc7ede58de43a1f",
    "repsr-x4-m4c16 fp64 tile=None rgba": "9e07bff8f4fe18b9",
    "repsr-x4-m4c16 fp64 tile=None float": "9b360da3fa85c0e3",
    "repsr-x4-m4c16 fp64 tile=None frames": "def808b57de106cb",
    "repsr-x4-m4c16 fp64 tile=16 butterfly": "9730c13d35c368e1",
    "repsr-x4-m4c16 fp64 tile=16 rgb16": "bb14ea1de49186b8",
    "repsr-x4-m4c16 fp64 tile=16 gray": "2dc7ede58de43a1f",
    "repsr-x4-m4c16 fp64 tile=16 rgba": "9e07bff8f4fe18b9",
    "repsr-x4-m4c16 fp64 tile=16 float": "9b360da3fa85c0e3",
    "repsr-x4-m4c16 fp64 tile=16 frames": "def808b57de106cb",
    "repsr-x2-m4c16 fp64 tile=None butterfly": "edb5afc7cfc89a8a",
    "repsr-x2-m4c16 fp64 tile=None rgb16": "90322677b7095116",
    "repsr-x2-m4c16 fp64 tile=None gray": "5bf702ce060ac7eb",
    "repsr-x2-m4c16 fp64 tile=None rgba": "1fd58446093017f6",
    "repsr-x2-m4c16 fp64 tile=None float": "92dfd15edd4a765a",
    "repsr-x2-m4c16 fp64 tile=None frames": "05ca1648c422b995",
    "repsr-x2-m4c16 fp64 tile=16 butterfly": "edb5afc7cfc89a8a",
    "repsr-x2-m4c16 fp64 tile=16 rgb16": "90322677b7095116",
    "repsr-x2-m4c16 fp64 tile=16 gray": "5bf702ce060ac7eb",
    "repsr-x2-m4c16 fp64 tile=16 rgba": "1fd58446093017f6",
    "repsr-x2-m4c16 fp64 tile=16 float": "92dfd15edd4a765a",
    "repsr-x2-m4c16 fp64 tile=16 frames": "05ca1648c422b995",
}


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(str((a.shape, str(a.dtype))).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _inputs() -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(7)
    butterfly = read_image(sample_image())
    images = {
        "butterfly": butterfly,
        "rgb16": (rng.random((36, 40, 3)) * 65535).astype(np.uint16),
        "gray": butterfly[:30, :28, 1].copy(),
        "rgba": np.concatenate([butterfly[:30, :28], rng.integers(0, 256, (30, 28, 1), dtype=np.uint8)], 2),
        "float": butterfly[10:40, 5:33].astype(np.float32) / 255,
    }
    return images, np.stack([butterfly[i:i + 24, 2 * i:2 * i + 32] for i in range(3)])


@pytest.mark.parametrize("name", ["repsr-x4-m4c16", "repsr-x2-m4c16"])
@pytest.mark.parametrize("tile", [None, 16])
def test_outputs_are_bit_identical_to_before_the_runner_refactor(name, tile):
    images, frames = _inputs()
    upscaler = Upscaler(load_model(name), "cpu", "fp64", backend="torch", tile=tile)
    for key, image in images.items():
        assert _digest(upscaler(image)) == BEFORE_REFACTOR[f"{name} fp64 tile={tile} {key}"], key
    assert _digest(upscaler.frames(frames)) == BEFORE_REFACTOR[f"{name} fp64 tile={tile} frames"]
