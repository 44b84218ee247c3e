"""The bundled models re-measured: their metadata's Set5 numbers are what the shipped weights score today.

tests/data/Set5 holds the standard Set5 images, so re-evaluating each bundled model there (MATLAB-bicubic LR,
Y channel, border crop = scale) must give the PSNR/SSIM that scripts/model_zoo.py wrote into the file. A change
to the inference path, the bicubic downscale, the metrics or the loader that moves any of them fails here.
"""

import pytest
from conftest import DATA

from repsr.data import HRFolder
from repsr.evaluate import evaluate_dataset
from repsr.inference import Upscaler
from repsr.loading import load_model
from repsr.zoo import bundled_models

MODELS = bundled_models()


def test_models_are_bundled():
    assert len(MODELS) >= 2 and all("Set5" in m.results for m in MODELS)


@pytest.mark.parametrize("bundled", MODELS, ids=[m.name for m in MODELS])
def test_bundled_model_scores_its_recorded_set5_numbers(bundled):
    recorded = bundled.results["Set5"]
    model = load_model(str(bundled.path))
    assert model.upscale == bundled.scale
    dataset = HRFolder(DATA / "Set5", bundled.scale, cache_dir=None)
    assert len(dataset) == 5
    ours = evaluate_dataset(Upscaler(model, "cpu"), dataset, progress=False)
    assert ours["images"] == 5 and ours["scale"] == bundled.scale
    assert ours["psnr"] == pytest.approx(recorded["psnr"], abs=0.005)
    assert ours["ssim"] == pytest.approx(recorded["ssim"], abs=1e-4)
    # the bicubic baseline next to it (the LR making and the metrics on their own, without the network)
    bicubic = evaluate_dataset("bicubic", dataset, progress=False)
    assert bicubic["psnr"] == pytest.approx(recorded["bicubic_psnr"], abs=0.005)
    assert bicubic["ssim"] == pytest.approx(recorded["bicubic_ssim"], abs=1e-4)
