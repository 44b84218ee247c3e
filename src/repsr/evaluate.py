"""Evaluation on SR test sets with the field's protocol (Y channel, border crop = scale, uint8 levels)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .data import SRDataset, default_cache_dir, open_dataset
from .degradation import parse_degradations
from .errors import RepsrError
from .images import to_rgb, write_image
from .inference import Upscaler
from .loading import load_model
from .metrics import psnr, ssim
from .resize import imresize


def _preset_data_root() -> str:
    """Where the training presets look for data sets ($REPSR_DATA_ROOT, else their data_root, relative to the
    current folder); ``repsr eval`` looks for set names there too."""
    from .config import DATA_ROOT_VARIABLE, read_config_dict

    if os.environ.get(DATA_ROOT_VARIABLE):
        return os.environ[DATA_ROOT_VARIABLE]
    try:
        return str(read_config_dict("demo").get("data_root", "."))
    except (RepsrError, OSError):
        return "."


DEFAULT_DATA_ROOT = _preset_data_root()


def resolve_dataset(spec: str, data_root: str | os.PathLike | None = None) -> Path:
    """A test set given as a folder, or by name under ``data_root`` (as ``repsr train`` resolves data paths)."""
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        return path
    if path.exists():
        raise RepsrError(f"{spec}: is a file, not a test set (--data takes folders of HR images, or set names "
                         "found under --data-root)")
    root = Path(os.path.expanduser(str(data_root if data_root is not None else DEFAULT_DATA_ROOT)))
    if not path.is_absolute():
        under = root / path
        if under.is_dir():
            return under
        if under.exists():
            raise RepsrError(f"{under}: is a file, not a test set folder")
        hint = ""
        if root.is_dir():
            from .zoo import closest_name

            sets = sorted(p.name for p in root.iterdir() if p.is_dir())
            close = closest_name(spec, sets)
            hint = f"; did you mean {close}?" if close else f" (sets there: {', '.join(sets) or 'none'})"
        raise RepsrError(f"{spec}: no such folder, here or under the data root {root}{hint}")
    raise RepsrError(f"{spec}: no such folder")


def super_resolve(model: Upscaler | str, lr: np.ndarray, scale: int) -> np.ndarray:
    """SR of one uint8 LR image with ``"bicubic"`` or an :class:`~repsr.inference.Upscaler`."""
    if isinstance(model, str):
        return imresize(lr, scale)
    return model(lr)


def evaluate_dataset(model: Upscaler | str, dataset: SRDataset, save_dir: Path | None = None,
                     progress: bool = True, round_y: bool = False) -> dict:
    """PSNR/SSIM (Y channel, crop = scale) of ``model`` (an Upscaler, or ``"bicubic"``) on every image of
    ``dataset``."""
    scale = dataset.scale
    per_image = []
    for i in tqdm(range(len(dataset)), desc=dataset.label, disable=not progress, file=sys.stderr, leave=False):
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
        "degradation": dataset.degradation.name if dataset.degradation else None,
        "degradation_seed": dataset.degradation.seed if dataset.degradation else None,
        "scale": scale,
        "psnr": float(np.mean([r["psnr"] for r in per_image])),
        "ssim": float(np.mean([r["ssim"] for r in per_image])),
        "images": len(per_image),
        "per_image": per_image,
    }


def load_eval_model(spec: str, scale: int | None, device: str | torch.device = "auto") -> tuple[Upscaler | str, int]:
    """An Upscaler of the model on ``device``, or ``"bicubic"``; and the scale: ``scale`` or the model's own."""
    if spec == "bicubic":
        if scale is None:
            raise RepsrError("--model bicubic needs --scale (a model file knows its own scale)")
        return spec, scale
    model = load_model(spec)
    if scale is not None and model.upscale != scale:
        raise RepsrError(f"{spec}: model is x{model.upscale}, but --scale is {scale}")
    return Upscaler(model, device), int(model.upscale)


def run_eval(model: str, data: list[str], scale: int | None = None, data_root: str | None = None,
             degradations: list[str] | None = None, degradation_seed: int = 0, device: str = "auto",
             cache_dir: str | None = None, save_images: str | None = None, round_y: bool = False,
             as_json: bool = False) -> list[dict]:
    """``repsr eval``: every test set (and named degradation of it) scored and printed as a table or JSON lines.
    ``cache_dir``: where LR images are cached (None: the default; "none": nowhere)."""
    if scale is not None and scale < 1:
        raise RepsrError(f"--scale must be >= 1, got {scale}")
    cache = None if cache_dir == "none" else Path(cache_dir) if cache_dir else default_cache_dir()
    folders = [resolve_dataset(d, data_root) for d in data]  # every set checked before any work
    parsed = parse_degradations(degradations, degradation_seed)
    net, scale = load_eval_model(model, scale, device)
    datasets = [open_dataset(f, scale, cache, degradation) for f in folders for degradation in parsed]
    if not as_json:
        print(f"{'dataset':<16} {'LR':<28} {'scale':>5} {'images':>6} {'PSNR':>8} {'SSIM':>8}")
    results = []
    for ds in datasets:
        folder = None
        if save_images:
            folder = Path(save_images) / ds.label.replace(" ", "_")
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise RepsrError(f"{folder}: cannot create folder ({e.strerror or e})") from None
        result = evaluate_dataset(net, ds, folder, progress=sys.stderr.isatty(), round_y=round_y)
        results.append(result)
        if as_json:
            print(json.dumps(result), flush=True)
        else:
            lr = ds.degradation.label if ds.degradation else "bicubic"
            print(f"{ds.name:<16} {lr:<28} {'x' + str(scale):>5} {result['images']:>6} "
                  f"{result['psnr']:>8.2f} {result['ssim']:>8.4f}", flush=True)
    return results
