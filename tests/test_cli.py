import subprocess
import sys

import pytest

from repsr import RepSRNet, __version__
from repsr.checkpoint import save_checkpoint
from repsr.cli import main
from repsr.loading import load_deploy


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"repsr {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "convert", "eval"):
        assert command in out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "repsr.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_convert_cli(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "train.pth", RepSRNet(upscale=3, num_feat=8, num_block=2))
    assert main(["convert", str(ckpt), str(tmp_path / "m.safetensors")]) == 0
    assert load_deploy(tmp_path / "m.safetensors")[0].upscale == 3
    (tmp_path / "readme.txt").write_text("hello")
    assert main(["convert", str(tmp_path / "readme.txt"), str(tmp_path / "x.pth")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "readme.txt: not a loadable model file" in err and "Traceback" not in err


def test_demo_runs_end_to_end(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--steps", "4", "--num-feat", "8", "--num-block", "2"]) == 0
    out = capsys.readouterr().out
    assert "BN -> population" in out and "speed-up" in out
    model, meta = load_deploy(tmp_path / "model_deploy.safetensors")
    assert meta["scale"] == "4" and model.num_conv == 2


def test_misspelled_commands_get_a_did_you_mean(capsys):
    assert main(["upscle", "photo.jpg"]) == 2
    assert capsys.readouterr().err.strip() == "repsr: error: unknown command 'upscle'; did you mean upscale?"
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate' (commands: " in err and "upscale" in err
