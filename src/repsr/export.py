"""Deploy files: the merged network in Real-ESRGAN's ``SRVGGNetCompact`` layout.

``.safetensors`` holds the flat state dict with string metadata (arch, scale, sizes); ``.pth``
holds ``{"params_ema": state_dict}`` (or ``"params"``) with tensors only, the BasicSR/Real-ESRGAN
convention. Both load unchanged in spandrel, chaiNNer and ComfyUI, and both are read back here
without unpickling anything but tensors.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from . import __version__
from .errors import RepsrError
from .fileio import atomic_write, describe_foreign, head_bytes, safe_torch_load
from .networks import CompactSRNet

DEPLOY_SUFFIXES = (".safetensors", ".pth")
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")


def deploy_metadata(model: CompactSRNet) -> dict[str, str]:
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


def _read_state(path: Path) -> tuple[dict, dict[str, str]]:
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise RepsrError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not a file")
        head = head_bytes(path)
        foreign = describe_foreign(head, path)
        if foreign is not None:
            raise RepsrError(f"{path}: not a loadable model file: {foreign}")
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        except (SafetensorError, OSError, ValueError) as e:
            raise RepsrError(f"{path}: not a readable safetensors file ({e})") from None
        return state, metadata
    obj = safe_torch_load(path, "model file")
    if not isinstance(obj, dict):
        raise RepsrError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return obj, {}


def unwrap_state_dict(obj: dict) -> dict[str, Tensor]:
    """Find the state dict in the usual wrappers (``params_ema`` first) and strip ``module.``."""
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    for prefix in ("module.", "netG."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def compact_from_state_dict(state: dict[str, Tensor], source: str = "state dict") -> CompactSRNet:
    """Build a :class:`CompactSRNet` from a Compact-layout state dict, inferring its sizes."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"body\.(\d+)\.(weight|bias)", k))})
    if "body.0.weight" not in state or "body.1.weight" not in state:
        raise RepsrError(f"{source}: not an SRVGGNetCompact (PReLU) model: body.0.weight/body.1.weight missing")
    last = indices[-1]
    first = state["body.0.weight"]
    if first.ndim != 4 or last % 2 or last < 2:
        raise RepsrError(f"{source}: malformed SRVGGNetCompact state dict")
    num_feat, num_in_ch = first.shape[0], first.shape[1]
    out_total = state[f"body.{last}.weight"].shape[0]
    for out_ch in dict.fromkeys((num_in_ch, 3, 4, 1)):
        scale = round((out_total / out_ch) ** 0.5) if out_total % out_ch == 0 else 0
        if scale and scale * scale * out_ch == out_total:
            break
    else:
        raise RepsrError(f"{source}: cannot infer scale from {out_total} output channels")
    model = CompactSRNet(num_in_ch, out_ch, num_feat, (last - 2) // 2, scale)
    expected = model.state_dict()
    extra = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state))
    if extra or missing:
        raise RepsrError(f"{source}: keys do not match SRVGGNetCompact "
                         f"(unexpected: {', '.join(extra[:3]) or '-'}; missing: {', '.join(missing[:3]) or '-'})")
    for key, value in expected.items():
        if state[key].shape != value.shape:
            raise RepsrError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


def load_deploy(path: str | os.PathLike) -> tuple[CompactSRNet, dict[str, str]]:
    """Load a deploy file (ours, Real-ESRGAN's or any SRVGGNetCompact file); returns (model, metadata)."""
    path = Path(path)
    obj, metadata = _read_state(path)
    return _compact_from_file(obj, metadata, path), metadata


def _compact_from_file(obj: dict, metadata: dict[str, str], path: Path) -> CompactSRNet:
    model = compact_from_state_dict(unwrap_state_dict(obj), str(path))
    if "scale" in metadata and metadata["scale"] != str(model.upscale):
        raise RepsrError(f"{path}: metadata says scale {metadata['scale']}, weights say {model.upscale}")
    return model


def load_model(name_or_path: str | os.PathLike, use_ema: bool = True) -> CompactSRNet:
    """A deploy network from a bundled model's name, a deploy file, or a training checkpoint (merged on the fly)."""
    from .checkpoint import CHECKPOINT_FORMAT, model_from_checkpoint
    from .reparam import reparameterize_model
    from .zoo import bundled_model_path, bundled_names, closest_name

    path = Path(name_or_path)
    if path.is_dir():
        inside = path / "model_deploy.safetensors"
        hint = f"; its deploy file is {inside}" if inside.is_file() else ""
        raise RepsrError(f"{path}: is a folder, not a model file{hint}")
    if not path.exists() and path.suffix not in (*DEPLOY_SUFFIXES, ".pt", ".ckpt"):
        bundled = bundled_model_path(str(name_or_path))
        if bundled is None:
            names = bundled_names()
            close = closest_name(str(name_or_path), names)
            hint = f"; did you mean {close}?" if close else ""
            raise RepsrError(f"{name_or_path}: no such file or bundled model{hint} "
                             f"(bundled: {', '.join(names) or 'none'}; 'repsr models' lists them)")
        path = bundled
    obj, metadata = _read_state(path)
    if obj.get("format") == CHECKPOINT_FORMAT:
        return reparameterize_model(model_from_checkpoint(obj, use_ema=use_ema, source=str(path)))
    return _compact_from_file(obj, metadata, path)


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
