"""The BN-artifact study: a BN model trained without the switch under (i) population statistics, (ii) per-image
batch statistics, against (iii) the model trained with the switch; PSNR and a labelled figure."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..archs.networks import RepSRNet
from ..checkpoint import model_from_checkpoint, read_checkpoint
from ..data import SRDataset
from ..errors import RepsrError
from ..images import to_rgb, to_tensor, write_image
from ..inference import GRAY_WEIGHTS
from ..metrics import psnr
from ..plots import label_tile
from ..reparam import reparameterize_model


def run_scale(run: Path) -> int:
    """The scale of a training run folder (its config.yml)."""
    import yaml

    config = run / "config.yml"
    if not config.is_file():
        raise RepsrError(f"{run}: not a training run folder (no config.yml)")
    return int(yaml.safe_load(config.read_text())["scale"])


def _run_name(run: Path) -> str:
    """``variant/seed_N`` for a study's run folder, else the folder's name."""
    return f"{run.parent.name}/{run.name}" if run.name.startswith("seed_") else run.name


def _latest_model(run: Path) -> RepSRNet:
    checkpoints = sorted((run / "checkpoints").glob("iter_*.pth"))
    if not checkpoints:
        raise RepsrError(f"{run}: no checkpoints")
    return model_from_checkpoint(read_checkpoint(checkpoints[-1]), use_ema=False, source=str(run))


@torch.no_grad()
def _sr(model: nn.Module, lr: np.ndarray, batch_stats: bool) -> np.ndarray:
    x = to_tensor(to_rgb(lr))[None]
    if batch_stats:  # normalise with this image's own statistics, as training did (on a copy: buffers change)
        model = copy.deepcopy(model).train()
    out = model(x)[0].clamp(0, 1).mul(255).round().byte().numpy().transpose(1, 2, 0)
    return out


def _as_scored(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """``sr`` as ``repsr eval`` scores it: a gray test image's RGB output back to gray (PSNR on the gray values,
    as the literature's Set14 numbers do; RGB-to-Y of a replicated gray would compress its range)."""
    if hr.ndim == 3:
        return sr
    return np.clip(np.round(sr.astype(np.float64) @ GRAY_WEIGHTS), 0, 255).astype(np.uint8)


def _diff_map(a: np.ndarray, b: np.ndarray, gain: float = 4.0) -> np.ndarray:
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2) * gain
    return cv2.applyColorMap(np.clip(diff, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[:, :, ::-1]


def bn_study(noswitch_run: Path, switched_run: Path, datasets: list[SRDataset], out: Path) -> str:
    """PSNR of the three BN settings on full test images, and a figure where (i) and (iii) differ most."""
    noswitch = _latest_model(noswitch_run).eval()
    switched = reparameterize_model(_latest_model(switched_run))
    out.mkdir(parents=True, exist_ok=True)
    rows, worst = [], None
    for ds in datasets:
        scores = {"population": [], "batch": [], "switched": []}
        for i in range(len(ds)):
            pair = ds[i]
            hr = to_rgb(pair.hr)
            outs = {"population": _sr(noswitch, pair.lr, False), "batch": _sr(noswitch, pair.lr, True),
                    "switched": _sr(switched, pair.lr, False)}
            for k, img in outs.items():
                scores[k].append(psnr(_as_scored(img, pair.hr), pair.hr, ds.scale))
            gap = scores["switched"][-1] - scores["population"][-1]
            if worst is None or gap > worst[0]:
                worst = (gap, ds.name, pair.name, hr, outs)
        rows.append(f"| {ds.name} | " + " | ".join(f"{np.mean(v):.2f}" for v in scores.values()) + " |")
    gap, set_name, image_name, hr, outs = worst
    # the crop where population-statistics output deviates most from HR
    err = np.abs(outs["population"].astype(np.float32) - hr).mean(axis=2)
    size = min(96, hr.shape[0], hr.shape[1])
    integral = cv2.integral(err)
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(np.argmax(sums), sums.shape)
    tiles = [hr[y : y + size, x : x + size]] + [outs[k][y : y + size, x : x + size] for k in outs]
    tiles += [_diff_map(outs["population"], hr)[y : y + size, x : x + size],
              _diff_map(outs["switched"], hr)[y : y + size, x : x + size]]
    labels = ["HR", "(i) population stats", "(ii) per-image batch stats", "(iii) switched", "|(i) - HR| x4",
              "|(iii) - HR| x4"]
    big = [label_tile(cv2.resize(t, (size * 3, size * 3), interpolation=cv2.INTER_NEAREST), label)
           for t, label in zip(tiles, labels, strict=True)]
    figure = np.concatenate(big, axis=1)
    write_image(out / "bn_artifacts.png", figure)
    for k, img in outs.items():
        write_image(out / f"{image_name}_{k}.png", img)
    write_image(out / f"{image_name}_diff_population.png", _diff_map(outs["population"], hr))
    write_image(out / f"{image_name}_diff_switched.png", _diff_map(outs["switched"], hr))
    return "\n".join([
        f"Model `{_run_name(noswitch_run)}` (BN, never switched) evaluated with (i) population statistics, "
        f"(ii) each image's own batch statistics, and (iii) model `{_run_name(switched_run)}` (switched). PSNR (dB), "
        "Y channel, crop = scale, whole test images, the runs' raw (not EMA) weights; (i) uses BN's running "
        "statistics:", "",
        "| set | (i) population stats | (ii) per-image batch stats | (iii) switched |", "|---|---|---|---|", *rows, "",
        f"Largest gain of (iii) over (i): {gap:+.2f} dB on {set_name}/{image_name}. "
        "`bn_study/bn_artifacts.png`, left to right (labelled): HR, (i), (ii), (iii), |(i) - HR| x4, |(iii) - HR| x4 "
        f"(the {size}x{size} crop where (i) errs most, enlarged 3x).",
        "", "![BN artifacts](bn_study/bn_artifacts.png)"])
