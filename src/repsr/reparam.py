"""Whole-model re-parameterization: training network -> plain deploy network."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .archs.networks import RepSRNet
from .archs.protocol import branch_forward
from .modes import eval_mode


def _merge_children(module: nn.Module) -> None:
    # timm's protocol: fuse() returns a replacement, else reparameterize(), else switch_to_deploy().
    for name, child in module.named_children():
        if hasattr(child, "fuse"):
            setattr(module, name, child.fuse())
        elif hasattr(child, "reparameterize"):
            child.reparameterize()
        elif hasattr(child, "switch_to_deploy"):
            child.switch_to_deploy()
        else:
            _merge_children(child)


@torch.no_grad()
def reparameterize_model(model: nn.Module) -> nn.Module:
    """Merge every re-parameterizable block of a copy of ``model`` (``model`` is left as it is).

    The merge is computed in float64 and cast back, so fp32 and half-precision models lose
    nothing to the folding itself. A :class:`RepSRNet` becomes a :class:`CompactSRNet`, whose
    state dict is exactly Real-ESRGAN's ``SRVGGNetCompact`` layout. Dtype and device are kept;
    the result is in eval mode.
    """
    params = list(model.parameters())
    dtype = params[0].dtype if params else torch.float32
    merged = copy.deepcopy(model).to(torch.float64)
    _merge_children(merged)
    if isinstance(merged, RepSRNet):
        merged = merged.to_compact()
    return merged.to(dtype).eval()


@torch.no_grad()
def max_merge_error(model: nn.Module, merged: nn.Module, x: Tensor) -> tuple[float, float]:
    """Max absolute and relative difference between ``model`` (eval mode, through its branches) and ``merged``."""
    with eval_mode(model), branch_forward(model):
        reference = model(x)
    out = merged.eval()(x)
    diff = (out - reference).abs().max().item()
    return diff, diff / max(reference.abs().max().item(), 1e-12)
