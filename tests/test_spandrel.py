"""Our deploy files load unchanged in spandrel (chaiNNer, ComfyUI) and give the same output."""

import os

import pytest
import torch
from conftest import randomize_bn

from repsr import RepSRNet
from repsr.archs import branch_forward
from repsr.checkpoint import save_checkpoint
from repsr.export import convert
from repsr.loading import load_deploy
from repsr.peers.spandrel_import import import_spandrel


@pytest.fixture(scope="module")
def spandrel():
    try:
        return import_spandrel()
    except ImportError as e:
        if os.environ.get("REPSR_SKIP_SPANDREL") == "1":
            pytest.skip("REPSR_SKIP_SPANDREL=1")
        raise AssertionError("spandrel is missing: run scripts/setup_env.sh test "
                             "(or set REPSR_SKIP_SPANDREL=1 to skip this test knowingly)") from e


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize(("scale", "channels"), [(4, 3), (2, 3), (3, 1)])
def test_spandrel_loads_deploy_file_as_compact(spandrel, tmp_path, suffix, scale, channels):
    model = randomize_bn(RepSRNet(upscale=scale, num_feat=16, num_block=3, num_in_ch=channels), seed=scale)
    checkpoint = save_checkpoint(tmp_path / "train.pth", model)
    deploy_path = convert(checkpoint, tmp_path / f"model{suffix}")
    ours, _ = load_deploy(deploy_path)

    descriptor = spandrel.ModelLoader().load_from_file(str(deploy_path))
    assert descriptor.architecture.id == "Compact"
    assert descriptor.scale == scale
    assert descriptor.input_channels == channels and descriptor.output_channels == channels
    x = torch.rand(1, channels, 19, 21)
    with torch.no_grad():
        assert torch.equal(descriptor.model.eval()(x), ours(x))
        with branch_forward(model):  # and the same function as the training network it came from
            torch.testing.assert_close(ours(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_spandrel_does_not_mistake_a_training_checkpoint_for_compact(spandrel, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "train.pth", RepSRNet(upscale=4, num_feat=16, num_block=2))
    with pytest.raises(Exception) as info:
        spandrel.ModelLoader().load_from_file(str(checkpoint))
    assert "Compact" not in str(type(info.value))
