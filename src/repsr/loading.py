"""Loading models: bundled names, deploy files and training checkpoints, all as a deploy network.

Deploy files are the merged network in Real-ESRGAN's ``SRVGGNetCompact`` layout: ``.safetensors``
holds the flat state dict with string metadata (arch, scale, sizes); ``.pth`` holds
``{"params_ema": state_dict}`` (or ``"params"``) with tensors only, the BasicSR/Real-ESRGAN
convention. Ours, Real-ESRGAN's and any Compact file are read here without unpickling anything
but tensors; :mod:`repsr.export` writes them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from safetensors import SafetensorError, safe_open
from torch import Tensor

from .archs.networks import CompactSRNet
from .checkpoint import CHECKPOINT_FORMAT, model_from_checkpoint
from .errors import RepsrError
from .fileio import describe_foreign, head_bytes, safe_torch_load
from .reparam import reparameterize_model
from .zoo import bundled_model_path, bundled_names, closest_name

DEPLOY_SUFFIXES = (".safetensors", ".pth")
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net")


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
    model = CompactSRNet(num_in_ch=num_in_ch, num_out_ch=out_ch, num_feat=num_feat, num_conv=(last - 2) // 2,
                         upscale=scale)
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
