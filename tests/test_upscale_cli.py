"""repsr upscale / export / models from the command line."""

import io
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from repsr import RepSRNet, reparameterize_model
from repsr.checkpoint import save_checkpoint
from repsr.cli import main
from repsr.errors import RepsrError
from repsr.export import check_onnx, export_onnx, save_deploy
from repsr.images import read_image, software_tag, write_image
from repsr.inference import Upscaler, upscale
from repsr.loading import load_deploy, load_model
from repsr.peers.spandrel_import import import_spandrel
from repsr.zoo import DEFAULT_MODEL, bundled_models, bundled_names, sample_image


@pytest.fixture
def deploy_file(tmp_path):
    model = reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2), seed=9))
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
    assert sorted(p.name for p in out.iterdir()) == ["a_x2.png", "b_x2.png", "deep_x2.png", "gray_x2.png"]
    assert read_image(out / "deep_x2.png").dtype == np.uint16 and read_image(out / "gray_x2.png").shape == (16, 16)
    np.testing.assert_array_equal(read_image(out / "a_x2.png"), upscale(read_image(inputs / "a.png"), deploy_file[1]))
    # a second run skips what exists; --overwrite redoes it
    (inputs / "broken.png").unlink()
    assert main(["upscale", str(inputs / "*.png"), str(inputs / "a.png"), "-o", str(out),
                 "--model", str(deploy_file[0])]) == 0
    assert "3 skipped" in capsys.readouterr().err  # a.png given twice is done once
    assert main(["upscale", str(inputs / "a.png"), "-o", str(out), "--model", str(deploy_file[0]), "--overwrite",
                 "--tile", "4"]) == 0
    assert "1 upscaled" in capsys.readouterr().err
    assert not list(out.glob(".*.tmp"))


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_writing_into_the_input_folder_never_touches_the_originals(inputs, deploy_file, capsys):
    """The issue's case: `repsr upscale pics -o pics --overwrite` used to replace the inputs."""
    model = str(deploy_file[0])
    (inputs / "broken.png").unlink()
    originals = snapshot(inputs)
    assert main(["upscale", str(inputs), "-o", str(inputs), "--overwrite", "--model", model]) == 0
    assert "4 upscaled" in capsys.readouterr().err
    after = snapshot(inputs)
    assert {k: after[k] for k in originals} == originals  # byte for byte
    assert sorted(set(after) - set(originals)) == ["a_x2.png", "b_x2.png", "deep_x2.png", "gray_x2.png"]
    # again, with and without --overwrite: the outputs (recognized by their tag) are not upscaled twice over
    assert main(["upscale", str(inputs), "-o", str(inputs), "--model", model]) == 0
    err = capsys.readouterr().err
    assert "0 upscaled, 4 skipped (output exists" in err and "4 earlier outputs of repsr" in err
    assert main(["upscale", str(inputs), "-o", str(inputs), "--overwrite", "--model", model]) == 0
    assert "4 upscaled" in capsys.readouterr().err
    assert set(snapshot(inputs)) == set(after) and {k: snapshot(inputs)[k] for k in originals} == originals


def test_output_that_is_an_input_is_refused_with_or_without_overwrite(tmp_path, deploy_file, capsys):
    model = str(deploy_file[0])
    pics = tmp_path / "pics"
    pics.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "a_x2.png", "b.png", "c.png"):  # a_x2.png is the user's own picture
        write_image(pics / name, rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    (pics / "b_x2.png").symlink_to(pics / "c.png")  # an output name that is an input through a symlink
    other = tmp_path / "other"
    other.mkdir()
    write_image(other / "d.png", rng.integers(0, 256, (6, 5, 3), dtype=np.uint8))
    os.link(other / "d.png", pics / "d_x2.png")  # ... through a hard link (a case-insensitive name is the same)
    before = snapshot(pics)
    for extra in ([], ["--overwrite"]):
        code = main(["upscale", *(str(pics / n) for n in ("a.png", "a_x2.png", "b.png", "c.png")),
                     str(other / "d.png"), "-o", str(pics), "--model", model, *extra])
        assert code == 1
        err = capsys.readouterr().err
        for name in ("a.png", "b.png"):
            assert f"{pics / name}: its output {pics / name[0]}_x2.png is one of the inputs" in err
        assert f"{other / 'd.png'}: its output {pics / 'd_x2.png'} is one of the inputs" in err
    assert {k: snapshot(pics)[k] for k in before} == before and (pics / "b_x2.png").is_symlink()
    assert (pics / "a_x2_x2.png").is_file() and (pics / "c_x2.png").is_file()


@pytest.mark.skipif(sys.platform.startswith("linux"), reason="needs a case-insensitive file system (macOS, Windows)")
def test_output_named_like_an_input_in_another_case_is_refused(tmp_path, deploy_file, capsys):
    pics = tmp_path / "pics"
    pics.mkdir()
    write_image(pics / "A_X2.PNG", np.zeros((4, 4, 3), np.uint8))
    write_image(pics / "a.png", np.zeros((4, 4, 3), np.uint8))
    before = snapshot(pics)
    assert main(["upscale", str(pics / "A_X2.PNG"), str(pics / "a.png"), "--overwrite",
                 "--model", str(deploy_file[0])]) == 1
    assert "is one of the inputs" in capsys.readouterr().err and snapshot(pics)["A_X2.PNG"] == before["A_X2.PNG"]


def test_empty_suffix_only_into_another_folder(inputs, tmp_path, deploy_file, capsys):
    model = str(deploy_file[0])
    (inputs / "broken.png").unlink()
    originals = snapshot(inputs)
    assert main(["upscale", str(inputs), "-o", str(inputs), "--suffix", "", "--overwrite", "--model", model]) == 1
    assert "is in the output folder" in capsys.readouterr().err
    link = tmp_path / "link"
    link.symlink_to(inputs)  # the same folder under another name
    assert main(["upscale", str(inputs / "a.png"), "-o", str(link), "--suffix", "", "--model", model]) == 1
    assert "is in the output folder" in capsys.readouterr().err
    assert main(["upscale", str(inputs / "a.png"), "--suffix", "", "--model", model]) == 1
    assert "without -o the outputs go beside their inputs" in capsys.readouterr().err
    assert snapshot(inputs) == originals
    out = tmp_path / "big"
    assert main(["upscale", str(inputs), "-o", str(out), "--suffix", "", "--model", model]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "deep.png", "gray.png"]
    assert main(["upscale", str(inputs / "a.png"), "-o", str(out), "--suffix=-{scale}x", "--model", model]) == 0
    assert (out / "a-2x.png").is_file()
    assert main(["upscale", str(inputs / "a.png"), "-o", str(out), "--suffix", "x/y", "--model", model]) == 1
    assert "cannot contain a path separator" in capsys.readouterr().err


def test_without_o_outputs_go_beside_the_inputs(tmp_path, deploy_file, capsys):
    photo = tmp_path / "photo.jpg"
    write_image(photo, np.full((6, 8, 3), 90, np.uint8))
    assert main(["upscale", str(photo), "--model", str(deploy_file[0])]) == 0
    assert "-> beside the inputs" in capsys.readouterr().err
    assert read_image(tmp_path / "photo_x2.png").shape == (12, 16, 3)
    assert software_tag(tmp_path / "photo_x2.png").startswith("repsr upscale x2")
    assert main(["upscale", str(photo), "--model", str(deploy_file[0]), "--format", "input"]) == 0
    assert software_tag(tmp_path / "photo_x2.jpg").startswith("repsr upscale x2")  # JPEG outputs are tagged too


def test_upscale_input_format_and_errors(inputs, tmp_path, deploy_file, capsys):
    out = tmp_path / "o"
    assert main(["upscale", str(inputs / "b.jpg"), "-o", str(out), "--model", str(deploy_file[0]),
                 "--format", "input"]) == 0
    assert (out / "b_x2.jpg").is_file()
    assert main(["upscale", str(inputs / "a.png"), "-o", str(out), "--model", str(deploy_file[0]), "--scale", "4"]) == 1
    assert "model is x2, but --scale is 4" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(out), "--model", str(deploy_file[0])]) == 1
    assert "nope.png: no such file" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["upscale", str(inputs / "a.png"), "-o", str(blocker), "--model", str(deploy_file[0])]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err


def test_checkpoints_upscale_directly(inputs, tmp_path):
    model = randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2), seed=1)
    ckpt = save_checkpoint(tmp_path / "c.pth", model)
    assert main(["upscale", str(inputs / "a.png"), "-o", str(tmp_path / "o"), "--model", str(ckpt)]) == 0
    expected = upscale(read_image(inputs / "a.png"), reparameterize_model(model))
    np.testing.assert_array_equal(read_image(tmp_path / "o" / "a_x2.png"), expected)


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
    assert main(["export", str(path), "--compact", str(out), "--onnx", str(tmp_path / "m.onnx")]) == 0
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
    for m in models.values():
        assert load_deploy(m.path)[0].upscale == m.scale and m.inputs in ("clean", "real")
        if m.inputs == "clean":  # a bicubic-trained model beats bicubic on every clean test set
            assert m.clean_results and all(r["psnr"] > r["bicubic_psnr"] for r in m.clean_results.values())
            continue
        # a real-world model beats, on the mean over the degraded sets, bicubic and the bicubic-trained model
        degraded = m.degraded_results
        baseline = models[m.name.removesuffix("-real")].degraded_results
        assert degraded and degraded.keys() == baseline.keys()
        mean = sum(r["psnr"] for r in degraded.values()) / len(degraded)
        assert mean > sum(r["bicubic_psnr"] for r in degraded.values()) / len(degraded)
        assert mean > sum(r["psnr"] for r in baseline.values()) / len(baseline)
    assert read_image(sample_image()).shape == (64, 64, 3)


def test_default_model_and_models_listing(tmp_path, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert DEFAULT_MODEL in out
    header = out.splitlines()[0]
    assert header.index("Set5") < header.index("Set14") < header.index("B100")  # the papers' order
    x4 = next(line for line in out.splitlines() if line.startswith(DEFAULT_MODEL))
    r = {m.name: m for m in bundled_models()}[DEFAULT_MODEL].results["Set5"]
    assert f"{r['psnr']:.2f}/{r['ssim']:.4f}  {r['bicubic_psnr']:.2f}/{r['bicubic_ssim']:.4f}" in x4
    assert main(["upscale", str(sample_image()), "-o", str(tmp_path)]) == 0
    assert read_image(tmp_path / "butterfly_x4.png").shape == (256, 256, 3)
    # the default is the real-world x4 model, for the command line and the Python API alike
    assert {m.name: m for m in bundled_models()}[DEFAULT_MODEL].inputs == "real"
    image = read_image(sample_image())[:20, :24]
    by_name = Upscaler(DEFAULT_MODEL, "cpu", backend="torch")(image)
    assert np.array_equal(upscale(image, device="cpu", backend="torch"), by_name)
    assert np.array_equal(Upscaler(device="cpu", backend="torch")(image), by_name)
    with pytest.raises(Exception, match="no such file or bundled model"):
        load_model("repsr-x9-unknown")


def test_misspelled_names_get_a_did_you_mean(capsys):
    for wrong in ("repsr-x4-m416", "repsr_x4_m4c16", "Repsr-X4-M4C16"):
        with pytest.raises(RepsrError, match=f"{wrong}: no such file or bundled model; did you mean repsr-x4-m4c16?"):
            load_model(wrong)
    with pytest.raises(RepsrError, match=r"bundled: repsr-x2-m4c16, repsr-x2-m4c16-real, repsr-x4-m4c16"):
        load_model("totally-different")
    with pytest.raises(RepsrError, match="did you mean repsr-x2-m4c16-real?"):
        load_model("repsr-x2-m4c16-rea")
    assert main(["train", "dmeo"]) == 1
    assert "dmeo: neither a config file nor a preset; did you mean demo?" in capsys.readouterr().err
    assert main(["train", "zoo-x4-m4c16"]) == 1
    assert "did you mean zoo_x4_m4c16?" in capsys.readouterr().err


def test_files_that_are_not_models_get_one_plain_line(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("never",))

    buffer = io.BytesIO()
    torch.save({"w": np.zeros(3)}, buffer)
    files = {
        "readme.txt": (b"some notes about the model\n", "it is a text file, not a model"),
        "notes.pth": (b"hello", "it is a text file, not a model"),
        "junk.pth": (bytes(range(200, 256)) * 8, "not a PyTorch or safetensors file"),
        "page.safetensors": (b"<!DOCTYPE html><html><head>", "it is a web page (HTML)"),
        "lfs.pth": (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n", "Git LFS pointer"),
        "photo.pth": ((sample_image()).read_bytes(), "it is a PNG image, not a model"),
        "plain.pth": (pickle.dumps({"params": Payload()}), "plain pickle, not a PyTorch tensor file"),
        "numpy.pth": (buffer.getvalue(), "holds a Python object (numpy"),
        "empty.pth": (b"", "it is empty"),
    }
    for name, (data, reason) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert main(["upscale", str(sample_image()), "-o", str(tmp_path / "o"), "--model", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"repsr: error: {path}: not a loadable model file: ") and reason in err, (name, err)
        assert err.count("\n") == 1, (name, err)
        assert "weights_only" not in err and "Traceback" not in err, name
    assert main(["upscale", str(sample_image()), "--model", str(tmp_path)]) == 1
    assert "is a folder, not a model file" in capsys.readouterr().err


def test_help_texts_are_complete_and_plain(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and ":class:" not in top and "repsr upscale" in top
    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "INPUT image or video files, folders" in text
    assert "-o OUTDIR, --output OUTDIR output folder, created if needed (default: beside each input)" in text
    assert "--suffix" in text and "--codec" in text and "--crf" in text
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in bundled_names():
        assert name in text
    assert "--data-root" in text


def test_the_three_demos_write_to_their_own_folders():
    from pathlib import Path

    from repsr.cli import build_parser
    from repsr.config import load_config

    method = build_parser().parse_args(["demo"]).out  # repsr demo
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    upscale_demo = makefile.split("\ndemo:")[1].split("\n\n")[0].rsplit("-o ", 1)[1].split()[0]  # make demo
    train = str(Path("runs") / load_config("demo", check_paths=False).name)  # repsr train demo
    assert len({method, upscale_demo, train}) == 3, (method, upscale_demo, train)
    assert (method, upscale_demo) == ("runs/demo-method", "runs/demo-upscale")


def test_readme_documents_every_preset():
    """docs/training.md's preset table names every preset shipped in src/repsr/presets."""
    import itertools
    import re
    from pathlib import Path

    from repsr.config import preset_names

    guide = (Path(__file__).parent.parent / "docs" / "training.md").read_text()
    table = guide[guide.index("| preset | what |"):].split("\n\n")[0]
    documented = set()
    for cell in re.findall(r"^\| (.+?) \|", table, re.M)[1:]:  # the header row is the first
        for name in re.findall(r"`([^`]+)`", cell):
            parts = re.split(r"\{([^}]*)\}", name)  # repsr_x{2,3,4}_{m4c16,...}: every combination
            options = [p.split(",") if i % 2 else [p] for i, p in enumerate(parts)]
            documented |= {"".join(c) for c in itertools.product(*options)}
    assert set(preset_names()) <= documented, sorted(set(preset_names()) - documented)
