"""Training: the loop (:mod:`.trainer`) and its parts, one job each.

:mod:`.data_stream` (batches as a function of seed and iteration), :mod:`.step` (one update),
:mod:`.bn_schedule` (the BN switch), :mod:`.validation` (validation, deploy file, results),
:mod:`.run_state` (processes, run folder, log, checkpoints, RNG).
"""

from .bn_schedule import BNSchedule
from .data_stream import BatchKeys, DevicePatches
from .step import lr_factor
from .trainer import Trainer, train

__all__ = ["BNSchedule", "BatchKeys", "DevicePatches", "Trainer", "lr_factor", "train"]
