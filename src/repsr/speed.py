"""Timing of forward passes, shared by the demo and the benchmarks."""

from __future__ import annotations

import statistics
import time

import torch
from torch import Tensor, nn

from .modes import eval_mode


@torch.inference_mode()
def time_forward(model: nn.Module, x: Tensor, repeat: int = 5, warmup: int = 2) -> float:
    """Median wall time in seconds of ``model(x)`` in eval mode over ``repeat`` runs after ``warmup`` runs;
    the model's mode is restored."""
    times = []
    with eval_mode(model):
        for i in range(warmup + repeat):
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_flops(model: nn.Module, x: Tensor) -> int:
    """Multiply-adds x 2 of every Conv2d of ``model`` on input ``x`` (the convs dominate SR nets)."""
    total = 0

    def count(module: nn.Conv2d, _inputs, output: Tensor) -> None:
        nonlocal total
        k = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        total += 2 * k * output.numel()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total
