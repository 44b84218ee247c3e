"""ncnn on the CPU in fp32 (``pip install repsr[ncnn]``): its Winograd convolutions need fewer multiplications than
PyTorch's direct (GEMM-rate) ones, which wins on wide networks.

ncnn computes network and residual in planar layout; the clip and round are :func:`.base.clip_round_`, and
OpenCV interleaves the rounded planes.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from ..archs.networks import CompactSRNet
from ..errors import RepsrError
from ..images import PEAKS
from .base import Runner, clip_round_, image_dtype_of, nan_error


class NcnnRunner(Runner):
    """A deploy network loaded into ncnn, fp32 on the CPU."""

    backend = "ncnn"

    def __init__(self, network: CompactSRNet, threads: int | None = None) -> None:
        super().__init__(network, torch.device("cpu"), "fp32")
        import ncnn

        from ..ncnn import ncnn_param, ncnn_weights

        self._ncnn = ncnn.Net()
        self._ncnn.opt.num_threads = threads or torch.get_num_threads()
        net = copy.deepcopy(network).float().cpu().eval()
        with tempfile.TemporaryDirectory() as tmp:
            param, weights = Path(tmp) / "net.param", Path(tmp) / "net.bin"
            param.write_text(ncnn_param(net), encoding="ascii")
            weights.write_bytes(ncnn_weights(net))
            if self._ncnn.load_param(str(param)) != 0 or self._ncnn.load_model(str(weights)) != 0:
                raise RepsrError("ncnn could not load the network")

    def _planar(self, planes: list[np.ndarray]):
        """(C, H, W) float32 through the network: the output Mat (C, sH, sW) float32, which NumPy can view."""
        import ncnn

        from ..ncnn import INPUT_BLOB, OUTPUT_BLOB

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

    def floats(self, x: Tensor) -> Tensor:
        x = x.detach().float().cpu().numpy()
        y = torch.from_numpy(np.stack([np.array(self._planar(list(image)), dtype=np.float32) for image in x]))
        if not torch.isfinite(y).all():
            raise nan_error(self.precision)
        return y

    def images(self, tiles: np.ndarray) -> np.ndarray:
        return np.stack([self._image(tile) for tile in tiles])

    def _image(self, tile: np.ndarray) -> np.ndarray:
        peak = PEAKS.get(tile.dtype)
        planes = [tile[:, :, q].astype(np.float32) / np.float32(peak or 1) for q in range(tile.shape[2])]
        mat = self._planar(planes)  # kept alive while its memory is used below (rounded in place, no copy)
        y = torch.from_numpy(np.array(mat, copy=False))
        if not torch.isfinite(y.sum()) and not torch.isfinite(y).all():
            raise nan_error(self.precision)
        y = clip_round_(y, peak).to(image_dtype_of(peak))
        out = [plane.numpy().astype(tile.dtype, copy=False) for plane in y]
        return cv2.merge(out) if len(out) > 1 else out[0][:, :, None].copy()  # own memory, not ncnn's
