"""Bicubic baselines reproduce the literature's MATLAB values on Set5 (shipped in tests/data)."""

import json

import pytest
from conftest import DATA

from repsr import RepSRNet
from repsr.checkpoint import save_checkpoint
from repsr.cli import main
from repsr.data import HRFolder
from repsr.evaluate import evaluate_dataset

# Set5 bicubic, Y channel, crop = scale (e.g. Kim et al. VDSR; Lim et al. EDSR tables)
LITERATURE = {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_bicubic_matches_literature(scale):
    result = evaluate_dataset("bicubic", HRFolder(DATA / "Set5", scale), progress=False)
    psnr_ref, ssim_ref = LITERATURE[scale]
    assert result["images"] == 5
    assert abs(result["psnr"] - psnr_ref) <= 0.03
    assert abs(result["ssim"] - ssim_ref) <= 0.002


def test_eval_cli_json_and_images(tmp_path, capsys):
    model = RepSRNet(upscale=2, num_feat=8, num_block=1)
    ckpt = save_checkpoint(tmp_path / "m.pth", model)
    out = tmp_path / "sr"
    code = main(["eval", "--model", str(ckpt), "--data", str(DATA / "Set5"), "--scale", "2", "--json",
                 "--save-images", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert set(result) == {"dataset", "degradation", "degradation_seed", "scale", "psnr", "ssim", "images", "per_image"}
    assert result["dataset"] == "Set5" and result["scale"] == 2 and result["images"] == 5
    assert {r["name"] for r in result["per_image"]} == {"baby", "bird", "butterfly", "head", "woman"}
    assert len(list((out / "Set5").glob("*.png"))) == 5


def test_eval_cli_errors_are_one_line(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "m.pth", RepSRNet(upscale=2, num_feat=8, num_block=1))
    assert main(["eval", "--model", str(ckpt), "--data", str(DATA / "Set5"), "--scale", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"repsr: error: {ckpt}: model is x2, but --scale is 4"
    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "nope"), "--scale", "2"]) == 1
    assert capsys.readouterr().err.strip().endswith("nope: no such folder")


def test_set_names_resolve_under_the_data_root_and_scale_comes_from_the_model(tmp_path, capsys, monkeypatch):
    ckpt = save_checkpoint(tmp_path / "m.pth", RepSRNet(upscale=2, num_feat=8, num_block=1))
    monkeypatch.chdir(tmp_path)  # no Set5 here: the name is looked up under --data-root, as `repsr train` does
    assert main(["eval", "--model", str(ckpt), "--data", "Set5", "--data-root", str(DATA), "--json",
                 "--cache-dir", "none"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "Set5" and result["scale"] == 2 and result["images"] == 5  # x2, from the model
    assert main(["eval", "--model", "bicubic", "--data", "Set5", "--data-root", str(DATA)]) == 1
    assert "--model bicubic needs --scale" in capsys.readouterr().err
    assert main(["eval", "--model", "bicubic", "--data", "Set6", "--data-root", str(DATA), "--scale", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"repsr: error: Set6: no such folder, here or under the data root {DATA}; did you mean Set5?"
    (tmp_path / "list.txt").write_text("Set5\n")
    assert main(["eval", "--model", "bicubic", "--data", "list.txt", "--scale", "2"]) == 1
    assert "list.txt: is a file, not a test set" in capsys.readouterr().err


def test_the_default_data_root_is_the_presets(capsys):
    from repsr.config import read_config_dict
    from repsr.evaluate import DEFAULT_DATA_ROOT, resolve_dataset

    assert DEFAULT_DATA_ROOT == read_config_dict("demo")["data_root"] == read_config_dict("zoo_x4_m4c16")["data_root"]
    assert resolve_dataset(str(DATA / "Set5")) == DATA / "Set5"
    assert resolve_dataset("Set5", DATA) == DATA / "Set5"
