"""Blocks by name: what configs, ``RepSRNet(block=...)`` and the ablations refer to."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from .baselines import ACBlock, DBBlock, ECBlock, PlainBlock, RepVGGBlock
from .protocol import ReparamBlock
from .repsr_block import RepSRBlock

BLOCKS: dict[str, Callable[..., ReparamBlock]] = {
    "repsr": RepSRBlock,
    "plain": PlainBlock,
    "repvgg": RepVGGBlock,
    "acb": ACBlock,
    "dbb": DBBlock,
    "ecb": ECBlock,
    # RepSR ablation variants (the BN switch itself is a training option: train.bn.switch)
    "repsr_nobn": partial(RepSRBlock, use_bn=False),
    "repsr_noidentity": partial(RepSRBlock, identity=False),
    "repsr_x1": partial(RepSRBlock, expand=1),
    "repsr_x4": partial(RepSRBlock, expand=4),
}


def build_block(name: str, in_channels: int, out_channels: int | None = None, **options) -> ReparamBlock:
    """Build a block by its name in :data:`BLOCKS`."""
    try:
        factory = BLOCKS[name]
    except KeyError:
        raise ValueError(f"unknown block {name!r}; known blocks: {', '.join(sorted(BLOCKS))}") from None
    return factory(in_channels, out_channels, **options)


def block_options(name: str) -> set[str]:
    """The keyword options a block accepts besides its channels (fixed by a variant name: not offered)."""
    factory = BLOCKS[name]
    fixed = set(factory.keywords) if isinstance(factory, partial) else set()
    params = inspect.signature(factory).parameters
    return {p for p in params if p not in ("in_channels", "out_channels") and p not in fixed}
