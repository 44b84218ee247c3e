"""Speed of MATLAB-bicubic resize and BasicSR-spec PSNR/SSIM, against independent implementations
measured in the same run (resize-right with symmetric padding; scikit-image SSIM)."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from _results import record
from resize_right import interp_methods, resize
from skimage.metrics import structural_similarity

from repsr.metrics import psnr, ssim
from repsr.resize import imresize
from repsr.speed import torch_threads


def seconds(fn, repeat: int = 5) -> float:
    fn()  # warm-up (weights are cached after the first call)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((1356, 2040, 3))  # a DIV2K-sized image
    u8 = (img * 255).astype(np.uint8)
    t_chw = torch.from_numpy(img.transpose(2, 0, 1)).float()
    rows = []
    data = {}
    base = seconds(lambda: resize(img, scale_factors=[0.25, 0.25, 1], interp_method=interp_methods.cubic,
                                  pad_mode="symmetric", antialiasing=True), repeat=3)
    cases = (("NumPy float64", lambda: imresize(img, 0.25)), ("NumPy uint8 (rounded)", lambda: imresize(u8, 0.25)),
             ("torch float32 CHW", lambda: imresize(t_chw, 0.25)))
    for label, fn in cases:
        t = seconds(fn)
        data[f"resize_{label}"] = t
        rows.append(f"| imresize x1/4, 2040x1356, {label} | {t * 1e3:.0f} | {base * 1e3:.0f} | {base / t:.1f}x |")
    data["resize_baseline_resize_right"] = base
    # one-thread figure for the "well under a second on one core"
    with torch_threads(1):
        t1 = seconds(lambda: imresize(t_chw, 0.25))
    rows.append(f"| imresize x1/4, 2040x1356, torch float32, 1 thread | {t1 * 1e3:.0f} | | |")
    data["resize_torch_1thread"] = t1

    hr = u8[:320, :480]
    sr = np.clip(hr.astype(int) + rng.integers(-8, 9, hr.shape), 0, 255).astype(np.uint8)
    y = lambda a: 16 + a[..., :3].astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255  # noqa: E731
    t_psnr = seconds(lambda: psnr(sr, hr, 4), repeat=20)
    t_ssim = seconds(lambda: ssim(sr, hr, 4), repeat=20)
    t_sk = seconds(lambda: structural_similarity(y(sr[4:-4, 4:-4]), y(hr[4:-4, 4:-4]), data_range=255,
                                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
                   repeat=20)
    rows.append(f"| PSNR (Y, crop 4), 480x320 | {t_psnr * 1e3:.1f} | | |")
    rows.append(f"| SSIM (Y, crop 4), 480x320 | {t_ssim * 1e3:.1f} | {t_sk * 1e3:.1f} (scikit-image) | "
                f"{t_sk / t_ssim:.1f}x |")
    data.update(psnr_s=t_psnr, ssim_s=t_ssim, ssim_skimage_s=t_sk)
    table = ("| operation | repsr ms | baseline ms (resize-right, symmetric) | ratio |\n|---|---|---|---|\n"
             + "\n".join(rows))
    record("resize_metrics", table, data)


if __name__ == "__main__":
    main()
