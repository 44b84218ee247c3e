"""Temporarily switching a module between training and evaluation mode.

Merging, statistics, timing and validation all need a model in one mode for a moment and must
hand it back as they found it, also when they raise; this is the one place that does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def module_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``model`` (and every submodule) in training or eval mode inside the block; its mode restored after."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def eval_mode(model: nn.Module):
    """``with eval_mode(model): ...`` runs ``model`` in eval mode and restores its mode afterwards."""
    return module_mode(model, False)
