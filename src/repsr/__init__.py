"""repsr: re-parameterizable super-resolution networks trained with BatchNorm (RepSR, ACM MM 2022)."""

from ._version import __version__
from .archs import BLOCKS, PlainBlock, ReparamBlock, RepSRBlock, build_block
from .archs.networks import CompactSRNet, RepSRNet
from .bn import SwitchableBatchNorm2d, get_bn_phase, recompute_population_stats, set_bn_phase
from .inference import Upscaler, upscale
from .loading import load_model
from .reparam import reparameterize_model

__all__ = [
    "BLOCKS",
    "CompactSRNet",
    "PlainBlock",
    "RepSRBlock",
    "RepSRNet",
    "ReparamBlock",
    "SwitchableBatchNorm2d",
    "Upscaler",
    "__version__",
    "build_block",
    "get_bn_phase",
    "load_model",
    "recompute_population_stats",
    "reparameterize_model",
    "set_bn_phase",
    "upscale",
]
