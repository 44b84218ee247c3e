"""Untrusted model files, interruptions, and property-based tests (hypothesis)."""

import numpy as np
import pytest
import torch
from conftest import randomize_bn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from repsr import RepSRNet, reparameterize_model
from repsr.archs import BLOCKS, branch_forward, build_block
from repsr.cli import main
from repsr.errors import RepsrError
from repsr.export import save_deploy
from repsr.fileio import atomic_write
from repsr.images import read_image, write_image
from repsr.inference import Upscaler
from repsr.loading import load_model

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_model_files_from_elsewhere_are_refused_clearly(tmp_path):
    deploy = save_deploy(reparameterize_model(RepSRNet(upscale=2, num_feat=8, num_block=1)),
                         tmp_path / "ok.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(deploy.read_bytes()[:200])
    resnet = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.bias": torch.zeros(10)}}, resnet)
    odd = tmp_path / "odd.safetensors"
    save_file({"body.0.weight": torch.zeros(8, 3, 3, 3), "body.1.weight": torch.zeros(8),
               "body.2.weight": torch.zeros(7, 8, 3, 3), "body.2.bias": torch.zeros(7)}, str(odd))
    cases = {truncated: "not a readable safetensors file", resnet: "not an SRVGGNetCompact",
             odd: "cannot infer scale from 7 output channels"}
    for path, message in cases.items():
        with pytest.raises(RepsrError, match=message):
            load_model(path)


def test_atomic_write_keeps_the_previous_file_on_failure(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_write(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [target]


def test_ctrl_c_during_upscale_keeps_only_complete_outputs(tmp_path, monkeypatch, capsys):
    model = save_deploy(reparameterize_model(RepSRNet(upscale=2, num_feat=4, num_block=1)), tmp_path / "m.safetensors")
    for i in range(3):
        write_image(tmp_path / f"in{i}.png", np.full((8, 8, 3), 40 * i, np.uint8))
    real = Upscaler.__call__
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(Upscaler, "__call__", interrupted)
    out = tmp_path / "out"
    code = main(["upscale", *(str(tmp_path / f"in{i}.png") for i in range(3)), "-o", str(out), "--model", str(model)])
    assert code == 130
    assert "interrupted; 1 upscaled" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["in0_x2.png"]


@FAST
@given(st.binary(max_size=300))
def test_decoding_random_bytes_never_crashes(tmp_path, data):
    path = tmp_path / "x.png"
    path.write_bytes(data)
    try:
        img = read_image(path)
    except RepsrError as e:
        assert str(e).startswith(str(path))
    else:
        assert img.dtype in (np.uint8, np.uint16)


@FAST
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 50), st.integers(1, 3))
def test_tiled_equals_untiled_for_any_size(h, w, tile, scale):
    model = randomize_bn(RepSRNet(upscale=scale, num_feat=4, num_block=2), seed=h)
    model = reparameterize_model(model)
    x = torch.rand(1, 3, h, w)
    assert torch.equal(Upscaler(model, "cpu", "fp64", tile=tile).floats(x), Upscaler(model, "cpu", "fp64").floats(x))


@FAST
@given(st.sampled_from(sorted(BLOCKS)), st.integers(1, 6), st.integers(0, 10_000), st.integers(1, 9), st.integers(1, 9))
def test_merge_is_exact_for_random_blocks_and_statistics(name, channels, seed, h, w):
    block = randomize_bn(build_block(name, channels), seed=seed).double().eval()
    x = torch.randn(1, channels, h, w, dtype=torch.float64)
    with torch.no_grad(), branch_forward(block):
        expected = block(x)
        block.reparameterize()
        assert (block(x) - expected).abs().max() <= 1e-9 * max(1.0, expected.abs().max().item())


def test_written_files_get_ordinary_permissions(tmp_path):
    import os

    path = save_deploy(reparameterize_model(RepSRNet(upscale=2, num_feat=4, num_block=1)), tmp_path / "m.safetensors")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
