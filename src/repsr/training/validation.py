"""Validation during training and the run's end: the deploy file and results.json.

The EMA model is validated and merged with statistics re-estimated for its own weights (on a copy) while
training is still in the batch phase; the raw model keeps its running statistics.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..bn import get_bn_phase, recompute_population_stats
from ..data import SRDataset
from ..evaluate import evaluate_dataset, super_resolve
from ..export import save_deploy
from ..fileio import atomic_write
from ..inference import Upscaler
from ..reparam import reparameterize_model
from .run_state import RunLog


def eval_model(model: nn.Module, which: str, stats_batches: Callable[[], Iterator[Tensor]]) -> nn.Module:
    """``model`` as validated and merged: a ``"raw"`` model as it is; an ``"ema"`` model in the batch phase
    as a copy with population statistics measured on ``stats_batches()`` for its own weights."""
    if which == "raw" or get_bn_phase(model) != "batch":
        return model
    model = copy.deepcopy(model)
    recompute_population_stats(model, stats_batches())
    return model


@torch.no_grad()
def validate(models: dict[str, nn.Module], val_sets: list[SRDataset], log: RunLog, iteration: int,
             bn_phase: str | None, best: dict[str, float], save_images: int) -> dict[str, Any]:
    """PSNR/SSIM of each model on each set (logged, kept in ``best``), and sample images to TensorBoard."""
    entry: dict[str, Any] = {"iteration": iteration, "bn_phase": bn_phase}
    upscalers = {which: Upscaler(model, next(model.parameters()).device) for which, model in models.items()}
    for which, upscaler in upscalers.items():
        for ds in val_sets:
            r = evaluate_dataset(upscaler, ds, progress=False)
            entry[f"{which}/{ds.label}"] = {"psnr": r["psnr"], "ssim": r["ssim"]}
            log.scalar(f"val_{which}/{ds.label}/psnr", r["psnr"], iteration)
            log.scalar(f"val_{which}/{ds.label}/ssim", r["ssim"], iteration)
            best[f"{which}/{ds.label}"] = max(best.get(f"{which}/{ds.label}", -1.0), r["psnr"])
    if log.writer is not None and val_sets:
        ds = val_sets[0]
        upscaler = upscalers["ema" if "ema" in upscalers else "raw"]
        for i in range(min(save_images, len(ds))):
            sr = super_resolve(upscaler, ds[i].lr, ds.scale)
            log.writer.add_image(f"val/{ds[i].name}", sr, iteration, dataformats="HW" if sr.ndim == 2 else "HWC")
    summary = ", ".join(f"{k} {v['psnr']:.2f}/{v['ssim']:.4f}" for k, v in entry.items() if isinstance(v, dict))
    log.log(f"validation at {iteration} ({entry['bn_phase'] or 'no'} BN): {summary}")
    return entry


def export_and_score(model: nn.Module, which: str, out: Path, val_sets: list[SRDataset], device: torch.device,
                     log: RunLog, header: dict[str, Any]) -> dict[str, Any]:
    """Merge ``model`` into the deploy file, score it against bicubic and write results.json."""
    deploy = reparameterize_model(model).cpu()
    deploy_path = save_deploy(deploy, out / "model_deploy.safetensors",
                              param_key="params_ema" if which == "ema" else "params")
    results = {**header, "model": which, "deploy": deploy_path.name, "datasets": {}}
    upscaler = Upscaler(deploy, device)
    for ds in val_sets:
        ours = evaluate_dataset(upscaler, ds, progress=False)
        bicubic = evaluate_dataset("bicubic", ds, progress=False)
        results["datasets"][ds.label] = {"psnr": ours["psnr"], "ssim": ours["ssim"], "images": ours["images"],
                                         "bicubic_psnr": bicubic["psnr"], "bicubic_ssim": bicubic["ssim"],
                                         **({"degradation": ds.degradation.name, "degradation_seed":
                                             ds.degradation.seed} if ds.degradation else {})}
        log.log(f"deploy model on {ds.label}: {ours['psnr']:.2f} dB / {ours['ssim']:.4f} "
                f"(bicubic {bicubic['psnr']:.2f} / {bicubic['ssim']:.4f})")
    with atomic_write(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    log.log(f"wrote {deploy_path} and {out / 'results.json'}")
    return results
