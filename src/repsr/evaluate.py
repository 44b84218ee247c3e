"""Evaluation on SR test sets with the field's protocol (Y channel, border crop = scale, uint8 levels)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import SRDataset, default_cache_dir, open_dataset
from .errors import RepsrError
from .images import to_rgb, write_image
from .inference import pick_device, prepare, upscale
from .metrics import psnr, ssim
from .resize import imresize


def super_resolve(model: nn.Module | str, lr: np.ndarray, scale: int) -> np.ndarray:
    """SR of one uint8 LR image with ``"bicubic"`` or a network (already on its device, in eval mode)."""
    if isinstance(model, str):
        return imresize(lr, scale)
    return upscale(lr, model, prepared=True)


def evaluate_dataset(model: nn.Module | str, dataset: SRDataset, save_dir: Path | None = None,
                     progress: bool = True, round_y: bool = False) -> dict:
    """PSNR/SSIM (Y channel, crop = scale) of ``model`` on every image of ``dataset``."""
    scale = dataset.scale
    per_image = []
    for i in tqdm(range(len(dataset)), desc=dataset.name, disable=not progress, file=sys.stderr, leave=False):
        pair = dataset[i]
        if pair.lr.dtype != np.uint8:
            raise RepsrError(f"{dataset.hr_files[i]}: evaluation needs 8-bit images")
        lr, hr = pair.lr, pair.hr
        if hr.ndim == 3:
            lr, hr = to_rgb(lr), to_rgb(hr)
        sr = super_resolve(model, lr, scale)
        if save_dir is not None:
            write_image(save_dir / f"{pair.name}.png", sr)
        try:
            per_image.append({"name": pair.name, "psnr": psnr(sr, hr, scale, round_y=round_y),
                              "ssim": ssim(sr, hr, scale, round_y=round_y)})
        except ValueError as e:
            raise RepsrError(f"{dataset.hr_files[i]}: {e}") from None
    return {
        "dataset": dataset.name,
        "scale": scale,
        "psnr": float(np.mean([r["psnr"] for r in per_image])),
        "ssim": float(np.mean([r["ssim"] for r in per_image])),
        "images": len(per_image),
        "per_image": per_image,
    }


def load_eval_model(spec: str, scale: int, device: torch.device) -> nn.Module | str:
    if spec == "bicubic":
        return spec
    from .export import load_model

    model = load_model(spec)
    if model.upscale != scale:
        raise RepsrError(f"{spec}: model is x{model.upscale}, but --scale is {scale}")
    return prepare(model, device)


def run_eval_cli(args: argparse.Namespace) -> int:
    if args.scale < 1:
        raise RepsrError(f"--scale must be >= 1, got {args.scale}")
    device = pick_device(args.device)
    cache = None if args.cache_dir == "none" else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    datasets = [open_dataset(d, args.scale, cache) for d in args.data]  # check every folder before any work
    model = load_eval_model(args.model, args.scale, device)
    if not args.json:
        print(f"{'dataset':<16} {'scale':>5} {'images':>6} {'PSNR':>8} {'SSIM':>8}")
    for ds in datasets:
        save_dir = None
        if args.save_images:
            save_dir = Path(args.save_images) / ds.name
            try:
                save_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RepsrError(f"{save_dir}: cannot create folder ({e.strerror or e})") from None
        result = evaluate_dataset(model, ds, save_dir, progress=sys.stderr.isatty(), round_y=args.round_y)
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"{ds.name:<16} {'x' + str(args.scale):>5} {result['images']:>6} "
                  f"{result['psnr']:>8.2f} {result['ssim']:>8.4f}", flush=True)
    return 0
