"""Timing of forward passes, shared by the demo and the benchmarks; the TF32 switch of fp32 on NVIDIA GPUs and the
CPU thread count, each set for a while and restored."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

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
    """Multiply-adds x 2 of every convolution of ``model`` on input ``x`` (the convs dominate SR nets)."""
    return 2 * mac_breakdown(model, x).get("convolution", 0)


def tf32_flags() -> dict[str, bool]:
    """Whether fp32 convolutions (cuDNN) and matrix products run in TF32 on NVIDIA GPUs (10-bit mantissa)."""
    return {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """fp32 convolutions and matrix products in TF32 (``True``) or in full fp32 (``False``), restored after.
    PyTorch's defaults differ (cuDNN convolutions TF32, matrix products not), so a floor measured with matrix
    products must be measured under the convolutions' setting; exactness checks need it off."""
    before = tf32_flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = before["cudnn_allow_tf32"]
        torch.backends.cuda.matmul.allow_tf32 = before["matmul_allow_tf32"]


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """PyTorch's CPU thread count set to ``threads`` (None: left as it is), restored after: the count is global,
    and it changes the order of float reductions, so a caller's later results depend on it."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mac_breakdown(model: nn.Module, x: Tensor) -> dict[str, int]:
    """Multiply-accumulates of one forward pass on ``x`` per operator (``convolution``, ``addmm``, ``bmm``, ...),
    as PyTorch's FLOP counter counts them: the convention of fvcore and the NTIRE challenges (elementwise ops,
    pooling and interpolation are free; a transposed convolution costs its kernel once per input pixel)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), eval_mode(model), FlopCounterMode(display=False) as counter:
        model(x)
    return {str(op).removeprefix("aten."): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}


def count_macs(model: nn.Module, x: Tensor) -> int:
    """All multiply-accumulates of one forward pass on ``x`` (:func:`mac_breakdown`, summed)."""
    return sum(mac_breakdown(model, x).values())


def inference_params(model: nn.Module, x: Tensor) -> int:
    """Parameters of the modules that run in an eval-mode forward pass on ``x``: the deployed form of a network
    that keeps its training branches beside a merged conv (SPAN's Conv3XC), each parameter once."""
    used: set[int] = set()
    ran: list[nn.Module] = []
    handles = [m.register_forward_pre_hook(lambda m, _: ran.append(m)) for m in model.modules()]
    try:
        with torch.inference_mode(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    total = 0
    for module in ran:
        for p in module.parameters(recurse=False):
            if id(p) not in used:
                used.add(id(p))
                total += p.numel()
    return total
