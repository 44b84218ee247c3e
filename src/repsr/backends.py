"""Where the deploy network runs on the CPU: PyTorch, OpenVINO or ncnn (``pip install repsr[openvino]`` / ``[ncnn]``).

Measured on this project's benchmark machine (``benchmarks/cpu_runtimes.py``, RESULTS.md): PyTorch's
bf16 convolutions on the CPU are several times slower than its fp32 ones, while OpenVINO's bf16 runs
the networks up to 2x faster than PyTorch's fp32; so ``--precision bf16`` on a CPU uses OpenVINO when
it is installed and the CPU has bf16 instructions, and otherwise says why in one line and stays in
fp32. In fp32, PyTorch's end-to-end path is the fastest for narrow networks; for wide ones
(:data:`WIDE_FEAT` channels and up) ncnn's Winograd convolutions, which need fewer multiplications
than PyTorch's GEMM-rate direct ones, are faster, and OpenVINO's f32 next.

:class:`RuntimeNet` (OpenVINO, ncnn) is an ``nn.Module`` (float NCHW in, float NCHW out, like the
PyTorch network) so that everything written for a prepared model keeps working, plus
:meth:`RuntimeNet.run_image`, one call from an image tile (uint8, uint16 or float32 HWC) to the
upscaled tile in the same dtype, clipped and rounded as :func:`repsr.upscale` does.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .archs.networks import CompactSRNet
from .errors import RepsrError
from .images import PEAKS

BACKENDS = ("auto", "torch", "openvino", "ncnn")
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
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


def _const(array: np.ndarray):
    import openvino.opset13 as ops

    return ops.constant(np.ascontiguousarray(array, dtype=np.float32))


def build_openvino_graph(model: CompactSRNet, image_dtype: np.dtype | None = None):
    """The OpenVINO model of ``model``: float NCHW in and out, or, with ``image_dtype``, an HWC image tile of that
    dtype in and the upscaled tile out as (1, H, s, W, s, C), clipped and rounded like :func:`repsr.upscale`.

    The nearest-upsampled input is added before the pixel shuffle (one add in LR layout, no upsampled copy), and
    a second output, the sum of the tail conv's output, is finite exactly when the result is (barring overflow).
    """
    import openvino as ov
    import openvino.opset13 as ops

    s, c = model.upscale, model.num_out_ch
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    acts = [m for m in model.body if isinstance(m, nn.PReLU)]
    if image_dtype is None:
        x = ops.parameter([-1, model.num_in_ch, -1, -1], np.float32, name="input")
        xf = x
    else:
        image_dtype = np.dtype(image_dtype)
        x = ops.parameter([1, -1, -1, model.num_in_ch], image_dtype, name="image")
        xf = ops.convert(x, ov.Type.f32)
        if image_dtype in PEAKS:
            xf = ops.divide(xf, _const(np.array(PEAKS[image_dtype])))
        xf = ops.transpose(xf, ops.constant(np.array([0, 3, 1, 2], np.int64)))
    h = xf
    for k, conv in enumerate(convs):
        h = ops.convolution(h, _const(conv.weight.detach().cpu().double().numpy()), [1, 1], [1, 1], [1, 1], [1, 1])
        h = ops.add(h, _const(conv.bias.detach().cpu().double().numpy().reshape(1, -1, 1, 1)))
        if k < len(acts):
            h = ops.prelu(h, _const(acts[k].weight.detach().cpu().double().numpy()))
    shape = ops.shape_of(xf)
    n, hh, ww = (ops.gather(shape, ops.constant(np.array([i], np.int64)), ops.constant(np.int64(0))) for i in (0, 2, 3))

    def dims(*parts):
        return ops.concat([p if not isinstance(p, int) else ops.constant(np.array([p], np.int64)) for p in parts], 0)

    # the sum of the tail conv's output (finite exactly when the result is, the input being finite) rather than of
    # the result: the residual add then fuses with the clipping and rounding into one pass
    check = ops.reduce_sum(h, ops.constant(np.array([0, 1, 2, 3], np.int64)), False, name="sum")
    y = ops.add(ops.reshape(h, dims(n, c, s * s, hh, ww), False), ops.reshape(xf, dims(n, model.num_in_ch, 1, hh, ww),
                                                                                  False))
    if image_dtype is None:
        out = ops.depth_to_space(ops.reshape(y, dims(n, c * s * s, hh, ww), False), "depth_first", s)
    else:
        q = ops.clamp(y, 0.0, 1.0)
        if image_dtype in PEAKS:
            q = ops.floor(ops.add(ops.multiply(q, _const(np.array(PEAKS[image_dtype]))), _const(np.array(0.5))))
            q = ops.convert(q, ov.Type.u8 if image_dtype == np.uint8 else ov.Type.u16)
        q = ops.reshape(q, dims(1, c, s, s, hh, ww), False)
        out = ops.transpose(q, ops.constant(np.array([0, 4, 2, 5, 3, 1], np.int64)))
    return ov.Model([out, check], [x], "repsr")


class RuntimeNet(nn.Module):
    """A deploy network run by another runtime on the CPU: called like the PyTorch network (float NCHW in [0, 1]
    in and out), plus :meth:`run_image`, the fused image path. The PyTorch network is kept (in fp32, unused
    by the forward) for what is read off a model: its scale, channels and receptive field."""

    precision = "fp32"

    def __init__(self, model: CompactSRNet) -> None:
        super().__init__()
        self.net = copy.deepcopy(model).float().cpu().eval()
        self.upscale = model.upscale

    def run_image(self, tile: np.ndarray) -> tuple[np.ndarray, bool]:
        """The upscaled HWC ``tile`` (uint8, uint16 or float32; C = the model's channels) in its dtype, clipped and
        rounded like :func:`repsr.upscale`, and whether the float result passed the sum check for NaN/inf."""
        raise NotImplementedError


class OpenVINONet(RuntimeNet):
    """A deploy network compiled by OpenVINO for the CPU, in ``precision`` (fp32 or bf16)."""

    def __init__(self, model: CompactSRNet, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(model)
        import openvino as ov

        if precision not in OPENVINO_PRECISIONS:
            raise RepsrError(f"OpenVINO runs fp32 or bf16, not {precision}")
        self.precision = precision
        self._core = ov.Core()
        self._config = {"INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision], "PERFORMANCE_HINT": "LATENCY",
                        "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self._requests: dict[str, object] = {}

    def _request(self, image_dtype: np.dtype | None):
        key = "float" if image_dtype is None else np.dtype(image_dtype).name
        if key not in self._requests:
            graph = build_openvino_graph(self.net, image_dtype)
            self._requests[key] = self._core.compile_model(graph, "CPU", self._config).create_infer_request()
        return self._requests[key]

    def forward(self, x: Tensor) -> Tensor:
        request = self._request(None)
        request.infer({0: np.ascontiguousarray(x.detach().float().cpu().numpy())}, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    def run_image(self, tile: np.ndarray) -> tuple[np.ndarray, bool]:
        import openvino as ov

        h, w, c = tile.shape
        s = self.upscale
        request = self._request(tile.dtype)
        out = np.empty((1, h, s, w, s, c), dtype=tile.dtype)
        request.set_output_tensor(0, ov.Tensor(out, shared_memory=True))
        request.infer({0: np.ascontiguousarray(tile)[None]}, share_inputs=True)
        finite = bool(np.isfinite(request.get_output_tensor(1).data).all())
        return out.reshape(h * s, w * s, c), finite


class NcnnNet(RuntimeNet):
    """A deploy network run by ncnn on the CPU in fp32 (``pip install repsr[ncnn]``), with its Winograd convolutions:
    on wide networks they need fewer multiplications than PyTorch's direct (GEMM-rate) convolutions.

    ncnn computes network and residual in planar layout; clipping and rounding are PyTorch's (the same arithmetic
    as :func:`repsr.upscale`), and OpenCV interleaves the rounded planes.
    """

    def __init__(self, model: CompactSRNet, threads: int | None = None) -> None:
        super().__init__(model)
        import tempfile

        import ncnn

        from .ncnn import ncnn_param, ncnn_weights

        self._ncnn = ncnn.Net()
        self._ncnn.opt.num_threads = threads or torch.get_num_threads()
        with tempfile.TemporaryDirectory() as tmp:
            param, weights = Path(tmp) / "net.param", Path(tmp) / "net.bin"
            param.write_text(ncnn_param(self.net), encoding="ascii")
            weights.write_bytes(ncnn_weights(self.net))
            if self._ncnn.load_param(str(param)) != 0 or self._ncnn.load_model(str(weights)) != 0:
                raise RepsrError("ncnn could not load the network")

    def _planar(self, planes: list[np.ndarray]):
        """(C, H, W) float32 through the network: the output Mat (C, sH, sW) float32, which NumPy can view."""
        import ncnn

        from .ncnn import INPUT_BLOB, OUTPUT_BLOB

        h, w = planes[0].shape
        mat = ncnn.Mat(w, h, len(planes))  # ncnn's own row-aligned channels, filled plane by plane
        for q, plane in enumerate(planes):
            np.array(mat.channel(q), copy=False)[:] = plane
        extractor = self._ncnn.create_extractor()
        extractor.input(INPUT_BLOB, mat)
        ret, out = extractor.extract(OUTPUT_BLOB)
        if ret != 0:
            raise RepsrError(f"ncnn failed to run the network (code {ret})")
        return out

    def forward(self, x: Tensor) -> Tensor:
        x = x.detach().float().cpu().numpy()
        return torch.from_numpy(np.stack([np.array(self._planar(list(image)), dtype=np.float32) for image in x]))

    def run_image(self, tile: np.ndarray) -> tuple[np.ndarray, bool]:
        import cv2

        peak = PEAKS.get(tile.dtype)
        planes = [tile[:, :, q].astype(np.float32) / np.float32(peak or 1) for q in range(tile.shape[2])]
        mat = self._planar(planes)  # kept alive while its memory is used below (rounded in place, no copy)
        y = torch.from_numpy(np.array(mat, copy=False))
        finite = bool(torch.isfinite(y.sum()))
        y.clamp_(0, 1)
        if peak is not None:
            y = y.mul_(peak).add_(0.5).to(torch.uint8 if peak == 255 else torch.int32)
        out = [plane.numpy().astype(tile.dtype, copy=False) for plane in y]
        return (cv2.merge(out) if len(out) > 1 else out[0][:, :, None].copy()), finite  # own memory, not ncnn's
