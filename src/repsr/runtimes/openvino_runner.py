"""OpenVINO on the CPU: fp32, and bf16 where the CPU has bf16 instructions (``pip install repsr[openvino]``).

The image path is compiled into the graph itself: an HWC tile of the image's dtype in, the upscaled tile out,
clipped and rounded in the graph with the same arithmetic as :func:`.base.clip_round_` (floor of x * peak + 0.5
after clipping), so no extra pass over the output is needed.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ..archs.networks import CompactSRNet
from ..errors import RepsrError
from ..images import PEAKS
from .base import Runner, nan_error

OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


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


class OpenVINORunner(Runner):
    """A deploy network compiled by OpenVINO for the CPU, in ``precision`` (fp32 or bf16)."""

    backend = "openvino"

    def __init__(self, network: CompactSRNet, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__(network, torch.device("cpu"), precision)
        import openvino as ov

        if precision not in OPENVINO_PRECISIONS:
            raise RepsrError(f"OpenVINO runs fp32 or bf16, not {precision}")
        self.net = copy.deepcopy(network).float().cpu().eval()  # read when a graph is built (one per input dtype)
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

    def floats(self, x: Tensor) -> Tensor:
        request = self._request(None)
        request.infer({0: np.ascontiguousarray(x.detach().float().cpu().numpy())}, share_inputs=True)
        y = torch.from_numpy(request.get_output_tensor(0).data.copy())
        if not torch.isfinite(y).all():
            raise nan_error(self.precision)
        return y

    def images(self, tiles: np.ndarray) -> np.ndarray:
        import openvino as ov

        n, h, w, c = tiles.shape
        s = self.scale
        request = self._request(tiles.dtype)
        out = np.empty((n, h * s, w * s, c), dtype=tiles.dtype)
        for i in range(n):
            view = out[i].reshape(1, h, s, w, s, c)
            request.set_output_tensor(0, ov.Tensor(view, shared_memory=True))
            request.infer({0: np.ascontiguousarray(tiles[i])[None]}, share_inputs=True)
            if not np.isfinite(request.get_output_tensor(1).data).all():  # the sum check failed: look at the values
                self.floats(torch.from_numpy(tiles[i].astype(np.float32) / PEAKS.get(tiles.dtype, 1.0))
                            .permute(2, 0, 1)[None])
        return out
