"""``repsr ablate`` and ``repsr bn-study``: measure the paper's claims on your own budget.

An ablation spec names a base config and the variants to compare; every variant is trained by the
ordinary trainer with the same data, seed, iterations and schedule, merged, and evaluated on the
test sets. Finished variants are not retrained, unfinished ones resume from their checkpoints.

The BN study compares, for a BN model trained without the switch, (i) population statistics (what
deployment uses), (ii) per-image batch statistics (what training saw), and (iii) the model trained
with the switch, and saves crops and difference maps where they differ most.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch import nn

from .blocks import branch_forward
from .checkpoint import model_from_checkpoint, read_checkpoint
from .config import Config, _from_dict, load_config, read_config_dict, set_dotted
from .data import SRDataset, default_cache_dir, open_dataset
from .errors import RepsrError
from .evaluate import evaluate_dataset
from .export import load_deploy
from .fileio import atomic_write
from .images import to_rgb, write_image
from .inference import prepare
from .metrics import psnr
from .networks import RepSRNet
from .reparam import reparameterize_model
from .speed import conv_flops
from .train import Trainer


@dataclass
class Variant:
    name: str
    opt: dict[str, Any] = field(default_factory=dict)
    label: str = ""


@dataclass
class BNStudySpec:
    noswitch: str = ""  # variant trained with BN but never switched
    switched: str = ""  # the same with the switch (the method)
    images: list[str] = field(default_factory=lambda: ["Set14"])  # test sets for figures


@dataclass
class AblationSpec:
    base: str = "demo"  # preset or config file every variant starts from
    opt: dict[str, Any] = field(default_factory=dict)  # overrides for all variants
    variants: list[Variant] = field(default_factory=list)
    test_sets: list[str] = field(default_factory=lambda: ["Set5", "Set14", "B100"])
    bn_study: BNStudySpec | None = None


def read_spec(path: str | Path) -> AblationSpec:
    path = Path(path)
    if not path.is_file():
        raise RepsrError(f"{path}: no such ablation spec")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RepsrError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    spec = _from_dict(AblationSpec, data)
    if not spec.variants:
        raise RepsrError(f"{path}: no variants")
    names = [v.name for v in spec.variants]
    if len(set(names)) != len(names):
        raise RepsrError(f"{path}: variant names repeat")
    return spec


def variant_config(spec: AblationSpec, variant: Variant, base_dir: Path) -> Config:
    base = str(base_dir / spec.base) if (base_dir / spec.base).is_file() else spec.base
    data = read_config_dict(base)
    for key, value in {**spec.opt, **variant.opt, "name": variant.name}.items():
        set_dotted(data, key, value)
    return load_config(data)


def _per_pixel_flops(model: nn.Module, channels: int) -> float:
    """Conv FLOPs per LR pixel of the network as trained (every branch, not the online-merged conv)."""
    with branch_forward(model):
        return conv_flops(model, torch.rand(1, channels, 32, 32)) / (32 * 32)


def run_variant(spec: AblationSpec, variant: Variant, out: Path, base_dir: Path) -> dict[str, Any]:
    results_path = out / "variant.json"
    if results_path.is_file():
        return json.loads(results_path.read_text())
    config = variant_config(spec, variant, base_dir)
    trainer = Trainer(config, out, resume=(out / "checkpoints").is_dir())
    trainer.run()
    payload = read_checkpoint(trainer.checkpoints()[-1])
    model = model_from_checkpoint(payload, use_ema=False)
    deploy, _ = load_deploy(out / "model_deploy.safetensors")
    channels = model.config["num_in_ch"]
    sets = {}
    for name in spec.test_sets:
        ds = open_dataset(config.data_path(name), config.scale, default_cache_dir())
        r = evaluate_dataset(prepare(deploy, trainer.device), ds, progress=False)
        sets[name] = {"psnr": r["psnr"], "ssim": r["ssim"]}
    result = {
        "name": variant.name, "label": variant.label or variant.name, "block": config.network.block,
        "bn_switch": config.switch_iteration(), "iterations": config.train.total_iter,
        "has_bn": any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()),
        "train_params": sum(p.numel() for p in model.parameters()),
        "train_flops_per_px": _per_pixel_flops(model, channels),
        "deploy_params": sum(p.numel() for p in deploy.parameters()),
        "deploy_flops_per_px": _per_pixel_flops(deploy, channels),
        "train_it_per_s": payload.get("train_iterations", 0) / max(payload.get("train_seconds", 0.0), 1e-9),
        "test": sets,
        "history": [{"iteration": h["iteration"], **{k: v["psnr"] for k, v in h.items() if isinstance(v, dict)}}
                    for h in payload.get("history", [])],
    }
    with atomic_write(results_path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def ablation_table(results: list[dict[str, Any]], test_sets: list[str]) -> str:
    head = ("| variant | block | BN switch | train params | train kFLOP/px | deploy params | deploy kFLOP/px | "
            + " | ".join(f"{s} PSNR/SSIM" for s in test_sets) + " | train it/s |")
    lines = [head, "|" + "---|" * (8 + len(test_sets))]
    for r in results:
        switch = "never" if r["bn_switch"] is None else str(r["bn_switch"])
        cells = [r["label"], r["block"], switch if r.get("has_bn", True) else "no BN",
                 f"{r['train_params']:,}", f"{r['train_flops_per_px'] / 1e3:.1f}", f"{r['deploy_params']:,}",
                 f"{r['deploy_flops_per_px'] / 1e3:.1f}"]
        cells += [f"{r['test'][s]['psnr']:.2f} / {r['test'][s]['ssim']:.4f}" for s in test_sets]
        cells.append(f"{r['train_it_per_s']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def psnr_plot_svg(results: list[dict[str, Any]], key: str, width: int = 720, height: int = 420) -> str:
    """Validation PSNR over iterations, one line per variant, as a self-contained SVG."""
    series = [(r["label"], [(h["iteration"], h[key]) for h in r["history"] if key in h]) for r in results]
    series = [(n, pts) for n, pts in series if pts]
    if not series:
        return ""
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    y0, y1 = y0 - 0.05 * (y1 - y0 + 1e-6), y1 + 0.05 * (y1 - y0 + 1e-6)
    left, right, top, bottom = 60, 200, 20, 40
    def px(x: float) -> float:
        return left + (x - x0) / max(x1 - x0, 1) * (width - left - right)
    def py(y: float) -> float:
        return top + (y1 - y) / (y1 - y0) * (height - top - bottom)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#000000", "#aec7e8"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             'font-size="11"><rect width="100%" height="100%" fill="white"/>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
             f'<text x="{(width - right + left) / 2}" y="{height - 8}" text-anchor="middle">iteration</text>',
             f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" text-anchor="middle">'
             f'{key} PSNR (dB)</text>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        parts.append(f'<text x="{left - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.2f}</text>')
        xv = x0 + (x1 - x0) * i / 4
        parts.append(f'<text x="{px(xv):.1f}" y="{height - bottom + 14}" text-anchor="middle">{xv:.0f}</text>')
    for k, (name, pts) in enumerate(series):
        color = colors[k % len(colors)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        parts.append(f'<text x="{width - right + 8}" y="{top + 14 * k + 10}" fill="{color}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def run_ablation(spec_path: str | Path, out: str | Path) -> list[dict[str, Any]]:
    spec_path, out = Path(spec_path), Path(out)
    spec = read_spec(spec_path)
    configs = [variant_config(spec, v, spec_path.parent) for v in spec.variants]  # every mistake before any work
    results = []
    for variant, config in zip(spec.variants, configs, strict=True):
        print(f"== variant {variant.name}: block {config.network.block}, switch {config.switch_iteration()}",
              flush=True)
        results.append(run_variant(spec, variant, out / "variants" / variant.name, spec_path.parent))
    first = configs[0]
    key = f"ema/{Path(first.data.val.paths[0]).name}" if first.train.ema_decay > 0 and first.data.val.paths else ""
    if key and not any(key in h for r in results for h in r["history"]):
        key = f"raw/{Path(first.data.val.paths[0]).name}"
    svg = psnr_plot_svg(results, key) if key else ""
    lines = [f"# Ablation: {spec_path.name}", "",
             f"Command: `repsr ablate {spec_path} --out {out}`. Base config `{spec.base}` with {spec.opt or 'no'} "
             f"overrides; every variant trains {first.train.total_iter} iterations (x{first.scale}, "
             f"M{first.network.num_block}C{first.network.num_feat}, seed {first.seed}). PSNR/SSIM of the merged "
             "deploy model, Y channel, crop = scale. FLOPs are conv multiply-adds x 2 per LR pixel.", "",
             ablation_table(results, spec.test_sets), ""]
    if svg:
        lines += [f"Validation PSNR ({key}) over training: ![plot](ablation_psnr.svg)", ""]
        with atomic_write(out / "ablation_psnr.svg") as tmp:
            tmp.write_text(svg)
    with atomic_write(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")
    if spec.bn_study and spec.bn_study.noswitch and spec.bn_study.switched:
        study_sets = [open_dataset(first.data_path(s), first.scale, default_cache_dir()) for s in spec.bn_study.images]
        study = bn_study(out / "variants" / spec.bn_study.noswitch, out / "variants" / spec.bn_study.switched,
                         study_sets, out / "bn_study")
        lines += ["## BN-artifact study", "", study, ""]
    with atomic_write(out / "ablation.md") as tmp:
        tmp.write_text("\n".join(lines))
    print("\n".join(lines))
    return results


# ----------------------------------------------------------------------------- BN study

def _latest_model(run: Path) -> RepSRNet:
    checkpoints = sorted((run / "checkpoints").glob("iter_*.pth"))
    if not checkpoints:
        raise RepsrError(f"{run}: no checkpoints")
    return model_from_checkpoint(read_checkpoint(checkpoints[-1]), use_ema=False, source=str(run))


@torch.no_grad()
def _sr(model: nn.Module, lr: np.ndarray, batch_stats: bool) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(to_rgb(lr).transpose(2, 0, 1))).float().div(255)[None]
    if batch_stats:  # normalise with this image's own statistics, as training did (on a copy: buffers change)
        model = copy.deepcopy(model).train()
    out = model(x)[0].clamp(0, 1).mul(255).round().byte().numpy().transpose(1, 2, 0)
    return out


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
                scores[k].append(psnr(img, hr, ds.scale))
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
    big = [cv2.resize(t, (size * 3, size * 3), interpolation=cv2.INTER_NEAREST) for t in tiles]
    figure = np.concatenate(big, axis=1)
    write_image(out / "bn_artifacts.png", figure)
    for k, img in outs.items():
        write_image(out / f"{image_name}_{k}.png", img)
    write_image(out / f"{image_name}_diff_population.png", _diff_map(outs["population"], hr))
    write_image(out / f"{image_name}_diff_switched.png", _diff_map(outs["switched"], hr))
    return "\n".join([
        f"Model `{noswitch_run.name}` (BN, never switched) evaluated with (i) population statistics, "
        f"(ii) each image's own batch statistics, and (iii) model `{switched_run.name}` (switched). PSNR (dB), "
        "Y channel, full test images:", "",
        "| set | (i) population stats | (ii) per-image batch stats | (iii) switched |", "|---|---|---|---|", *rows, "",
        f"Largest gain of (iii) over (i): {gap:+.2f} dB on {set_name}/{image_name}. "
        "`bn_study/bn_artifacts.png`, left to right: HR, (i), (ii), (iii), |(i) - HR| x4, |(iii) - HR| x4 "
        f"(the {size}x{size} crop where (i) errs most, enlarged 3x).",
        "", "![BN artifacts](bn_study/bn_artifacts.png)"])

