"""Where a network runs: PyTorch on any device, OpenVINO or ncnn on the CPU, behind one :class:`Runner` protocol.

Measured on this project's benchmark machine (the cpu_runtimes section of benchmarks/RESULTS.md): PyTorch's bf16
convolutions on the CPU are slower than its fp32 ones, while OpenVINO's bf16 runs the networks faster than
PyTorch's fp32; so bf16 on a CPU uses OpenVINO when it is installed and the CPU has bf16 instructions, and
otherwise says why in one line and stays in fp32. In fp32, PyTorch's fused path is the fastest
for narrow networks; for wide ones (:data:`WIDE_FEAT` channels and up) ncnn's Winograd convolutions are faster,
and OpenVINO's f32 next. :func:`make_runner` is the one place that chooses.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch
from torch import nn

from ..archs.networks import CompactSRNet
from ..errors import RepsrError
from .base import CPU_TILE, CPU_TILE_ABOVE_BYTES, RUNTIME_TILE, RUNTIME_TILE_ABOVE_BYTES, Runner, clip_round_, to_image
from .openvino_runner import OPENVINO_PRECISIONS
from .torch_runner import PRECISIONS, TorchRunner

__all__ = ["BACKENDS", "CPU_TILE", "CPU_TILE_ABOVE_BYTES", "PRECISIONS", "RUNTIME_TILE", "RUNTIME_TILE_ABOVE_BYTES",
           "WIDE_FEAT", "Runner", "clip_round_", "make_runner", "pick_device", "resolve_backend", "to_image"]

BACKENDS = ("auto", "torch", "openvino", "ncnn")
BACKEND_TITLES = {"torch": "PyTorch", "openvino": "OpenVINO", "ncnn": "ncnn"}  # as reports name them
# In fp32, other runtimes beat PyTorch's end-to-end path only on wide networks, where convolutions are nearly all
# the work: ncnn's Winograd convolutions need fewer multiplications than PyTorch's (already at the GEMM rate);
# on M4C16 PyTorch's end-to-end path is the fastest. See benchmarks/RESULTS.md (cpu_runtimes).
WIDE_FEAT = 32

_told: set[str] = set()


def notice(message: str) -> None:
    """Print ``repsr: message`` on stderr, once per process (a fallback is worth one line, not one per image)."""
    if message not in _told:
        _told.add(message)
        print(f"repsr: {message}", file=sys.stderr)


@functools.cache
def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def ncnn_available() -> bool:
    try:
        import ncnn  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX), which fast bf16 needs."""
    if openvino_available():
        import openvino as ov

        try:
            return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        except RuntimeError:
            return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_backend(model: nn.Module, device: torch.device, precision: str, backend: str = "auto") -> tuple[str, str]:
    """The (backend, precision) to run: ``backend="auto"`` picks the measured-fastest, with a notice on any fallback.

    On the CPU, for deploy networks: bf16 runs in OpenVINO; fp32 networks of :data:`WIDE_FEAT` channels or more run
    in ncnn (Winograd convolutions), else OpenVINO, when installed; everything else runs in PyTorch.
    """
    if backend not in BACKENDS:
        raise RepsrError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return backend, precision
    on_cpu, compact = device.type == "cpu", isinstance(model, CompactSRNet)
    if backend != "auto":
        allowed = OPENVINO_PRECISIONS if backend == "openvino" else ("fp32",)
        if not on_cpu:
            raise RepsrError(f"--backend {backend} runs on the CPU, not on {device.type}")
        if precision not in allowed:
            raise RepsrError(f"--backend {backend} runs {' or '.join(allowed)}, not {precision}")
        if not compact:
            raise RepsrError(f"--backend {backend} runs deploy networks (CompactSRNet); merge the model first")
        if not (openvino_available() if backend == "openvino" else ncnn_available()):
            raise RepsrError(f"--backend {backend}: {backend} is not installed (pip install 'repsr[{backend}]')")
        if precision == "bf16" and not cpu_has_bf16():
            notice("this CPU has no bf16 instructions (AVX512-BF16/AMX); running in fp32")
            precision = "fp32"
        return backend, precision
    if not on_cpu or precision not in OPENVINO_PRECISIONS:
        return "torch", precision
    if precision == "bf16":
        if not cpu_has_bf16():
            notice("this CPU has no bf16 instructions (AVX512-BF16/AMX); running in fp32")
            precision = "fp32"
        elif not openvino_available():
            notice("bf16 on the CPU is fast only with OpenVINO (pip install 'repsr[openvino]'); running in fp32")
            precision = "fp32"
        elif not compact:
            notice("bf16 on the CPU runs deploy networks only (PyTorch's bf16 is slower than fp32); running in fp32")
            precision = "fp32"
        else:
            return "openvino", "bf16"
    if compact and model.num_feat >= WIDE_FEAT:
        if ncnn_available():
            return "ncnn", "fp32"
        if openvino_available():
            return "openvino", "fp32"
    return "torch", "fp32"


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RepsrError("--device cuda: no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise RepsrError(f"--device: unknown device {name!r}") from None


def make_runner(network: nn.Module, device: str | torch.device = "auto", precision: str = "fp32",
                backend: str = "auto", threads: int | None = None) -> Runner:
    """``network`` prepared to run: on ``device`` in ``precision``, in the runtime :func:`resolve_backend` picks.
    ``threads``: CPU threads of OpenVINO and ncnn (default: PyTorch's)."""
    if precision not in PRECISIONS:
        raise RepsrError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = pick_device(device)
    backend, precision = resolve_backend(network, device, precision, backend)
    if backend == "openvino":
        from .openvino_runner import OpenVINORunner

        return OpenVINORunner(network, precision, threads)
    if backend == "ncnn":
        from .ncnn_runner import NcnnRunner

        return NcnnRunner(network, threads)
    return TorchRunner(network, device, precision)
