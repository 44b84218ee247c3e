"""``repsr ablate`` and ``repsr bn-study``: measure the paper's claims on your own budget.

An ablation spec names a base config, the variants to compare and the seeds; every (variant, seed)
run is trained by the ordinary trainer with the same data, iterations and schedule (the seed sets
initialization, data order and augmentation), merged, and evaluated on the test sets. The report gives
mean +- standard deviation over seeds and each variant's paired difference from a reference variant.
Finished runs are never redone, unfinished ones resume from their checkpoints, and the report is
rewritten after every run, so a study can live in the repository (``docs/studies/NAME``: every run's
small files are kept, checkpoints are git-ignored) and continue from a fresh clone.

The BN study compares, for a BN model trained without the switch, (i) population statistics (what
deployment uses), (ii) per-image batch statistics (what training saw), and (iii) the model trained
with the switch, and saves crops and difference maps where they differ most.
"""

from __future__ import annotations

import copy
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch import nn

from .archs.networks import RepSRNet
from .archs.protocol import branch_forward
from .bn import has_batchnorm
from .checkpoint import model_from_checkpoint, read_checkpoint
from .config import Config, from_dict, load_config, read_config_dict, set_dotted
from .data import SRDataset, default_cache_dir, open_dataset
from .degradation import EvalDegradation
from .errors import RepsrError
from .evaluate import evaluate_dataset
from .fileio import atomic_write
from .images import to_rgb, to_tensor, write_image
from .inference import GRAY_WEIGHTS, prepare
from .loading import load_deploy
from .metrics import psnr
from .plots import psnr_plot_svg
from .reparam import reparameterize_model
from .speed import conv_flops
from .training import Trainer


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
    # test sets by name; "SET DEGRADATION" (e.g. "B100 jpeg40") scores a named degradation of its LR
    test_sets: list[str] = field(default_factory=lambda: ["Set5", "Set14", "B100"])
    seeds: list[int] = field(default_factory=list)  # every variant trains once per seed; empty: the config's seed
    reference: str = ""  # the variant the others are compared with (default: the first)
    pairs: list[list[str]] = field(default_factory=list)  # further paired comparisons: [[variant, against], ...]
    bn_study: BNStudySpec | None = None


def read_spec(path: str | Path) -> AblationSpec:
    path = Path(path)
    if not path.is_file():
        raise RepsrError(f"{path}: no such ablation spec")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RepsrError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    spec = from_dict(AblationSpec, data)
    if not spec.variants:
        raise RepsrError(f"{path}: no variants")
    names = [v.name for v in spec.variants]
    if len(set(names)) != len(names):
        raise RepsrError(f"{path}: variant names repeat")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise RepsrError(f"{path}: seeds repeat")
    for name in [spec.reference] * bool(spec.reference) + [n for pair in spec.pairs for n in pair]:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise RepsrError(f"{path}: {name!r} (reference or pairs) is not a variant{hint}")
    if any(len(pair) != 2 for pair in spec.pairs):
        raise RepsrError(f"{path}: pairs must be [variant, against] lists of two names")
    for entry in spec.test_sets:
        if degradation := entry.partition(" ")[2].strip():
            try:
                EvalDegradation(degradation)
            except RepsrError as e:
                raise RepsrError(f"{path}: test set {entry!r}: {e}") from None
    return spec


def variant_config(spec: AblationSpec, variant: Variant, base_dir: Path, seed: int | None = None,
                   check_paths: bool = True) -> Config:
    base = str(base_dir / spec.base) if (base_dir / spec.base).is_file() else spec.base
    data = read_config_dict(base)
    for key, value in {**spec.opt, **variant.opt, "name": variant.name}.items():
        set_dotted(data, key, value)
    if seed is not None:
        data["seed"] = seed
    return load_config(data, check_paths=check_paths)


def open_test_set(config: Config, entry: str) -> SRDataset:
    """A spec's test set: ``SET`` (bicubic LR) or ``SET DEGRADATION`` (a named degradation of it)."""
    name, _, degradation = entry.partition(" ")
    return open_dataset(config.data_path(name), config.scale, default_cache_dir(),
                        EvalDegradation(degradation.strip()) if degradation.strip() else None)


def spec_seeds(spec: AblationSpec, base_dir: Path) -> list[int]:
    """The seeds every variant trains with: the spec's list, else the base config's one seed."""
    return list(spec.seeds) or [variant_config(spec, spec.variants[0], base_dir).seed]


def _per_pixel_flops(model: nn.Module, channels: int) -> float:
    """Conv FLOPs per LR pixel of the network as trained (every branch, not the online-merged conv)."""
    x = torch.rand(1, channels, 32, 32, device=next(model.parameters()).device)
    with branch_forward(model):
        return conv_flops(model, x) / (32 * 32)


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return out / "variants" / variant / f"seed_{seed}"


def run_variant(spec: AblationSpec, variant: Variant, seed: int, out: Path, base_dir: Path) -> dict[str, Any]:
    """Train, merge and test one (variant, seed) run; its ``run.json`` marks it finished."""
    results_path = out / "run.json"
    if results_path.is_file():
        return json.loads(results_path.read_text())
    config = variant_config(spec, variant, base_dir, seed)
    trainer = Trainer(config, out, resume=(out / "checkpoints").is_dir())
    trainer.run()
    model = trainer.model  # the raw training network as its last checkpoint holds it
    deploy, _ = load_deploy(out / "model_deploy.safetensors")
    channels = model.config["num_in_ch"]
    sets = {}
    for name in spec.test_sets:
        ds = open_test_set(config, name)
        r = evaluate_dataset(prepare(deploy, trainer.device), ds, progress=False)
        sets[name] = {"psnr": r["psnr"], "ssim": r["ssim"]}
    result = {
        "name": variant.name, "label": variant.label or variant.name, "seed": seed, "block": config.network.block,
        "bn_switch": config.switch_iteration(), "iterations": config.train.total_iter,
        "has_bn": has_batchnorm(model),
        "train_params": sum(p.numel() for p in model.parameters()),
        "train_flops_per_px": _per_pixel_flops(model, channels),
        "deploy_params": sum(p.numel() for p in deploy.parameters()),
        "deploy_flops_per_px": _per_pixel_flops(deploy, channels),
        "train_it_per_s": trainer.train_iterations / max(trainer.train_seconds, 1e-9),
        "test": sets,
        # the trainer's history, final validation included (the last checkpoint predates it)
        "history": [{"iteration": h["iteration"], **{k: v["psnr"] for k, v in h.items() if isinstance(v, dict)}}
                    for h in trainer.history],
    }
    with atomic_write(results_path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ----------------------------------------------------------------------------- statistics over seeds

def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def verdict(deltas: list[float], spread: float) -> str:
    """'better' / 'worse' only when every seed's paired difference has the same sign and their mean is
    larger than the seed spread; anything less is a tie (three seeds cannot resolve more)."""
    if len(deltas) < 2:
        return "one seed"
    mean = float(np.mean(deltas))
    if all(d > 0 for d in deltas) and mean > spread:
        return "better"
    if all(d < 0 for d in deltas) and -mean > spread:
        return "worse"
    return "tie"


def last_quarter_gain(history: list[dict[str, Any]], key: str) -> float | None:
    """Validation PSNR gained over the last quarter of training (final minus the value at 75%)."""
    points = [(h["iteration"], h[key]) for h in history if key in h]
    if len(points) < 2:
        return None
    end = points[-1][0]
    before = [y for x, y in points if x <= 0.75 * end]
    return points[-1][1] - before[-1] if before else None


def summarize(runs: list[dict[str, Any]], variants: list[str], reference: str, test_sets: list[str],
              curve_key: str = "", labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per variant: mean +- std over seeds per test set, and the difference from ``reference`` paired by seed.
    ``labels`` (the spec's) win over those recorded in the runs, which another spec may have trained."""
    by_variant: dict[str, dict[int, dict[str, Any]]] = {}
    for r in runs:
        by_variant.setdefault(r["name"], {})[r["seed"]] = r
    ref = by_variant.get(reference, {})
    rows = []
    for name in variants:
        seeds = by_variant.get(name)
        if not seeds:
            continue
        first = next(iter(seeds.values()))
        label = (labels or {}).get(name) or first["label"]
        row: dict[str, Any] = {"name": name, "label": label, "block": first["block"],
                               "bn_switch": first["bn_switch"], "has_bn": first.get("has_bn", True),
                               "iterations": first["iterations"], "seeds": sorted(seeds),
                               "train_params": first["train_params"], "deploy_params": first["deploy_params"],
                               "train_flops_per_px": first["train_flops_per_px"],
                               "deploy_flops_per_px": first["deploy_flops_per_px"],
                               "train_it_per_s": float(np.mean([r["train_it_per_s"] for r in seeds.values()])),
                               "test": {}}
        for s in test_sets:
            psnrs = [seeds[k]["test"][s]["psnr"] for k in sorted(seeds)]
            ssims = [seeds[k]["test"][s]["ssim"] for k in sorted(seeds)]
            mean, std = _mean_std(psnrs)
            cell: dict[str, Any] = {"psnr": mean, "psnr_std": std, "ssim": _mean_std(ssims)[0], "per_seed": psnrs}
            paired = sorted(set(seeds) & set(ref))
            if name != reference and paired:
                deltas = [seeds[k]["test"][s]["psnr"] - ref[k]["test"][s]["psnr"] for k in paired]
                ref_std = _mean_std([ref[k]["test"][s]["psnr"] for k in paired])[1]
                d_mean, d_std = _mean_std(deltas)
                cell["delta"] = {"mean": d_mean, "std": d_std, "per_seed": deltas, "seeds": paired,
                                 "verdict": verdict(deltas, max(std, ref_std))}
            row["test"][s] = cell
        if curve_key:
            gains = [g for r in seeds.values() if (g := last_quarter_gain(r["history"], curve_key)) is not None]
            row["last_quarter_gain"] = float(np.mean(gains)) if gains else None
        rows.append(row)
    return rows


def _delta_cell(d: dict[str, Any]) -> str:
    """A paired difference as the tables print it: mean ± std (per seed) **verdict**."""
    seeds = ", ".join(f"{x:+.2f}" for x in d["per_seed"])
    return f"{d['mean']:+.3f} ± {d['std']:.3f} ({seeds}) **{d['verdict']}**"


def ablation_table(rows: list[dict[str, Any]], test_sets: list[str], reference: str) -> str:
    """The results table: PSNR mean +- std over seeds, SSIM mean, and the paired difference from the reference."""
    head = ["variant", "seeds"] + [f"{s} PSNR / SSIM" for s in test_sets]
    head += [f"{s} vs {reference}" for s in test_sets] + ["last-quarter gain", "train it/s", "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], str(len(r["seeds"]))]
        for s in test_sets:
            c = r["test"][s]
            spread = f" ± {c['psnr_std']:.3f}" if len(r["seeds"]) > 1 else ""
            cells.append(f"{c['psnr']:.2f}{spread} / {c['ssim']:.4f}")
        for s in test_sets:
            d = r["test"][s].get("delta")
            if d is None:
                cells.append("reference" if r["name"] == reference else "-")
            else:
                cells.append(_delta_cell(d))
        gain = r.get("last_quarter_gain")
        cells.append("-" if gain is None else f"{gain:+.3f} dB")
        cells.append(f"{r['train_it_per_s']:.1f}")
        cells.append(f"{r['iterations'] / max(r['train_it_per_s'], 1e-9) / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pairs_table(runs: list[dict[str, Any]], pairs: list[list[str]], labels: dict[str, str],
                test_sets: list[str]) -> str:
    """Paired differences for the spec's ``pairs``, called as against the reference."""
    lines = ["| variant | against | " + " | ".join(test_sets) + " |", "|---|---|" + "---|" * len(test_sets)]
    for name, against in pairs:
        row = summarize(runs, [name], against, test_sets)
        if not row or not all("delta" in row[0]["test"][s] for s in test_sets):
            continue
        cells = [_delta_cell(row[0]["test"][s]["delta"]) for s in test_sets]
        lines.append(f"| {labels.get(name) or name} | {labels.get(against) or against} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def cost_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | block | BN switch | train params | train kFLOP/px | deploy params | deploy kFLOP/px |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        switch = "never" if r["bn_switch"] is None else str(r["bn_switch"])
        lines.append(f"| {r['label']} | {r['block']} | {switch if r['has_bn'] else 'no BN'} | {r['train_params']:,} | "
                     f"{r['train_flops_per_px'] / 1e3:.1f} | {r['deploy_params']:,} | "
                     f"{r['deploy_flops_per_px'] / 1e3:.1f} |")
    return "\n".join(lines)


def mean_curve(runs: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """Validation PSNR averaged over the seeds at the iterations every seed validated."""
    per_seed = [{h["iteration"]: h[key] for h in r["history"] if key in h} for r in runs]
    common = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    return [(it, float(np.mean([p[it] for p in per_seed]))) for it in common]


def _curve_key(config: Config) -> str:
    if not config.data.val.paths:
        return ""
    which = "ema" if config.train.ema_decay > 0 else "raw"
    return f"{which}/{Path(config.data.val.paths[0]).name}"


def write_report(spec: AblationSpec, spec_path: Path, out: Path, runs: list[dict[str, Any]], config: Config,
                 seeds: list[int], extra: list[str] | None = None) -> str:
    """ablation.md, ablation.json and the curve plot from the runs finished so far."""
    names = [v.name for v in spec.variants]
    reference = spec.reference or names[0]
    key = _curve_key(config)
    labels = {v.name: v.label for v in spec.variants}
    rows = summarize(runs, names, reference, spec.test_sets, key, labels)
    planned = len(names) * len(seeds)
    budgets = {r["name"]: r["iterations"] for r in rows} or {"all": config.train.total_iter}
    trains = (f"every variant trains {next(iter(budgets.values()))} iterations" if len(set(budgets.values())) == 1
              else "the variants train " + ", ".join(f"{n} {i}" for n, i in budgets.items()) + " iterations")
    lines = [f"# Ablation: {spec_path.name}", "",
             f"Command: `repsr ablate {spec_path} --out {out}`. Base config `{spec.base}` with {spec.opt or 'no'} "
             f"overrides; {trains} (x{config.scale}, "
             f"M{config.network.num_block}C{config.network.num_feat}) once per seed {seeds}; "
             f"{len(runs)} of {planned} runs finished. PSNR (dB) / SSIM of the merged deploy model, Y channel, "
             "crop = scale; mean ± sample standard deviation over seeds. The difference from "
             f"`{reference}` is paired by seed (same data order): mean ± std (per seed); **better**/**worse** only "
             "when every seed agrees in sign and the mean exceeds the larger seed spread of the two variants, "
             "otherwise **tie**. Last-quarter gain: validation PSNR "
             f"({key or 'none'}) at the end minus at 75% of training, mean over seeds. Train it/s and minutes: "
             "as measured during the run (other jobs on the machine slow it; benchmarks/ compares speeds in turns).",
             "",
             ablation_table(rows, spec.test_sets, reference), ""]
    if pairs := pairs_table(runs, spec.pairs, labels, spec.test_sets):
        lines += ["Further paired differences (PSNR, dB; the same rules):", "", pairs, ""]
    lines += ["Cost of training and deployment (FLOPs: conv multiply-adds x 2 per LR pixel):", "", cost_table(rows), ""]
    series = [(r["label"], mean_curve([x for x in runs if x["name"] == r["name"]], key)) for r in rows] if key else []
    svg = psnr_plot_svg(series, key + " (mean over seeds)",
                        [r["bn_switch"] for r in rows if r["bn_switch"] is not None and r["has_bn"]])
    if svg:
        lines += [f"Validation PSNR ({key}, mean over seeds) over training; dashed: the BN switch. "
                  "![plot](ablation_psnr.svg)", ""]
        with atomic_write(out / "ablation_psnr.svg") as tmp:
            tmp.write_text(svg)
    lines += extra or []
    with atomic_write(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps({"reference": reference, "seeds": seeds, "summary": rows, "runs": runs},
                                  indent=2) + "\n")
    text = "\n".join(lines)
    with atomic_write(out / "ablation.md") as tmp:
        tmp.write_text(text)
    return text


def run_ablation(spec_path: str | Path, out: str | Path, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Every (variant, seed) run, seed by seed so that partial studies compare all variants; the report is
    rewritten after each run. ``only``: train just these variants (the others' finished runs still count), so
    that two processes can share a study, one variant each."""
    spec_path, out = Path(spec_path), Path(out)
    spec = read_spec(spec_path)
    names = [v.name for v in spec.variants]
    for name in only or []:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            raise RepsrError(f"--only {name}: no such variant{'; did you mean ' + close[0] + '?' if close else ''}")
    seeds = spec_seeds(spec, spec_path.parent)
    configs = [variant_config(spec, v, spec_path.parent, seeds[0]) for v in spec.variants]  # mistakes before work
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        for variant, config in zip(spec.variants, configs, strict=True):
            folder = run_dir(out, variant.name, seed)
            if only and variant.name not in only:
                if (folder / "run.json").is_file():
                    runs.append(json.loads((folder / "run.json").read_text()))
                continue
            print(f"== variant {variant.name}, seed {seed}: block {config.network.block}, "
                  f"switch {config.switch_iteration()}", flush=True)
            runs.append(run_variant(spec, variant, seed, folder, spec_path.parent))
            write_report(spec, spec_path, out, runs, configs[0], seeds)
    extra = []
    if spec.bn_study and spec.bn_study.noswitch and spec.bn_study.switched:
        first = configs[0]
        study_sets = [open_dataset(first.data_path(s), first.scale, default_cache_dir()) for s in spec.bn_study.images]
        study = bn_study(run_dir(out, spec.bn_study.noswitch, seeds[0]), run_dir(out, spec.bn_study.switched, seeds[0]),
                         study_sets, out / "bn_study")
        extra = ["## BN-artifact study", "", f"Seed {seeds[0]}. " + study, ""]
    print(write_report(spec, spec_path, out, runs, configs[0], seeds, extra))
    return runs


# ----------------------------------------------------------------------------- BN study

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


def _labelled(tile: np.ndarray, label: str) -> np.ndarray:
    """The tile under a white strip with its label, so the figure reads without the caption."""
    header = np.full((24, tile.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(header, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, tile], axis=0)


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
    big = [_labelled(cv2.resize(t, (size * 3, size * 3), interpolation=cv2.INTER_NEAREST), label)
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

