"""The architectures: the block protocol, the RepSR block, the baseline blocks and the two networks.

Read in this order: :mod:`.protocol` (what every block does), :mod:`.repsr_block`, :mod:`.baselines`,
:mod:`.registry` (blocks by name), :mod:`.networks` (``RepSRNet`` for training, ``CompactSRNet`` deployed).
"""

from .baselines import ACBlock, DBBlock, ECBlock, PlainBlock, RepVGGBlock
from .networks import CompactSRNet, RepSRNet
from .protocol import ForwardMode, ReparamBlock, branch_forward
from .registry import BLOCKS, block_options, build_block
from .repsr_block import RepSRBlock

__all__ = ["BLOCKS", "ACBlock", "CompactSRNet", "DBBlock", "ECBlock", "ForwardMode", "PlainBlock", "RepSRBlock",
           "RepSRNet", "RepVGGBlock", "ReparamBlock", "block_options", "branch_forward", "build_block"]
