"""repsr.runtimes: which runtime runs a network, and the OpenVINO and ncnn runners against the PyTorch one."""

import numpy as np
import pytest
import torch
from conftest import randomize_bn

from repsr import RepSRNet, reparameterize_model, runtimes
from repsr.archs.networks import CompactSRNet
from repsr.errors import RepsrError
from repsr.inference import Upscaler, upscale
from repsr.runtimes import make_runner

CPU = torch.device("cpu")
# both in the test extra; a test of one is skipped only where no wheel of it exists for the platform
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(not available(), reason=f"{name} is not installed"))
            for name, available in (("openvino", runtimes.openvino_available), ("ncnn", runtimes.ncnn_available))]


@pytest.fixture(scope="module")
def model():
    return reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=3), seed=5))


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with or without OpenVINO, ncnn and bf16 instructions."""

    def set_machine(openvino: bool, bf16: bool, ncnn: bool = False) -> None:
        monkeypatch.setattr(runtimes, "openvino_available", lambda: openvino)
        monkeypatch.setattr(runtimes, "ncnn_available", lambda: ncnn)
        monkeypatch.setattr(runtimes, "cpu_has_bf16", lambda: bf16)
        monkeypatch.setattr(runtimes, "_told", set())

    return set_machine


def test_auto_picks_the_measured_fastest_runtime(machine, capsys):
    narrow, wide = CompactSRNet(num_feat=16, num_conv=1), CompactSRNet(num_feat=runtimes.WIDE_FEAT, num_conv=1)
    machine(openvino=True, bf16=True)
    assert runtimes.resolve_backend(narrow, CPU, "bf16") == ("openvino", "bf16")
    assert runtimes.resolve_backend(wide, CPU, "bf16") == ("openvino", "bf16")
    assert runtimes.resolve_backend(narrow, CPU, "fp32") == ("torch", "fp32")
    assert runtimes.resolve_backend(wide, CPU, "fp32") == ("openvino", "fp32")
    machine(openvino=True, bf16=True, ncnn=True)
    assert runtimes.resolve_backend(wide, CPU, "fp32") == ("ncnn", "fp32")  # Winograd: fewer multiplications
    assert runtimes.resolve_backend(narrow, CPU, "fp32") == ("torch", "fp32")
    for precision in ("fp16", "fp64"):
        assert runtimes.resolve_backend(wide, CPU, precision) == ("torch", precision)
    assert runtimes.resolve_backend(wide, torch.device("cuda"), "bf16") == ("torch", "bf16")
    assert runtimes.resolve_backend(wide, CPU, "bf16", "torch") == ("torch", "bf16")  # asked for: as asked
    machine(openvino=False, bf16=False, ncnn=False)
    assert runtimes.resolve_backend(wide, CPU, "fp32") == ("torch", "fp32")
    assert capsys.readouterr().err == ""


def test_bf16_falls_back_to_fp32_with_one_line_saying_why(machine, capsys):
    model = CompactSRNet(num_feat=16, num_conv=1)
    machine(openvino=False, bf16=True)
    assert runtimes.resolve_backend(model, CPU, "bf16") == ("torch", "fp32")
    assert runtimes.resolve_backend(model, CPU, "bf16") == ("torch", "fp32")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'repsr[openvino]'" in err  # once per process
    machine(openvino=True, bf16=False)
    assert runtimes.resolve_backend(model, CPU, "bf16") == ("torch", "fp32")
    assert runtimes.resolve_backend(model, CPU, "bf16", "openvino") == ("openvino", "fp32")
    assert "no bf16 instructions" in capsys.readouterr().err
    machine(openvino=True, bf16=True)
    training_net = RepSRNet(upscale=2, num_feat=8, num_block=1).eval()  # not a deploy network: stays in PyTorch fp32
    assert runtimes.resolve_backend(training_net, CPU, "bf16") == ("torch", "fp32")
    assert "deploy networks" in capsys.readouterr().err


def test_explicit_backend_refuses_what_it_cannot_run(machine):
    model = CompactSRNet(num_feat=8, num_conv=1)
    machine(openvino=True, bf16=True, ncnn=True)
    for backend, device, precision, what in (
            ("openvino", torch.device("cuda"), "fp32", "on the CPU"), ("openvino", CPU, "fp16", "fp32 or bf16"),
            ("ncnn", CPU, "bf16", "runs fp32, not bf16"), ("ncnn", torch.device("cuda"), "fp32", "on the CPU")):
        with pytest.raises(RepsrError, match=what):
            runtimes.resolve_backend(model, device, precision, backend)
    for backend in ("openvino", "ncnn"):
        with pytest.raises(RepsrError, match="CompactSRNet"):
            runtimes.resolve_backend(RepSRNet(upscale=2, num_feat=8, num_block=1), CPU, "fp32", backend)
    with pytest.raises(RepsrError, match="--backend must be one of"):
        runtimes.resolve_backend(model, CPU, "fp32", "onnx")
    machine(openvino=False, bf16=True, ncnn=False)
    for backend in ("openvino", "ncnn"):
        with pytest.raises(RepsrError, match=rf"repsr\[{backend}\]"):
            runtimes.resolve_backend(model, CPU, "fp32", backend)


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_network_computes_the_pytorch_network(model, backend):
    net = Upscaler(model, CPU, "fp32", backend)
    assert net.runner.backend == backend and net.scale == 2
    x = torch.rand(2, 3, 13, 17)  # 13 x 17: rows not a multiple of 4 floats
    with torch.no_grad():
        torch.testing.assert_close(net.runner.floats(x), model(x), rtol=0, atol=2e-6)
    img = np.random.default_rng(0).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    ours = net(img)
    torch_out = upscale(img, model, backend="torch")
    assert ours.dtype == np.uint8 and ours.shape == (26, 34, 3)
    assert np.abs(ours.astype(int) - torch_out).max() <= 1  # summation order: a rare pixel one level apart
    for dtype, peak in ((np.uint16, 65535), (np.float32, 1)):
        out = net(img.astype(dtype) * (peak // 255 if peak > 1 else 1 / 255))
        assert out.dtype == dtype
        assert np.abs(out / peak - torch_out / 255).max() <= 1.5 / 255


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_network_keeps_the_guarantees(model, backend):
    """Tiled == untiled, gray and alpha handling, the Y-channel float path, and the NaN guard."""
    net = Upscaler(model, CPU, "fp32", backend, tile=0)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (23, 31, 4), dtype=np.uint8)
    whole = net(img)
    tiled = Upscaler(model, CPU, "fp32", backend, tile=7)(img)
    assert np.abs(tiled.astype(int) - whole).max() <= 1 and (tiled != whole).mean() < 1e-3  # fp32: summation order
    np.testing.assert_array_equal(whole[:, :, :3], net.images(np.ascontiguousarray(img[:, :, :3])))
    gray = net(img[:, :, 0])  # a gray image into an RGB network: the float path
    assert gray.shape == (46, 62)
    assert np.abs(gray.astype(int) - upscale(img[:, :, 0], model, backend="torch")).max() <= 1
    y_model = reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=2, num_in_ch=1), seed=6))
    y_net = Upscaler(y_model, CPU, "fp32", backend)
    assert np.abs(y_net(img[:, :, :3]).astype(int)
                  - upscale(img[:, :, :3], y_model, backend="torch")).max() <= 1
    for gray_in in (img[:, :, 0], img[:, :, 0] / np.float32(255)):  # gray into a 1-channel network: the fused path
        out = y_net(gray_in)
        assert out.shape == (46, 62) and out.dtype == gray_in.dtype
        assert np.abs(out.astype(float) - upscale(gray_in, y_model, backend="torch")).max() <= 1
    broken = CompactSRNet(num_feat=4, num_conv=1, upscale=2)
    with torch.no_grad():
        broken.body[0].weight.fill_(float("nan"))
    with pytest.raises(RepsrError, match="NaN/inf"):
        upscale(img, broken, backend=backend)
    with torch.no_grad():
        broken.body[0].weight.zero_()
        broken.body[-1].bias.fill_(1e37)  # finite values whose sum overflows: checked one by one, and kept
    assert (upscale(img, broken, backend=backend)[:, :, :3] == 255).all()


def test_openvino_bf16_stays_close_to_fp32(model):
    if not (runtimes.openvino_available() and runtimes.cpu_has_bf16()):
        pytest.skip("needs OpenVINO and a CPU with bf16 instructions")
    img = np.random.default_rng(2).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    net = Upscaler(model, CPU, "bf16")
    assert net.runner.backend == "openvino" and net.runner.precision == "bf16"
    assert np.abs(net(img).astype(int) - upscale(img, model)).max() <= 4


@pytest.mark.parametrize("backend", RUNTIMES)
def test_an_upscaler_keeps_the_weights_it_was_made_with(backend):
    fresh = reparameterize_model(randomize_bn(RepSRNet(upscale=2, num_feat=8, num_block=1), seed=7))
    made = Upscaler(fresh, CPU, "fp32", backend)
    img = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    before = upscale(img, fresh, backend=backend)
    np.testing.assert_array_equal(made(img), before)
    with torch.no_grad():
        fresh.body[-1].bias.add_(0.25)  # in place: the same tensors, a new version
    np.testing.assert_array_equal(made(img), before)  # a prepared copy: later changes do not reach it
    assert (upscale(img, fresh, backend=backend).astype(int) - before).mean() > 10  # 64 levels where not clipped


@pytest.mark.skipif(not runtimes.openvino_available(), reason="openvino is not installed")
def test_cli_backend_option(tmp_path, capsys):
    from repsr.cli import main
    from repsr.images import read_image, write_image

    img = np.random.default_rng(4).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "in.png", img)
    outs = {}
    for backend in ("torch", "openvino"):
        assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / backend), "--backend", backend]) == 0
        outs[backend] = read_image(next((tmp_path / backend).glob("*.png")))
    assert outs["torch"].shape == (48, 40, 3)
    assert np.abs(outs["torch"].astype(int) - outs["openvino"]).max() <= 1
    assert main(["upscale", str(tmp_path / "in.png"), "-o", str(tmp_path / "x"), "--backend", "openvino",
                 "--precision", "fp16"]) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line == "repsr: error: --backend openvino runs fp32 or bf16, not fp16"


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtimes_tile_only_to_bound_memory(model, backend):
    from repsr.runtimes import CPU_TILE_ABOVE_BYTES, RUNTIME_TILE, RUNTIME_TILE_ABOVE_BYTES

    runner = make_runner(model, CPU, "fp32", backend)
    widest = 3 * 2**2 * 4  # bytes per LR pixel of the widest activation: the tail conv's 12 float channels
    side = int((CPU_TILE_ABOVE_BYTES / widest) ** 0.5) + 8  # PyTorch would tile here
    assert runner.auto_tile(side, side) == 0
    side = int((RUNTIME_TILE_ABOVE_BYTES / widest) ** 0.5) + 8
    assert runner.auto_tile(side, side) == RUNTIME_TILE
