"""Named, seeded degradations of test images: so that "B100, JPEG q40" means the same LR images for every model.

A name is steps joined by ``+``, applied in order to the MATLAB-bicubic LR of the HR image:

- ``jpegQ``: a JPEG file at quality Q (libjpeg, 4:2:0), e.g. ``jpeg40``;
- ``noiseS``: Gaussian colour noise of standard deviation S (of 255), e.g. ``noise10``;
- ``blurS``: isotropic Gaussian blur of standard deviation S LR pixels (kernel 2 ceil(3 S) + 1, at most 21);

or ``real``: the whole second-order training pipeline (:mod:`.second_order`, published defaults), run on the
HR image in place of the bicubic downscale. Random draws come from (seed, image name), so a set's degraded LR
does not depend on which other images are in it.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import RepsrError
from . import kernels as K
from . import ops
from .second_order import DegradationConfig, degrade_batch, draw_params

# The degraded test sets the bundled real-world models are compared on (MODEL_ZOO.md, docs/real_world.md).
STANDARD = ("jpeg40", "noise10+jpeg60", "blur1+jpeg60", "real")
_STEP = re.compile(r"(jpeg|noise|blur)(\d+(?:\.\d+)?)")
_VERSION = "d1"  # part of cached file names: bump when a step's definition changes


@dataclass(frozen=True)
class EvalDegradation:
    """A named degradation (see the module) with the seed of its random draws."""

    name: str
    seed: int = 0

    def __post_init__(self) -> None:
        self.steps()  # a bad name fails here, before any work

    def steps(self) -> list[tuple[str, float]]:
        if self.name == "real":
            return [("real", 0.0)]
        steps = []
        for part in self.name.split("+"):
            m = _STEP.fullmatch(part.strip().lower())
            if not m:
                raise RepsrError(f"degradation {self.name!r}: cannot read {part!r}; use steps like jpeg40, noise10, "
                                 "blur1.5 joined by '+' (e.g. noise10+jpeg60), or real")
            kind, value = m.group(1), float(m.group(2))
            if kind == "jpeg" and not (value.is_integer() and 1 <= value <= 100):
                raise RepsrError(f"degradation {self.name!r}: JPEG quality must be an integer 1-100")
            if kind == "blur" and not 0 < value <= 3.3:
                raise RepsrError(f"degradation {self.name!r}: blur sigma must be in (0, 3.3] (kernels up to 21x21)")
            steps.append((kind, value))
        return steps

    @property
    def label(self) -> str:
        """How tables name it: ``JPEG q40``, ``noise 10 + JPEG q60``, ``real-world pipeline (seed 0)``."""
        words = {"jpeg": lambda v: f"JPEG q{v:g}", "noise": lambda v: f"noise {v:g}", "blur": lambda v: f"blur {v:g}",
                 "real": lambda v: "real-world pipeline"}
        text = " + ".join(words[k](v) for k, v in self.steps())
        return text + (f" (seed {self.seed})" if self.random else "")

    @property
    def random(self) -> bool:
        return any(k in ("noise", "real") for k, _ in self.steps())

    @property
    def cache_tag(self) -> str:
        """A file-name-safe key of name, seed and definition version."""
        safe = self.name.replace("+", "_").replace(".", "p")
        return f"{safe}_s{self.seed}_{_VERSION}" if self.random else f"{safe}_{_VERSION}"

    def _rng(self, image_name: str) -> np.random.Generator:
        digest = int.from_bytes(hashlib.sha256(image_name.encode()).digest()[:8], "little")
        return np.random.default_rng([self.seed, digest])

    def apply(self, hr: np.ndarray, scale: int, image_name: str, bicubic_lr: np.ndarray | None = None) -> np.ndarray:
        """The degraded uint8 LR of a uint8 HR image (HxW or HxWx3, sizes multiples of ``scale``).
        ``bicubic_lr``: its MATLAB-bicubic LR if already made (the steps start from it)."""
        if hr.dtype != np.uint8:
            raise RepsrError(f"{image_name}: degraded evaluation needs 8-bit images")
        rng = self._rng(image_name)
        steps = self.steps()
        if steps[0][0] == "real":
            x = ops.from_uint8(hr, torch.empty(0))[None]
            params = draw_params(rng, DegradationConfig())
            return ops.to_uint8(degrade_batch(x, [params], scale)[0])
        if bicubic_lr is None:
            from ..data import bicubic_downscale

            bicubic_lr = bicubic_downscale(hr, scale)
        x = ops.from_uint8(bicubic_lr, torch.empty(0))[None]
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        for kind, value in steps:
            if kind == "jpeg":
                x = ops.jpeg(x, [int(value)])
            elif kind == "noise":
                x = ops.gaussian_noise(x, value / 255, gray=False, generator=generator).clamp(0, 1)
            else:
                size = min(K.MAX_KERNEL_SIZE, 2 * math.ceil(3 * value) + 1)
                kernel = torch.from_numpy(K.gaussian_kernel(size, value))[None].float()
                x = ops.filter2d(x, kernel)
        return ops.to_uint8(x[0])


def parse_degradations(names: list[str] | None, seed: int = 0) -> list[EvalDegradation | None]:
    """``--degradation`` values: ``clean`` (or ``none``) is the plain bicubic LR (None); ``standard`` expands to
    the four degraded test sets of :data:`STANDARD`."""
    out: list[EvalDegradation | None] = []
    for name in names or ["clean"]:
        if name.lower() in ("clean", "none", "bicubic"):
            out.append(None)
        elif name.lower() == "standard":
            out.extend(EvalDegradation(n, seed) for n in STANDARD)
        else:
            out.append(EvalDegradation(name.lower(), seed))
    return out
