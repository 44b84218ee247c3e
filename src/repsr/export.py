"""Writing models: deploy files (Real-ESRGAN's ``SRVGGNetCompact`` layout) and ONNX.

Both deploy formats load unchanged in spandrel, chaiNNer and ComfyUI; :mod:`repsr.loading` reads
them back. ncnn files are written by :mod:`repsr.ncnn`.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from ._version import __version__
from .archs.networks import CompactSRNet
from .errors import RepsrError
from .fileio import atomic_write
from .loading import DEPLOY_SUFFIXES, load_model


def deploy_metadata(model: CompactSRNet) -> dict[str, str]:
    """The string metadata a ``.safetensors`` deploy file carries (what spandrel and our loader check)."""
    cfg = model.config
    return {
        "format": "repsr-deploy",
        "arch": "SRVGGNetCompact",
        "act_type": "prelu",
        "scale": str(cfg["upscale"]),
        "num_feat": str(cfg["num_feat"]),
        "num_conv": str(cfg["num_conv"]),
        "num_in_ch": str(cfg["num_in_ch"]),
        "num_out_ch": str(cfg["num_out_ch"]),
        "repsr_version": __version__,
    }


def save_deploy(model: CompactSRNet, path: str | os.PathLike, param_key: str = "params_ema",
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` as ``.safetensors`` (flat, with metadata) or ``.pth`` (``{param_key: sd}``), atomically."""
    path = Path(path)
    if path.suffix not in DEPLOY_SUFFIXES:
        raise RepsrError(f"{path}: deploy files end in {' or '.join(DEPLOY_SUFFIXES)}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_write(path) as tmp:
        if path.suffix == ".safetensors":
            save_file(state, str(tmp), metadata={**deploy_metadata(model), **(metadata or {})})
        else:
            torch.save({param_key: state}, tmp)
    return path


def convert(source: str | os.PathLike, output: str | os.PathLike, use_ema: bool = True) -> Path:
    """Write the deploy file ``output`` for a training checkpoint or another deploy file."""
    output = Path(output)
    if output.suffix not in DEPLOY_SUFFIXES:
        raise RepsrError(f"{output}: deploy files end in {' or '.join(DEPLOY_SUFFIXES)}")
    if not output.parent.is_dir():
        raise RepsrError(f"{output}: folder {output.parent} does not exist")
    if output.is_dir():
        raise RepsrError(f"{output}: is a folder")
    return save_deploy(load_model(source, use_ema=use_ema), output)


def export_onnx(model: CompactSRNet, path: str | os.PathLike, dynamic: bool = True, opset: int = 17,
                static_size: tuple[int, int] | None = None) -> Path:
    """Write ``model`` as ONNX: float32 NCHW in [0, 1] in, the upscaled image out (like the module).

    Batch, height and width are free by default, so one file serves every image size; ``static_size``
    (H, W) fixes the input to ``1 x C x H x W`` for runtimes that want fixed shapes (``dynamic=False``
    alone: 64 x 64). Uses the TorchScript-based exporter, which needs no onnxscript.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise RepsrError(f"{path}: ONNX files end in .onnx")
    if static_size is not None and (len(static_size) != 2 or min(static_size) < 1):
        raise RepsrError(f"{path}: a static input size is two positive numbers (H, W), got {static_size}")
    if not path.parent.is_dir():
        raise RepsrError(f"{path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise RepsrError(f"{path}: is a folder")
    static = static_size is not None or not dynamic
    model = copy.deepcopy(model).float().cpu().eval()
    x = torch.rand(1, model.num_in_ch, *(static_size or (64, 64)))
    axes = None if static else {"input": {0: "batch", 2: "height", 3: "width"},
                                "output": {0: "batch", 2: "out_height", 3: "out_width"}}
    try:
        with atomic_write(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notices are not the user's concern
            torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamic_axes=axes, dynamo=False)
    except OSError as e:
        raise RepsrError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def onnx_input_shape(path: str | os.PathLike) -> list[int | str]:
    """The input shape recorded in an ONNX file: numbers for fixed axes, names for free ones."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def check_onnx(model: CompactSRNet, path: str | os.PathLike, shape: tuple[int, ...]) -> float:
    """Max absolute difference between onnxruntime on ``path`` and ``model`` on a random input."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(*shape)
    with torch.no_grad():
        expected = model.float().cpu().eval()(x).numpy()
    return float(abs(session.run(None, {"input": x.numpy()})[0] - expected).max())


def channels_text(channels: int) -> str:
    return {1: "one channel (gray or Y)", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels")


def onnx_report(model: CompactSRNet, path: Path, static: tuple[int, int] | None) -> list[str]:
    """What ``repsr export --onnx`` says of the file it wrote: its error against PyTorch and its input and output."""
    c, s = model.num_in_ch, model.upscale
    shape: list = [1, c, *static] if static else ["N", c, "H", "W"]
    try:
        names = {"batch": "N", "height": "H", "width": "W"}
        shape = [names.get(d, d) if isinstance(d, str) else d for d in onnx_input_shape(path)]
        note = f"; onnxruntime max |error| {check_onnx(model, path, (1, c, *static) if static else (2, c, 37, 45)):.1e}"
    except ImportError:
        note = " (install repsr[onnx] to verify it)"
    out = [d * s if isinstance(d, int) else f"{s}{d}" for d in shape[2:]]
    return [f"wrote {path}{note}",
            f"  input: float32[{','.join(map(str, shape))}] {channels_text(c)} in [0,1]; "
            f"output: float32[{shape[0]},{model.num_out_ch},{out[0]},{out[1]}]"]
