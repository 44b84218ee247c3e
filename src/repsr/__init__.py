"""repsr: re-parameterizable super-resolution networks trained with BatchNorm (RepSR, ACM MM 2022)."""

__version__ = "0.1.0"

from .blocks import BLOCKS, PlainBlock, ReparamBlock, RepSRBlock, build_block  # noqa: E402
from .bn import SwitchableBatchNorm2d, get_bn_phase, recompute_population_stats, set_bn_phase  # noqa: E402
from .export import load_model  # noqa: E402
from .inference import upscale  # noqa: E402
from .networks import CompactSRNet, RepSRNet  # noqa: E402
from .reparam import reparameterize_model  # noqa: E402

__all__ = [
    "BLOCKS",
    "CompactSRNet",
    "PlainBlock",
    "RepSRBlock",
    "RepSRNet",
    "ReparamBlock",
    "SwitchableBatchNorm2d",
    "__version__",
    "build_block",
    "get_bn_phase",
    "load_model",
    "recompute_population_stats",
    "reparameterize_model",
    "set_bn_phase",
    "upscale",
]
