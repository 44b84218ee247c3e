import pickle

import pytest
import torch
from conftest import randomize_bn
from safetensors import safe_open
from safetensors.torch import save_file

from repsr import RepSRNet, reparameterize_model
from repsr.archs import branch_forward
from repsr.archs.networks import CompactSRNet
from repsr.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from repsr.cli import main
from repsr.errors import RepsrError
from repsr.export import check_onnx, convert, export_onnx, onnx_input_shape, save_deploy
from repsr.loading import load_deploy, load_model


@pytest.fixture
def trained(tmp_path):
    model = randomize_bn(RepSRNet(upscale=4, num_feat=8, num_block=2), seed=5)
    ema = randomize_bn(RepSRNet(upscale=4, num_feat=8, num_block=2), seed=6)
    return model, ema, save_checkpoint(tmp_path / "train.pth", model, ema, iteration=7)


def test_checkpoint_round_trip_is_exact(trained):
    model, ema, path = trained
    payload = read_checkpoint(path)
    assert payload["iteration"] == 7
    for rebuilt, source in ((model_from_checkpoint(payload, use_ema=False), model),
                            (model_from_checkpoint(payload), ema)):
        assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), source.state_dict().values(),
                                                      strict=True))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_convert_round_trips_exactly(trained, tmp_path, suffix):
    _, ema, path = trained
    out = convert(path, tmp_path / f"deploy{suffix}")
    loaded, meta = load_deploy(out)
    expected = reparameterize_model(ema)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), expected.state_dict().values(),
                                                  strict=True))
    # deploy -> deploy conversion (other format) is exact too
    again = convert(out, tmp_path / ("again.pth" if suffix == ".safetensors" else "again.safetensors"))
    reloaded, _ = load_deploy(again)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), reloaded.state_dict().values(),
                                                  strict=True))
    if suffix == ".pth":
        raw = torch.load(out, weights_only=True)
        assert list(raw) == ["params_ema"] and all(isinstance(v, torch.Tensor) for v in raw["params_ema"].values())


def test_safetensors_metadata(trained, tmp_path):
    out = convert(trained[2], tmp_path / "m.safetensors")
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
    assert meta["arch"] == "SRVGGNetCompact" and meta["scale"] == "4"
    assert meta["num_feat"] == "8" and meta["num_conv"] == "2"
    assert meta["num_in_ch"] == "3" and meta["num_out_ch"] == "3"


def test_load_model_merges_checkpoints_on_the_fly(trained):
    model, ema, path = trained
    x = torch.rand(1, 3, 7, 9)
    with torch.no_grad(), branch_forward(ema), branch_forward(model):
        torch.testing.assert_close(load_model(path)(x), ema.eval()(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(load_model(path, use_ema=False)(x), model.eval()(x), rtol=1e-5, atol=1e-5)


def test_clear_errors(tmp_path, trained):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(RepsrError, match="notes.pth: not a loadable model file"):
        convert(text, tmp_path / "o.safetensors")
    with pytest.raises(RepsrError, match="missing.pth: no such file"):
        convert(tmp_path / "missing.pth", tmp_path / "o.safetensors")
    with pytest.raises(RepsrError, match="deploy files end in"):
        convert(trained[2], tmp_path / "o.onnx")
    with pytest.raises(RepsrError, match="does not exist"):
        convert(trained[2], tmp_path / "nowhere" / "o.pth")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(RepsrError, match="bad.safetensors: not a readable safetensors file"):
        load_deploy(bad)
    # a Compact file with an extra key (e.g. a leftover BN buffer) is refused, naming the key
    deploy = reparameterize_model(RepSRNet(upscale=2, num_feat=8, num_block=1))
    state = dict(deploy.state_dict())
    state["body.0.running_mean"] = torch.zeros(8)
    save_file(state, str(tmp_path / "extra.safetensors"))
    with pytest.raises(RepsrError, match="unexpected: body.0.running_mean"):
        load_deploy(tmp_path / "extra.safetensors")
    # metadata that contradicts the weights
    save_deploy(deploy, tmp_path / "lie.safetensors", metadata={"scale": "4"})
    with pytest.raises(RepsrError, match="metadata says scale 4"):
        load_deploy(tmp_path / "lie.safetensors")


def test_loading_never_unpickles_code(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"params_ema": Exploit()}))
    for loader in (load_model, read_checkpoint):
        with pytest.raises(RepsrError, match="evil.pth: not a loadable"):
            loader(evil)
    assert not marker.exists()


def _onnx_model(in_ch: int = 3, scale: int = 3) -> CompactSRNet:
    model = CompactSRNet(num_in_ch=in_ch, num_out_ch=in_ch, num_feat=8, num_conv=2, upscale=scale)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model.eval()


def test_onnx_is_dynamic_by_default(tmp_path):
    import onnxruntime

    model = _onnx_model()
    path = export_onnx(model, tmp_path / "m.onnx")
    assert onnx_input_shape(path) == ["batch", 3, "height", "width"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 17, 23), (1, 3, 40, 9), (2, 3, 1, 1)]:  # two sizes, batch 2
        x = torch.rand(shape)
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape and abs(got - expected).max() <= 1e-5


def test_onnx_static_records_the_shape(tmp_path):
    import onnxruntime

    model = _onnx_model(in_ch=1, scale=2)
    path = export_onnx(model, tmp_path / "s.onnx", static_size=(24, 31))
    assert onnx_input_shape(path) == [1, 1, 24, 31]
    assert check_onnx(model, path, (1, 1, 24, 31)) <= 1e-5
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # the fixed graph refuses other sizes
        session.run(None, {"input": torch.rand(1, 1, 25, 31).numpy()})


def test_onnx_cli_prints_the_shape_it_wrote(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "repsr-x4-m4c16", "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    assert "input: float32[N,3,H,W] RGB in [0,1]; output: float32[N,3,4H,4W]" in text
    assert "onnxruntime max |error|" in text
    assert onnx_input_shape(out)[0] == "batch"
    with pytest.raises(SystemExit):  # the old --dynamic (a no-op: ONNX is dynamic by default) is gone
        main(["export", "repsr-x4-m4c16", "--onnx", str(out), "--dynamic"])
    capsys.readouterr()
    assert main(["export", "repsr-x2-m4c16", "--onnx", str(out), "--static", "48x64"]) == 0
    assert "input: float32[1,3,48,64] RGB in [0,1]; output: float32[1,3,96,128]" in capsys.readouterr().out
    assert onnx_input_shape(out) == [1, 3, 48, 64]
    gray = save_deploy(_onnx_model(in_ch=1, scale=3), tmp_path / "gray.safetensors")
    assert main(["export", str(gray), "--onnx", str(out)]) == 0
    assert "input: float32[N,1,H,W] one channel (gray or Y) in [0,1]" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["48", "48x", "x64", "0x64", "48x0", "-4x4", "48*64", "axb", "48x64x3", ""])
def test_onnx_cli_refuses_a_malformed_static_size(tmp_path, capsys, bad):
    out = tmp_path / "m.onnx"
    assert main(["export", "repsr-x2-m4c16", "--onnx", str(out), f"--static={bad}"]) == 1
    err = capsys.readouterr().err
    assert f"--static {bad!r}: expected HxW" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_onnx_cli_option_errors(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    for args, message in [(["--static", "8x8"], "give --onnx"),
                          (["--onnx", str(tmp_path / "no" / "m.onnx")], "does not exist"),
                          (["--onnx", str(tmp_path / "m.txt")], "ONNX files end in .onnx")]:
        assert main(["export", "repsr-x2-m4c16", *args]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
