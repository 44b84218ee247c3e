"""ncnn export: NAME.param + NAME.bin run in the ncnn runtime like the PyTorch module, named for Upscayl."""

import math

import ncnn  # noqa: F401 (the runtime is a test dependency: fail, don't skip, when it is missing)
import numpy as np
import pytest
import torch
from torch import nn

from repsr import RepSRNet
from repsr.archs.networks import CompactSRNet
from repsr.checkpoint import save_checkpoint
from repsr.cli import main
from repsr.errors import RepsrError
from repsr.export import save_deploy
from repsr.images import read_image
from repsr.loading import load_model
from repsr.ncnn import (
    check_ncnn,
    check_ncnn_name,
    default_ncnn_name,
    export_ncnn,
    ncnn_param,
    ncnn_weights,
    run_ncnn,
    upscayl_scales,
)
from repsr.zoo import bundled_models, sample_image

TOLERANCE = 1e-4  # the bound; fp32 ncnn measures ~1e-5 or better


def random_compact(in_ch: int, scale: int, num_conv: int, num_feat: int = 8, seed: int = 0) -> CompactSRNet:
    """Random weights scaled by fan-in, so every layer matters and outputs stay O(1) (default init is near zero)."""
    gen = torch.Generator().manual_seed(seed)
    model = CompactSRNet(num_in_ch=in_ch, num_out_ch=in_ch, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    with torch.no_grad():
        for m in model.body:
            if isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 1.4 / math.sqrt(m.weight[0].numel()))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            else:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5)
    return model.eval()


def max_error(model: CompactSRNet, param, weights, x: torch.Tensor) -> float:
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_ncnn(param, weights, x.numpy())
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize(("scale", "in_ch", "num_conv"),
                         [(2, 3, 0), (3, 3, 2), (4, 3, 3), (2, 1, 1), (3, 1, 0), (4, 1, 2)])
def test_random_models_match_pytorch_in_ncnn(tmp_path, scale, in_ch, num_conv):
    model = random_compact(in_ch, scale, num_conv, seed=scale * 10 + num_conv)
    param, weights = export_ncnn(model, tmp_path / "models", f"net-x{scale}")
    assert (param.name, weights.name) == (f"net-x{scale}.param", f"net-x{scale}.bin")
    for shape in [(1, in_ch, 17, 23), (2, in_ch, 5, 3), (1, in_ch, 1, 1), (1, in_ch, 31, 8)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
        with torch.no_grad():  # the convs matter: the output is far from the nearest-upsampled input
            assert (model(x) - nn.functional.interpolate(x, scale_factor=scale)).std() > 0.05
        assert max_error(model, param, weights, x) <= TOLERANCE, shape


def test_wide_model(tmp_path):
    model = random_compact(3, 4, 4, num_feat=32, seed=3)
    param, weights = export_ncnn(model, tmp_path, "wide-x4")
    assert check_ncnn(model, param, weights, (1, 3, 29, 19)) <= TOLERANCE


@pytest.mark.parametrize("bundled", [m.name for m in bundled_models()])
def test_bundled_models_match_pytorch_in_ncnn(tmp_path, bundled):
    model = load_model(bundled)
    param, weights = export_ncnn(model, tmp_path / "models", bundled)
    assert max_error(model, param, weights, torch.rand(1, 3, 33, 47)) <= TOLERANCE
    image = torch.from_numpy(read_image(sample_image())).permute(2, 0, 1)[None].float() / 255
    assert max_error(model, param, weights, image[..., :63, :61]) <= TOLERANCE


def test_files_have_real_esrgan_layout():
    """The layout of Real-ESRGAN's own realesr-animevideov3 files: blob 'data' in, blob 'output' out."""
    model = random_compact(3, 4, 2)
    lines = ncnn_param(model).splitlines()
    assert lines[0] == "7767517"
    layers = [line.split() for line in lines[2:]]
    n_layers, n_blobs = map(int, lines[1].split())
    assert n_layers == len(layers) == 2 * model.num_conv + 8
    produced = [blob for layer in layers for blob in layer[4 + int(layer[2]):4 + int(layer[2]) + int(layer[3])]]
    consumed = [blob for layer in layers for blob in layer[4:4 + int(layer[2])]]
    assert n_blobs == len(produced) == len(set(produced))  # every blob made once...
    assert len(consumed) == len(set(consumed)) and set(consumed) <= set(produced)  # ...and read once (Split)
    assert layers[0][:5] == ["Input", "data", "0", "1", "data"]
    assert [layer[0] for layer in layers[-3:]] == ["PixelShuffle", "Interp", "BinaryOp"]
    assert layers[-1][-2:] == ["output", "0=0"]
    assert layers[-2][-3:] == ["0=1", "1=4.000000e+00", "2=4.000000e+00"]  # nearest, x4
    assert layers[-3][-1] == "0=4"
    # fp32 weights: each conv has a zero tag, then weights and bias; PReLU slopes raw
    n_params = sum(p.numel() for p in model.parameters())
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.body)
    data = ncnn_weights(model)
    assert len(data) == 4 * (n_params + n_convs)
    assert data[:4] == b"\0\0\0\0"
    np.testing.assert_array_equal(np.frombuffer(data[4:4 + 4 * 8 * 27], "<f4"),
                                  model.body[0].weight.detach().numpy().ravel())


def test_upscayl_scale_rules():
    assert upscayl_scales("realesr-animevideov3-x2") == (2, 2)
    assert upscayl_scales("realesr-animevideov3-x3") == (3, 3)
    assert upscayl_scales("RealESRGAN_x4plus") == (4, 4)
    assert upscayl_scales("4x-UltraSharp") == (4, 4)
    assert upscayl_scales("plain") == (4, 4)  # both default to x4
    assert upscayl_scales("NET-X2") == (2, 4)  # the app lower-cases, upscayl-bin does not
    assert upscayl_scales("x16-net") == (4, 1)  # upscayl-bin finds "x1" first
    assert default_ncnn_name("repsr-x4-m4c16", 4) == "repsr-x4-m4c16"
    assert default_ncnn_name("model_deploy", 2) == "model_deploy-x2"
    assert default_ncnn_name("my model (final)", 3) == "my-model-final-x3"
    assert default_ncnn_name("net-x4", 2) == "repsr-x2"  # a contradicting tag cannot be fixed by appending
    assert default_ncnn_name("iter_00300000", 4) == "iter_00300000-x4"
    for scale in (2, 3, 4):
        check_ncnn_name(f"anything-x{scale}", scale)
    check_ncnn_name("plain", 4)


@pytest.mark.parametrize(("name", "scale", "message"), [
    ("plain", 2, "Upscayl reads scale x4 from this name but the model is x2"),
    ("net-x4", 2, "reads scale x4"),
    ("net-x4-v3x", 4, "reads scale x3"),
    ("NET-X2", 2, "reads scale x4"),
    ("sub/net-x2", 2, "an ncnn model name is"),
    ("", 2, "an ncnn model name is"),
    (".hidden-x2", 2, "an ncnn model name is"),
    ("has space-x2", 2, "an ncnn model name is"),
    ("net-x2.param", 2, "without .param/.bin"),
    ("realesr-animevideov3", 4, "call it realesr-animevideov3-x4"),
])
def test_bad_names(name, scale, message):
    with pytest.raises(RepsrError, match=message):
        check_ncnn_name(name, scale)


def test_cli_writes_the_pair_and_says_how_to_use_it(tmp_path, capsys):
    models = tmp_path / "models"
    assert main(["export", "repsr-x2-m4c16", "--ncnn", str(models)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in models.iterdir()) == ["repsr-x2-m4c16.bin", "repsr-x2-m4c16.param"]
    assert "ncnn max |error|" in out and "(fp32)" in out
    assert f"realesrgan-ncnn-vulkan -i in.png -o out.png -m {models} -n repsr-x2-m4c16 -s 2" in out
    assert "Upscayl: Settings > Add Custom Models > select this 'models' folder; then pick 'repsr-x2-m4c16'" in out
    assert "note:" not in out
    error = float(out.split("ncnn max |error| ")[1].split()[0])
    assert error <= TOLERANCE


def test_cli_names_files_and_notes(tmp_path, capsys):
    # a deploy file gets its stem plus the scale; a 1-channel model and a non-'models' folder get notes
    path = save_deploy(random_compact(1, 3, 1), tmp_path / "gray_net.safetensors")
    assert main(["export", str(path), "--ncnn", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "out" / "gray_net-x3.param").is_file() and (tmp_path / "out" / "gray_net-x3.bin").is_file()
    assert "one channel (gray or Y)" in out and "only your own ncnn code" in out
    assert "folder named 'models'" in out
    assert main(["export", str(path), "--ncnn", str(tmp_path / "models"), "--name", "gray-x3"]) == 0
    assert (tmp_path / "models" / "gray-x3.param").is_file()
    # a deep network: realesrgan-ncnn-vulkan's 10 px tile overlap is less than it sees
    deep = save_deploy(random_compact(3, 4, 9), tmp_path / "deep-x4.pth")
    assert main(["export", str(deep), "--ncnn", str(tmp_path / "models")]) == 0
    assert "overlap tiles by 10 px and this network sees 11 px" in capsys.readouterr().out


def test_cli_exports_training_checkpoints(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "iter_5.pth", RepSRNet(upscale=2, num_feat=8, num_block=1), iteration=5)
    assert main(["export", str(ckpt), "--ncnn", str(tmp_path / "models")]) == 0
    model = load_model(ckpt)
    param = tmp_path / "models" / "iter_5-x2.param"
    assert check_ncnn(model, param, param.with_suffix(".bin"), (1, 3, 9, 14)) <= TOLERANCE


def test_cli_errors_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = [
        (["--ncnn", str(blocker)], "exists and is not a folder"),
        (["--ncnn", str(blocker / "models")], "cannot create the folder"),
        (["--ncnn", str(tmp_path / "models"), "--name", "foo"], "foo: Upscayl reads scale x4"),
        (["--ncnn", str(tmp_path / "models"), "--name", "a/b-x2"], "an ncnn model name is"),
        (["--compact", str(tmp_path / "m.pth"), "--name", "foo-x2"], "--name names the ncnn files"),
    ]
    for extra, message in cases:
        assert main(["export", "repsr-x2-m4c16", *extra]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "models").exists() and not (tmp_path / "m.pth").exists()  # refused: nothing written
    (tmp_path / "models" / "repsr-x2-m4c16.param").mkdir(parents=True)
    assert main(["export", "repsr-x2-m4c16", "--ncnn", str(tmp_path / "models")]) == 1
    assert "is a folder" in capsys.readouterr().err


def test_writes_are_atomic(tmp_path, monkeypatch):
    models = tmp_path / "models"
    param, weights = export_ncnn(random_compact(3, 2, 1, seed=1), models, "net-x2")
    before = (param.read_bytes(), weights.read_bytes())

    def fail(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(type(param), "write_text", fail)
    with pytest.raises(RepsrError, match="No space left on device"):
        export_ncnn(random_compact(3, 2, 1, seed=2), models, "net-x2")
    assert (param.read_bytes(), weights.read_bytes()) == before  # neither file was replaced
    assert sorted(p.name for p in models.iterdir()) == ["net-x2.bin", "net-x2.param"]  # no temporary files
    monkeypatch.undo()
    # a successful re-export replaces both
    export_ncnn(random_compact(3, 2, 1, seed=2), models, "net-x2")
    assert param.read_bytes() == before[0] and weights.read_bytes() != before[1]


def _vulkan_devices() -> int:
    try:
        return ncnn.get_gpu_count()
    except Exception:  # a build without Vulkan
        return 0


@pytest.mark.skipif(_vulkan_devices() < 1, reason="no Vulkan device (a GPU, or Mesa's lavapipe: apt-get install "
                                                   "libvulkan1 mesa-vulkan-drivers)")
@pytest.mark.parametrize("bundled", [m.name for m in bundled_models()])
def test_vulkan_as_realesrgan_ncnn_vulkan_runs_it(tmp_path, bundled):
    """The GPU path of realesrgan-ncnn-vulkan and Upscayl: Vulkan layers, fp16 storage, fp32 arithmetic."""
    model = load_model(bundled)
    param, weights = export_ncnn(model, tmp_path / "models", bundled)
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(run_ncnn(param, weights, x.numpy(), vulkan=True) - expected).max() <= TOLERANCE
    # fp16 storage costs precision (about 1/200 of the range here), never structure
    assert np.abs(run_ncnn(param, weights, x.numpy(), vulkan=True, fp16=True) - expected).max() <= 2e-2


def _vulkan_net(param, weights, fp16: bool = False):
    """The files loaded as realesrgan-ncnn-vulkan and Upscayl load them: ``use_vulkan_compute`` on the first
    Vulkan device (fp16 storage and packing as they set them, or fp32 throughout), fp32 arithmetic."""
    net = ncnn.Net()
    net.opt.use_vulkan_compute = True
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = fp16
    net.opt.use_fp16_arithmetic = net.opt.use_bf16_storage = False
    net.set_vulkan_device(0)
    assert net.load_param(str(param)) == 0 and net.load_model(str(weights)) == 0
    return net


def _vulkan_run(net, image: np.ndarray) -> np.ndarray:
    """One CHW float32 image through ``net`` (extractor and output Mat die here, before the net)."""
    c, h, w = image.shape
    mat = ncnn.Mat(w, h, c)  # filled channel by channel: ncnn's channels are row-aligned
    for q in range(c):
        np.array(mat.channel(q), copy=False)[:] = image[q]
    extractor = net.create_extractor()
    extractor.input("data", mat)
    ret, out = extractor.extract("output")
    assert ret == 0
    return np.array(out, dtype=np.float32, copy=True)


@pytest.mark.skipif(_vulkan_devices() < 1, reason="no Vulkan device (a GPU, or Mesa's lavapipe: apt-get install "
                                                   "libvulkan1 mesa-vulkan-drivers)")
@pytest.mark.parametrize(("scale", "in_ch", "num_conv", "num_feat"), [(3, 1, 2, 8), (2, 3, 1, 16), (4, 3, 3, 24)])
def test_vulkan_compute_runs_every_layer_on_the_device_and_matches_pytorch(tmp_path, scale, in_ch, num_conv, num_feat):
    """``net.opt.use_vulkan_compute = True``, as Upscayl runs a model: every layer of the exported graph has a Vulkan
    implementation (none falls back to the CPU), and the output matches PyTorch on sizes that do and do not fill
    ncnn's packs of 4 (channels 1, 3 and 8-48; H*W odd, 1x1); run_ncnn(vulkan=True) is this same computation."""
    model = random_compact(in_ch, scale, num_conv, num_feat=num_feat, seed=scale + 7 * num_conv)
    param, weights = export_ncnn(model, tmp_path, f"net-x{scale}")
    shapes = [(in_ch, 17, 23), (in_ch, 1, 1), (in_ch, 31, 8), (in_ch, 5, 3)]
    images = [torch.rand((1, *s), generator=torch.Generator().manual_seed(sum(s))) for s in shapes]
    net = _vulkan_net(param, weights)
    try:
        assert net.vulkan_device() is not None
        layers = [(layer.type, layer.support_vulkan) for layer in net.layers()]
        assert [t for t, on_device in layers if not on_device] == [], layers
        assert {"Convolution", "PReLU", "PixelShuffle", "Interp", "BinaryOp"} <= {t for t, _ in layers}
        for x in images:
            with torch.no_grad():
                expected = model(x)[0].numpy()
            got = _vulkan_run(net, x[0].numpy())
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= TOLERANCE, tuple(x.shape)
            np.testing.assert_array_equal(run_ncnn(param, weights, x.numpy(), vulkan=True)[0], got)
    finally:
        net.clear()
    upscayl = _vulkan_net(param, weights, fp16=True)  # fp16 storage: about 1/200 of the range, never structure
    try:
        with torch.no_grad():
            expected = model(images[0])[0].numpy()
        assert np.abs(_vulkan_run(upscayl, images[0][0].numpy()) - expected).max() <= 2e-2
    finally:
        upscayl.clear()
