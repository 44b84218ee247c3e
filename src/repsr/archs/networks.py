"""The training network (:class:`RepSRNet`) and the deploy network (:class:`CompactSRNet`).

Both compute, in LR space, head conv + PReLU, ``num_block`` x (3x3 block + PReLU), tail conv to
``out * scale**2`` channels, PixelShuffle, plus the nearest-upsampled input. The deploy network
is exactly Real-ESRGAN's ``SRVGGNetCompact`` (same state-dict keys and forward), so its files load
unchanged in spandrel, chaiNNer and ComfyUI. The training network deliberately uses other key
names (``head``/``blocks``/``tail``): spandrel recognises Compact by ``body.0.weight`` +
``body.1.weight`` alone, and a training checkpoint must never be mistaken for a deploy file.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .protocol import ReparamBlock
from .registry import BLOCKS, block_options, build_block


def _check_sizes(upscale: int, num_feat: int, num_block: int, num_in_ch: int, num_out_ch: int) -> None:
    for name, value, low in (("upscale", upscale, 1), ("num_feat", num_feat, 1), ("num_block", num_block, 0),
                             ("num_in_ch", num_in_ch, 1), ("num_out_ch", num_out_ch, 1)):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if num_out_ch != num_in_ch and num_in_ch != 1:
        raise ValueError(f"the input residual needs num_out_ch == num_in_ch (or 1 input channel), "
                         f"got {num_in_ch} -> {num_out_ch}")


class RepSRNet(nn.Module):
    """VGG-style SR network whose body convs are re-parameterizable blocks.

    Keyword-only, like :class:`CompactSRNet`: the two take their sizes in different orders.

    Sizes follow the literature: M4C16 is ``num_block=4, num_feat=16``. ``block`` names an entry
    of :data:`repsr.archs.registry.BLOCKS`; ``expand`` (and any ``block_options``) go to blocks that take them.
    """

    def __init__(
        self,
        *,
        upscale: int,
        num_feat: int,
        num_block: int,
        num_in_ch: int = 3,
        num_out_ch: int | None = None,
        block: str = "repsr",
        expand: int = 2,
        **block_opts: Any,
    ) -> None:
        super().__init__()
        num_out_ch = num_out_ch or num_in_ch
        _check_sizes(upscale, num_feat, num_block, num_in_ch, num_out_ch)
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; known blocks: {', '.join(sorted(BLOCKS))}")
        if "expand" in block_options(block):
            block_opts = {"expand": expand, **block_opts}
        self.config = dict(upscale=upscale, num_feat=num_feat, num_block=num_block, num_in_ch=num_in_ch,
                           num_out_ch=num_out_ch, block=block, **block_opts)
        self.upscale = upscale
        self.head = nn.Conv2d(num_in_ch, num_feat, 3, padding=1)
        self.head_act = nn.PReLU(num_feat)
        self.blocks = nn.ModuleList(build_block(block, num_feat, num_feat, **block_opts) for _ in range(num_block))
        self.acts = nn.ModuleList(nn.PReLU(num_feat) for _ in range(num_block))
        self.tail = nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, padding=1)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: Tensor) -> Tensor:
        out = self.head_act(self.head(x))
        for block, act in zip(self.blocks, self.acts, strict=True):
            out = act(block(out))
        out = self.upsampler(self.tail(out))
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")

    def to_compact(self) -> CompactSRNet:
        """A :class:`CompactSRNet` with the same function; the blocks must be merged already."""
        if not all(isinstance(b, ReparamBlock) and b.deployed for b in self.blocks):
            raise RuntimeError("merge the blocks first (repsr.reparameterize_model)")
        cfg = self.config
        first = self.head.weight
        compact = CompactSRNet(num_in_ch=cfg["num_in_ch"], num_out_ch=cfg["num_out_ch"], num_feat=cfg["num_feat"],
                               num_conv=cfg["num_block"], upscale=cfg["upscale"])
        compact.to(device=first.device, dtype=first.dtype)
        convs = [self.head, *(b.reparam_conv for b in self.blocks), self.tail]
        acts = [self.head_act, *self.acts]
        state = {}
        for k, conv in enumerate(convs):
            state[f"body.{2 * k}.weight"] = conv.weight
            state[f"body.{2 * k}.bias"] = conv.bias
            if k < len(acts):
                state[f"body.{2 * k + 1}.weight"] = acts[k].weight
        compact.load_state_dict(state, strict=True)
        return compact


class CompactSRNet(nn.Module):
    """The deploy network: Real-ESRGAN's ``SRVGGNetCompact`` with PReLU, key for key (keyword-only arguments)."""

    def __init__(self, *, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_conv: int = 16,
                 upscale: int = 4) -> None:
        super().__init__()
        _check_sizes(upscale, num_feat, num_conv, num_in_ch, num_out_ch)
        self.num_in_ch, self.num_out_ch, self.num_feat, self.num_conv = num_in_ch, num_out_ch, num_feat, num_conv
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.PReLU(num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, padding=1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    @property
    def config(self) -> dict[str, int]:
        return dict(num_in_ch=self.num_in_ch, num_out_ch=self.num_out_ch, num_feat=self.num_feat,
                    num_conv=self.num_conv, upscale=self.upscale)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.upscale, mode="nearest")
