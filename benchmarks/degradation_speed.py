"""The real-world degradation's cost on the CPU: JPEG through OpenCV against Pillow (both libjpeg-turbo, the same
bytes), per-sample blurs as a direct depthwise convolution against the FFT, and a whole degraded batch against
the training step it feeds. Each comparison's variants are timed in turns (median), one torch thread, as the
bundled models train.

    python benchmarks/degradation_speed.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch
import torch.nn.functional as F
from _results import record, seconds_in_turns
from PIL import Image

from repsr.archs.networks import RepSRNet
from repsr.degradation import DegradationConfig, SecondOrderDegradation
from repsr.degradation.kernels import gaussian_kernel
from repsr.degradation.ops import filter2d, jpeg_roundtrip_uint8


def pillow_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def direct(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel.shape[-1]
    padded = F.pad(image, (k // 2,) * 4, mode="reflect").reshape(1, 3, *(s + k - 1 for s in image.shape[-2:]))
    return F.conv2d(padded, kernel.flip(-1, -2)[:, None].expand(3, 1, k, k), groups=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="one round; printed, not recorded")
    args = parser.parse_args()
    rounds = 1 if args.smoke else args.rounds
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows, data = [], {}

    # JPEG: 16 patches, as a training batch's second round does (LR 32) and its first round (HR 128 at x4)
    for size in (32, 128):
        images = [np.clip(rng.normal(128, 40, (size, size, 3)), 0, 255).astype(np.uint8) for _ in range(16)]
        t = seconds_in_turns({"opencv": lambda imgs=images: [jpeg_roundtrip_uint8(i, 60) for i in imgs],
                              "pillow": lambda imgs=images: [pillow_roundtrip(i, 60) for i in imgs]}, rounds)
        same = all(np.array_equal(jpeg_roundtrip_uint8(i, 60), pillow_roundtrip(i, 60)) for i in images[:4])
        rows.append(f"| JPEG q60 round trip, 16 x {size}x{size} RGB | OpenCV {t['opencv'] * 1e3:.2f} ms | Pillow "
                    f"{t['pillow'] * 1e3:.2f} ms | **{t['pillow'] / t['opencv']:.2f}x** (identical bytes: {same}) |")
        data[f"jpeg_{size}"] = {**t, "identical": same}

    # one image's blur with a 15x15 kernel, as the second round blurs each sample at its own size
    kernel = torch.from_numpy(gaussian_kernel(15, 2.0, 1.0, 0.5))[None].float()
    for size in (40, 128):
        image = torch.rand(1, 3, size, size)
        t = seconds_in_turns({"direct": lambda im=image: direct(im, kernel),
                              "fft": lambda im=image: filter2d(im, kernel)}, rounds)
        rows.append(f"| blur 15x15, one {size}x{size} RGB image | direct {t['direct'] * 1e3:.2f} ms | FFT "
                    f"{t['fft'] * 1e3:.2f} ms | **{t['direct'] / t['fft']:.2f}x** |")
        data[f"blur_{size}"] = t

    # a degraded batch (x4, LR patch 32, batch 16) against the training step of the bundled recipe
    hr = torch.rand(16, 3, 128, 128)
    degradation = SecondOrderDegradation(DegradationConfig(), 4, 0)
    model = RepSRNet(upscale=4, num_feat=16, num_block=4, block="repsr_nobn")
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    lr = torch.rand(16, 3, 32, 32)
    counter = iter(range(10**9))

    def step() -> None:
        loss = F.l1_loss(model(lr), hr)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    t = seconds_in_turns({"degrade": lambda: degradation(hr, [(next(counter), i) for i in range(16)]),
                          "step": step}, rounds, warmup_rounds=1)
    rows.append(f"| degrade one batch (published settings, x4, 16 x LR 32) vs one M4C16 training step | degrade "
                f"{t['degrade'] * 1e3:.1f} ms | step {t['step'] * 1e3:.1f} ms | degradation / step "
                f"**{t['degrade'] / t['step']:.2f}** |")
    data["batch"] = t
    table = ("One torch thread; variants of a row in turns, median. The degradation uses OpenCV for JPEG and the FFT "
             "for single-image blurs of 9 taps and more (repsr.degradation.ops).\n\n"
             "| what | A | B | B / A (or the ratio named) |\n|---|---|---|---|\n" + "\n".join(rows))
    record("degradation_speed", table, data, smoke=args.smoke)


if __name__ == "__main__":
    main()
