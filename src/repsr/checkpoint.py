"""Training checkpoints: the multi-branch network, its config and training state, in one ``.pth``.

A checkpoint holds only tensors, dicts, lists and primitives, so it is read with
``torch.load(weights_only=True)``: loading a checkpoint never runs code from the file. Its keys
(``head``/``blocks``/``tail``) never look like a deploy (Compact) file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .archs.networks import RepSRNet
from .errors import RepsrError
from .fileio import atomic_write, safe_torch_load

CHECKPOINT_FORMAT = "repsr-train"


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(path: str | os.PathLike, model: RepSRNet, ema_model: RepSRNet | None = None,
                    **training_state: Any) -> Path:
    """Write ``model`` (and its EMA copy) with the network config and any extra training state, atomically."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "repsr_version": __version__,
        "network": dict(model.config),
        "params": _cpu_state(model),
        **training_state,
    }
    if ema_model is not None:
        payload["params_ema"] = _cpu_state(ema_model)
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a training checkpoint (weights_only: nothing in the file is executed)."""
    path = Path(path)
    payload = safe_torch_load(path, "checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RepsrError(f"{path}: not a repsr training checkpoint")
    return payload


def model_from_checkpoint(payload: dict[str, Any], use_ema: bool = True, source: str = "checkpoint") -> RepSRNet:
    """Rebuild the training network of a checkpoint (its EMA weights when present and ``use_ema``)."""
    if not isinstance(payload.get("network"), dict) or not isinstance(payload.get("params"), dict):
        raise RepsrError(f"{source}: checkpoint lacks its network config or weights")
    try:
        model = RepSRNet(**payload["network"])
    except (TypeError, ValueError) as e:
        raise RepsrError(f"{source}: invalid network config ({e})") from None
    state = payload["params_ema"] if use_ema and "params_ema" in payload else payload["params"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RepsrError(f"{source}: weights do not fit the network ({str(e).splitlines()[0]})") from None
    return model.eval()
