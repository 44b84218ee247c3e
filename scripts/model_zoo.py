"""Train the bundled models, evaluate them, bundle them and write MODEL_ZOO.md.

    python scripts/model_zoo.py [--data-root ../shared/datasets] [--runs runs/zoo] [--only NAME]

Each entry is trained with `repsr train <preset>` (resumed if its run folder has checkpoints, skipped
if it has finished), evaluated on Set5/Set14/B100 next to bicubic, and copied to
src/repsr/models/NAME.safetensors with its recipe and results in the file's metadata.

docs/model_zoo/NAME.json keeps what MODEL_ZOO.md is written from: the run's validation curve and, per
training budget and recipe, the results of every model bundled so far (the one being replaced is added
before it is overwritten). The studies that trained a zoo recipe add their points on each pass; the
budget a published number needs is projected from the current recipe's points only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsr import __version__
from repsr.ablation import psnr_plot_svg
from repsr.archs.registry import build_block
from repsr.bn import has_batchnorm
from repsr.checkpoint import read_checkpoint
from repsr.config import Config, load_config
from repsr.data import HRFolder, default_cache_dir
from repsr.evaluate import evaluate_dataset
from repsr.export import save_deploy
from repsr.fileio import atomic_write
from repsr.inference import prepare
from repsr.loading import load_deploy
from repsr.training import train

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "model_zoo"
ZOO = [  # name, preset, description
    ("repsr-x4-m4c16", "zoo_x4_m4c16", "x4 RGB, the default model of `repsr upscale`"),
    ("repsr-x2-m4c16", "zoo_x2_m4c16", "x2 RGB"),
]
TEST_SETS = ("Set5", "Set14", "B100")
# The nearest peer with published numbers at exactly this deploy architecture: ECBSR-M4C16 retrained in RGB on
# DIV2K (800 images, about 1.6 M iterations of batch 32, LR patch 64) by ETDS (CVPR 2023, Table 2).
PUBLISHED_LABEL = "ECBSR-M4C16, DIV2K (ETDS, CVPR 2023)"
PUBLISHED = {4: {"Set5": 30.87, "Set14": 27.80, "B100": 27.06}, 2: {"Set5": 37.18, "Set14": 32.79, "B100": 31.61}}
# Studies that trained a zoo recipe at another budget: (study folder, variant); each run's config says which recipe.
STUDIES = {"repsr-x4-m4c16": [(ROOT / "docs" / "studies" / "x4_m4c16", "repsr"),
                              (ROOT / "docs" / "studies" / "x4_m4c16_lr4e-3", "repsr_nobn")],
           "repsr-x2-m4c16": [(ROOT / "docs" / "studies" / "x2_m4c16_budget", "zoo_10k")]}


def run_curve(out: Path, results: dict[str, Any]) -> list[dict[str, Any]]:
    """EMA validation PSNR per set over the run: the last checkpoint's history plus the final scores."""
    checkpoints = sorted((out / "checkpoints").glob("iter_*.pth"))
    history = read_checkpoint(checkpoints[-1])["history"] if checkpoints else []
    curve = [{"iteration": h["iteration"], **{k.split("/", 1)[1]: v["psnr"] for k, v in h.items()
                                                if isinstance(v, dict) and k.startswith("ema/")}} for h in history]
    final = {"iteration": results["iterations"], **{k: v["psnr"] for k, v in results["datasets"].items()}}
    return [c for c in curve if c["iteration"] < final["iteration"]] + [final]


def has_bn(config: Config) -> bool:
    return has_batchnorm(build_block(config.network.block, 4))


def bn_switch(config: Config) -> int | None:
    """The iteration BN switches to population statistics; None when the block has no BN or never switches."""
    return config.switch_iteration() if has_bn(config) else None


def recipe_key(config: Config) -> str:
    """What makes two runs points of one recipe: everything that matters but the budget (``total_iter``)."""
    d = config.data.train
    return (f"{config.network.block} blocks, lr {config.train.optimizer.lr:g}, LR patch {d.lr_patch}, "
            f"batch {d.batch_size}")


BLOCK_TEXT = {"repsr": "RepSR blocks", "repsr_nobn": "RepSR blocks without BN (identity plus two expand-and-squeeze "
              "paths, linear throughout)", "plain": "plain 3x3 convs", "ecb": "ECB blocks"}


def trained_as(config: Config) -> str:
    """How the deploy network was trained, for MODEL_ZOO.md."""
    text = BLOCK_TEXT.get(config.network.block, f"{config.network.block} blocks")
    if (switch := bn_switch(config)) is not None:
        text += f" with BN, switched to population statistics at iteration {switch} of {config.train.total_iter}"
    return text + ", EMA"


def budget_point(meta: dict[str, str], source: str, recipe: str) -> dict[str, Any]:
    results = json.loads(meta["results"])
    return {"iterations": int(meta["iterations"]), "psnr": {k: v["psnr"] for k, v in results.items()},
            "seeds": 1, "source": source, "recipe": recipe}


def study_points(name: str) -> list[dict[str, Any]]:
    """The zoo recipes' results in seed-replicated studies (mean over seeds of the variant that is the recipe)."""
    points = []
    for folder, variant in STUDIES.get(name, []):
        path = folder / "ablation.json"
        row = next((r for r in json.loads(path.read_text())["summary"] if r["name"] == variant),
                   None) if path.is_file() else None
        if row is None:
            continue
        run_config = folder / "variants" / variant / f"seed_{row['seeds'][0]}" / "config.yml"
        config = load_config(str(run_config), check_paths=False)  # only its recipe is read
        mean = " (mean over seeds)" if len(row["seeds"]) > 1 else ""
        points.append({"iterations": row["iterations"], "psnr": {k: v["psnr"] for k, v in row["test"].items()},
                       "seeds": len(row["seeds"]), "source": f"{path.relative_to(ROOT)}{mean}",
                       "recipe": recipe_key(config)})
    return points


def project_budget(points: list[tuple[int, float]], target: float) -> tuple[float, float, int] | None:
    """Fit PSNR = a + b ln(iterations) to finished runs of one recipe; the iterations it puts at ``target``.
    Returns (a, b, iterations), or None when the points cannot support a fit (fewer than two budgets, or
    no gain with budget). Log-linear growth does not saturate, so the projection is optimistic."""
    budgets = sorted({n for n, _ in points})
    if len(budgets) < 2:
        return None
    x = np.log([n for n, _ in points])
    b, a = np.polyfit(x, [p for _, p in points], 1)
    if b <= 0:
        return None
    return float(a), float(b), int(round(math.exp((target - a) / b)))


def load_record(name: str) -> dict[str, Any]:
    path = RECORDS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {"name": name, "budgets": []}


def save_record(record: dict[str, Any]) -> None:
    RECORDS.mkdir(parents=True, exist_ok=True)
    with atomic_write(RECORDS / f"{record['name']}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _budget_key(point: dict[str, Any]) -> tuple[int, str, str]:
    return point["iterations"], "bundled" if point["source"].startswith("bundled") else point["source"], \
        point["recipe"]


def add_budget(record: dict[str, Any], point: dict[str, Any]) -> None:
    """Keep one point per budget, source and recipe (a re-bundled model of the same ones replaces the older)."""
    record["budgets"] = [p for p in record["budgets"] if _budget_key(p) != _budget_key(point)] + [point]
    record["budgets"].sort(key=lambda p: (p["recipe"] != record.get("recipe_key"), p["recipe"], p["iterations"]))


def recipe_text(config: Config) -> str:
    t, d = config.train, config.data.train
    switch = bn_switch(config)
    return (f"LR patch {d.lr_patch}, batch {d.batch_size}, Adam {tuple(t.optimizer.betas)}, lr "
            f"{t.optimizer.lr:g} with {t.scheduler.type} decay to {t.scheduler.min_lr:g} after "
            f"{t.scheduler.warmup_iter} warm-up iterations, {t.loss.upper()} loss, EMA {t.ema_decay}"
            + (f", BN switched to population statistics at iteration {switch} of {t.total_iter}"
               if switch is not None else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "zoo"))
    parser.add_argument("--only", help="train/evaluate only this entry; the others keep their bundled results")
    args = parser.parse_args()
    rows = []
    for name, preset, description in ZOO:
        config = load_config(preset, [f"data_root={args.data_root}"])
        out = Path(args.runs) / preset
        bundled = ROOT / "src" / "repsr" / "models" / f"{name}.safetensors"
        record = load_record(name)
        if args.only in (None, name):
            if not (out / "results.json").is_file():
                start = time.perf_counter()
                train(config, out, resume=(out / "checkpoints").is_dir())
                (out / "train_seconds.txt").write_text(f"{time.perf_counter() - start:.0f}\n")
            model, _ = load_deploy(out / "model_deploy.safetensors")
            results = {}
            for test_set in TEST_SETS:
                ds = HRFolder(Path(args.data_root) / test_set, config.scale, default_cache_dir())
                ours = evaluate_dataset(prepare(model, torch.device("cpu")), ds, progress=False)
                bicubic = evaluate_dataset("bicubic", ds, progress=False)
                results[test_set] = {"psnr": ours["psnr"], "ssim": ours["ssim"],
                                     "bicubic_psnr": bicubic["psnr"], "bicubic_ssim": bicubic["ssim"]}
            seconds = (out / "train_seconds.txt").read_text().strip() if (out / "train_seconds.txt").exists() else "?"
            trained = datetime.date.fromtimestamp((out / "results.json").stat().st_mtime)  # not the day of this pass
            meta = {"name": name, "description": description, "preset": preset,
                    "iterations": str(config.train.total_iter), "train_data": "T91 + BSD200 (291 images)",
                    "trained_on": f"{platform.processor() or platform.machine()}, CPU, {seconds} s",
                    "date": trained.isoformat(), "results": json.dumps(results), "recipe": recipe_key(config)}
            if bundled.is_file():  # the model being replaced stays on record as a point of the budget curve
                _, old = load_deploy(bundled)
                old_recipe = old.get("recipe", record.get("recipe_key", "?"))
                if (old.get("iterations"), old_recipe) != (meta["iterations"], meta["recipe"]):
                    add_budget(record, budget_point(old, f"bundled {old.get('date', '?')}", old_recipe))
            save_deploy(model, bundled, metadata=meta)
            record.update(preset=preset, recipe=recipe_text(config), recipe_key=meta["recipe"],
                          trained_as=trained_as(config),
                          switch=bn_switch(config),
                          curve=run_curve(out, json.loads((out / "results.json").read_text())))
            add_budget(record, budget_point(meta, f"bundled {meta['date']}", meta["recipe"]))
        save_record(record)  # the bundled models' history only: study points are read from the studies each pass
        shown = {**record, "budgets": list(record["budgets"])}
        for point in study_points(name):
            add_budget(shown, point)
        _, meta = load_deploy(bundled)
        rows.append((name, preset, meta, shown))
    write_model_zoo(rows)


def budget_lines(name: str, scale: int, record: dict[str, Any]) -> list[str]:
    """The Set5 results per budget and recipe, and the budget a log-linear fit of the current recipe's points
    puts at the published number."""
    target = PUBLISHED.get(scale, {}).get("Set5")
    budgets = [p for p in record.get("budgets", []) if "Set5" in p["psnr"]]
    if not budgets:
        return []
    current = record.get("recipe_key")
    lines = ["Set5 PSNR by training budget (finished runs; a recipe is everything but `total_iter`, and the first "
             "rows are the bundled model's):", "",
             "| recipe | iterations | Set5 | seeds | source |", "|---|---|---|---|---|"]
    lines += [f"| {p['recipe']} | {p['iterations']} | {p['psnr']['Set5']:.2f} | {p['seeds']} | {p['source']} |"
              for p in budgets]
    points = [(p["iterations"], p["psnr"]["Set5"]) for p in budgets if p["recipe"] == current]
    fit = project_budget(points, target) if target else None
    if fit:
        a, b, needed = fit
        lines += ["", f"A fit of Set5 = {a:.2f} + {b:.4f} ln(iterations) over the bundled recipe's points puts "
                  f"{PUBLISHED_LABEL}'s {target:.2f} dB at about {needed:,} iterations of it. Log-linear growth does "
                  "not saturate, so this is a lower bound on the budget, not a promise that the 291-image set "
                  "reaches it."]
    lines.append("")
    return lines


def write_model_zoo(rows) -> None:
    lines = ["# Model zoo", "",
             "Bundled with repsr (`repsr models` lists them; `repsr upscale --model NAME`). Every number below is "
             "written by `python scripts/model_zoo.py`, which trains each model with its preset, evaluates it and "
             "bundles it. PSNR/SSIM: Y channel, border crop = scale, BasicSR protocol (`repsr eval`), LR images by "
             "MATLAB bicubic downscaling of the test sets' HR images. Why these recipes (block, learning rate, LR "
             "patch and batch, compared over seeds at equal iterations and at equal CPU time): "
             "[docs/studies/x4_m4c16/study.md](docs/studies/x4_m4c16/study.md).", ""]
    for name, preset, meta, record in rows:
        results = json.loads(meta["results"])
        size = f"M{meta['num_conv']}C{meta['num_feat']}"
        scale = int(meta["scale"])
        version = meta.get("repsr_version", __version__)
        published = PUBLISHED.get(scale, {})
        lines += [f"## {name}", "",
                  f"{meta['description']}. SRVGGNetCompact {size}, x{scale}, trained through "
                  f"{record.get('trained_as', '?')}, then merged.", "",
                  f"- config: `src/repsr/presets/{preset}.yml` (`repsr train {preset}`), "
                  f"{meta['iterations']} iterations",
                  *([f"- recipe: {record['recipe']}"] if "recipe" in record else []),
                  f"- training data: {meta['train_data']}",
                  f"- trained on: {meta['trained_on']} ({meta['date']}, repsr {version})",
                  "", f"| set | PSNR / SSIM | bicubic | gain | {PUBLISHED_LABEL} |", "|---|---|---|---|---|"]
        for test_set, r in results.items():
            ref = (f"{published[test_set]:.2f} ({r['psnr'] - published[test_set]:+.2f} dB)"
                   if test_set in published else "-")
            lines.append(f"| {test_set} | {r['psnr']:.2f} / {r['ssim']:.4f} | {r['bicubic_psnr']:.2f} / "
                         f"{r['bicubic_ssim']:.4f} | {r['psnr'] - r['bicubic_psnr']:+.2f} dB / "
                         f"{r['ssim'] - r['bicubic_ssim']:+.4f} | {ref} |")
        lines.append("")
        curve = record.get("curve", [])
        if curve:
            sets = [k for k in curve[-1] if k != "iteration"]
            svg = psnr_plot_svg([(s, [(c["iteration"], c[s]) for c in curve if s in c]) for s in sets], "EMA",
                                [record["switch"]] if record.get("switch") else None)
            with atomic_write(RECORDS / f"{name}_psnr.svg") as tmp:
                tmp.write_text(svg)
            switch_note = " (dashed: the BN switch)" if record.get("switch") else ""
            lines += [f"Validation PSNR of the EMA weights during training{switch_note}: "
                      f"![curve](docs/model_zoo/{name}_psnr.svg)", ""]
        lines += budget_lines(name, scale, record)
    with atomic_write(ROOT / "MODEL_ZOO.md") as tmp:
        tmp.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
