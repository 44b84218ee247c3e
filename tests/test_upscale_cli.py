"""repsr upscale / export / models from the command line."""

import numpy as np
import pytest
import torch
from conftest import randomize_bn
from spandrel_compat import import_spandrel

from repsr import RepSRNet, reparameterize_model
from repsr.checkpoint import save_checkpoint
from repsr.cli import main
from repsr.export import check_onnx, export_onnx, load_deploy, load_model, save_deploy
from repsr.images import read_image, write_image
from repsr.inference import upscale
from repsr.zoo import DEFAULT_MODEL, bundled_models, sample_image


@pytest.fixture
def deploy_file(tmp_path):
    model = reparameterize_model(randomize_bn(RepSRNet(2, 8, 2), seed=9))
    return save_deploy(model, tmp_path / "m.safetensors"), model


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in put é"  # spaces and non-ASCII
    folder.mkdir()
    write_image(folder / "a.png", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    write_image(folder / "b.jpg", rng.integers(0, 256, (9, 11, 3), dtype=np.uint8))
    write_image(folder / "deep.png", rng.integers(0, 65536, (7, 8, 3), dtype=np.uint16))
    write_image(folder / "gray.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    (folder / "broken.png").write_text("not a png")
    return folder


def test_upscale_folder_reports_bad_files_and_continues(inputs, tmp_path, deploy_file, capsys):
    out = tmp_path / "out"
    code = main(["upscale", str(inputs), "-o", str(out), "--model", str(deploy_file[0])])
    assert code == 1  # one file failed
    err = capsys.readouterr().err
    assert f"repsr: {inputs / 'broken.png'}: not a readable image" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "deep.png", "gray.png"]
    assert read_image(out / "deep.png").dtype == np.uint16 and read_image(out / "gray.png").shape == (16, 16)
    np.testing.assert_array_equal(read_image(out / "a.png"), upscale(read_image(inputs / "a.png"), deploy_file[1]))
    # a second run skips what exists; --overwrite redoes it
    (inputs / "broken.png").unlink()
    assert main(["upscale", str(inputs / "*.png"), str(inputs / "a.png"), "-o", str(out),
                 "--model", str(deploy_file[0])]) == 0
    assert "3 skipped" in capsys.readouterr().err  # a.png given twice is done once
    assert main(["upscale", str(inputs / "a.png"), "-o", str(out), "--model", str(deploy_file[0]), "--overwrite",
                 "--tile", "4"]) == 0
    assert "1 upscaled" in capsys.readouterr().err
    assert not list(out.glob(".*.tmp"))


def test_upscale_input_format_and_errors(inputs, tmp_path, deploy_file, capsys):
    out = tmp_path / "o"
    assert main(["upscale", str(inputs / "b.jpg"), "-o", str(out), "--model", str(deploy_file[0]),
                 "--format", "input"]) == 0
    assert (out / "b.jpg").is_file()
    assert main(["upscale", str(inputs / "a.png"), "-o", str(out), "--model", str(deploy_file[0]), "--scale", "4"]) == 1
    assert "model is x2, but --scale is 4" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(out), "--model", str(deploy_file[0])]) == 1
    assert "nope.png: no such file" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["upscale", str(inputs / "a.png"), "-o", str(blocker), "--model", str(deploy_file[0])]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


def test_checkpoints_upscale_directly(inputs, tmp_path):
    model = randomize_bn(RepSRNet(2, 8, 2), seed=1)
    ckpt = save_checkpoint(tmp_path / "c.pth", model)
    assert main(["upscale", str(inputs / "a.png"), "-o", str(tmp_path / "o"), "--model", str(ckpt)]) == 0
    expected = upscale(read_image(inputs / "a.png"), reparameterize_model(model))
    np.testing.assert_array_equal(read_image(tmp_path / "o" / "a.png"), expected)


@pytest.mark.parametrize("dynamic", [False, True])
def test_onnx_export_matches_onnxruntime(tmp_path, deploy_file, dynamic):
    path, model = deploy_file
    onnx_path = export_onnx(load_model(path), tmp_path / "m.onnx", dynamic=dynamic)
    assert check_onnx(model, onnx_path, (1, 3, 64, 64)) <= 1e-5
    if dynamic:
        assert check_onnx(model, onnx_path, (3, 3, 21, 35)) <= 1e-5


def test_export_cli_compact_loads_in_spandrel(tmp_path, deploy_file, capsys):
    path, model = deploy_file
    out = tmp_path / "compact.pth"
    assert main(["export", str(path), "--compact", str(out), "--onnx", str(tmp_path / "m.onnx"), "--dynamic"]) == 0
    assert "onnxruntime max |error|" in capsys.readouterr().out
    descriptor = import_spandrel().ModelLoader().load_from_file(str(out))
    x = torch.rand(1, 3, 10, 12)
    with torch.no_grad():
        assert torch.equal(descriptor.model.eval()(x), model(x))
    assert main(["export", str(path)]) == 1


def test_bundled_models_and_sample():
    models = {m.name: m for m in bundled_models()}
    assert DEFAULT_MODEL in models and models[DEFAULT_MODEL].scale == 4
    assert "repsr-x2-m4c16" in models
    for m in models.values():  # every bundled model beats bicubic on every test set it lists
        assert m.results and all(r["psnr"] > r["bicubic_psnr"] for r in m.results.values())
        assert load_deploy(m.path)[0].upscale == m.scale
    assert read_image(sample_image()).shape == (64, 64, 3)


def test_default_model_and_models_listing(tmp_path, capsys):
    assert main(["models"]) == 0
    assert DEFAULT_MODEL in capsys.readouterr().out
    assert main(["upscale", str(sample_image()), "-o", str(tmp_path)]) == 0
    assert read_image(tmp_path / "butterfly_lr_x4.png").shape == (256, 256, 3)
    with pytest.raises(Exception, match="no such file or bundled model"):
        load_model("repsr-x9-unknown")
