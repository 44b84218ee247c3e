"""Train the bundled models, evaluate them, bundle them and write MODEL_ZOO.md.

    python scripts/model_zoo.py [--data-root ../shared/datasets] [--runs runs/zoo] [--only NAME]
    python scripts/model_zoo.py --write     # no training: MODEL_ZOO.md and the README table from the bundled models

Each entry is trained with `repsr train <preset>` (resumed if its run folder has checkpoints, skipped
if it has finished), evaluated next to bicubic on Set5/Set14/B100 and on the standard degraded test sets
(Set14 and B100 with JPEG q40, noise 10 + JPEG q60, blur 1 + JPEG q60 and the real-world pipeline), and
copied to src/repsr/models/NAME.safetensors with its recipe and results in the file's metadata. A bundled
model whose metadata lacks some of these results is scored again (its weights untouched).

results/model_zoo/NAME.json keeps what MODEL_ZOO.md is written from: the run's validation curve and, per
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsr import __version__
from repsr.archs.registry import build_block
from repsr.bn import has_batchnorm
from repsr.checkpoint import read_checkpoint
from repsr.config import Config, load_config
from repsr.data import default_cache_dir, open_dataset
from repsr.degradation import STANDARD, EvalDegradation
from repsr.evaluate import evaluate_dataset
from repsr.export import save_deploy
from repsr.fileio import atomic_write
from repsr.inference import Upscaler
from repsr.loading import load_deploy
from repsr.plots import psnr_plot_svg
from repsr.training import train
from repsr.zoo import INPUTS

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "results" / "model_zoo"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    preset: str
    description: str
    inputs: str  # "clean" (bicubic downscales) or "real" (the real-world degradation model): repsr.zoo.INPUTS
    baseline: str | None = None  # a real-world model's bicubic-trained counterpart, compared on the degraded sets


ZOO = [
    ZooEntry("repsr-x4-m4c16-real", "zoo_x4_m4c16_real", "x4 RGB for real photos and video (JPEG, noise, blur): "
             "the default model of `repsr upscale`", "real", baseline="repsr-x4-m4c16"),
    ZooEntry("repsr-x2-m4c16-real", "zoo_x2_m4c16_real", "x2 RGB for real photos and video (JPEG, noise, blur)",
             "real", baseline="repsr-x2-m4c16"),
    ZooEntry("repsr-x4-m4c16", "zoo_x4_m4c16", "x4 RGB for clean bicubic downscales (benchmarks)", "clean"),
    ZooEntry("repsr-x2-m4c16", "zoo_x2_m4c16", "x2 RGB for clean bicubic downscales (benchmarks)", "clean"),
]
TEST_SETS = ("Set5", "Set14", "B100")
DEGRADED_SETS = tuple(f"{s} {d}" for d in STANDARD for s in ("Set14", "B100"))
# The nearest peer with published numbers at exactly this deploy architecture: ECBSR-M4C16 retrained in RGB on
# DIV2K (800 images, about 1.6 M iterations of batch 32, LR patch 64) by ETDS (CVPR 2023, Table 2).
PUBLISHED_LABEL = "ECBSR-M4C16, DIV2K (ETDS, CVPR 2023)"
PUBLISHED = {4: {"Set5": 30.87, "Set14": 27.80, "B100": 27.06}, 2: {"Set5": 37.18, "Set14": 32.79, "B100": 31.61}}
# Studies that trained a zoo recipe at another budget: (study folder, variant); each run's config says which recipe.
STUDIES = {"repsr-x4-m4c16": [(ROOT / "results" / "studies" / "x4_m4c16", "repsr"),
                              (ROOT / "results" / "studies" / "x4_m4c16_lr4e-3", "repsr_nobn")],
           "repsr-x2-m4c16": [(ROOT / "results" / "studies" / "x2_m4c16_budget", "zoo_10k")]}


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


def score(model: torch.nn.Module, data_root: Path, scale: int) -> dict[str, dict[str, float]]:
    """PSNR/SSIM next to bicubic on the clean test sets and the standard degraded ones, keyed by label."""
    results = {}
    net = Upscaler(model, "cpu")
    for label in TEST_SETS + DEGRADED_SETS:
        name, _, degradation = label.partition(" ")
        ds = open_dataset(data_root / name, scale, default_cache_dir(),
                          EvalDegradation(degradation) if degradation else None)
        ours = evaluate_dataset(net, ds, progress=False)
        bicubic = evaluate_dataset("bicubic", ds, progress=False)
        results[label] = {"psnr": ours["psnr"], "ssim": ours["ssim"],
                          "bicubic_psnr": bicubic["psnr"], "bicubic_ssim": bicubic["ssim"]}
    return results


def train_and_bundle(entry: ZooEntry, config: Config, out: Path, bundled: Path, record: dict[str, Any],
                     data_root: Path) -> None:
    """Train ``entry`` (resuming, or not at all if finished), score it and bundle it with its recipe and results."""
    if not (out / "results.json").is_file() or json.loads((out / "results.json").read_text()).get("stopped_early"):
        start = time.perf_counter()
        results = train(config, out, resume=(out / "checkpoints").is_dir())
        seconds = time.perf_counter() - start + _seconds_before(out)
        (out / "train_seconds.txt").write_text(f"{seconds:.0f}\n")
        if results.get("stopped_early"):
            raise SystemExit(f"{out}: stopped at iteration {results['iterations']}; run the same command to resume")
    model, _ = load_deploy(out / "model_deploy.safetensors")
    seconds = (out / "train_seconds.txt").read_text().strip() if (out / "train_seconds.txt").exists() else "?"
    trained = datetime.date.fromtimestamp((out / "results.json").stat().st_mtime)  # not the day of this pass
    data = "T91 + BSD200 (291 images)" + (", LR by the second-order degradation model" if entry.inputs == "real"
                                          else "")
    meta = {"name": entry.name, "description": entry.description, "preset": entry.preset, "inputs": entry.inputs,
            "iterations": str(config.train.total_iter), "train_data": data,
            "trained_on": f"{platform.processor() or platform.machine()}, CPU, {seconds} s",
            "date": trained.isoformat(), "results": json.dumps(score(model, data_root, config.scale)),
            "recipe": recipe_key(config)}
    if bundled.is_file():  # the model being replaced stays on record as a point of the budget curve
        _, old = load_deploy(bundled)
        old_recipe = old.get("recipe", record.get("recipe_key", "?"))
        if (old.get("iterations"), old_recipe) != (meta["iterations"], meta["recipe"]):
            add_budget(record, budget_point(old, f"bundled {old.get('date', '?')}", old_recipe))
    save_deploy(model, bundled, metadata=meta)
    record.update(preset=entry.preset, recipe=recipe_text(config), recipe_key=meta["recipe"],
                  trained_as=trained_as(config), switch=bn_switch(config),
                  curve=run_curve(out, json.loads((out / "results.json").read_text())))
    add_budget(record, budget_point(meta, f"bundled {meta['date']}", meta["recipe"]))


def _seconds_before(out: Path) -> float:
    """Wall time of earlier, interrupted sessions of this run (their train_seconds.txt), so resumes add up."""
    path = out / "train_seconds.txt"
    return float(path.read_text()) if path.is_file() else 0.0


def refresh_bundled(entry: ZooEntry, bundled: Path, data_root: Path) -> None:
    """Bring a bundled model's metadata up to date, its weights untouched: the zoo's description and inputs label,
    and its scores again if they lack any test set or degradation."""
    model, meta = load_deploy(bundled)
    updated = {**meta, "description": entry.description, "inputs": entry.inputs}
    if not set(TEST_SETS + DEGRADED_SETS) <= set(json.loads(meta.get("results", "{}"))):
        updated["results"] = json.dumps(score(model, data_root, model.upscale))
    if updated != meta:
        save_deploy(model, bundled, metadata=updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--runs", default=str(ROOT / "runs" / "zoo"))
    parser.add_argument("--only", help="train/evaluate only this entry; the others keep their bundled results")
    parser.add_argument("--write", action="store_true",
                        help="train nothing: refresh the bundled models' labels (and missing scores), write the pages")
    args = parser.parse_args()
    data_root = Path(args.data_root)
    rows = []
    for entry in ZOO:
        config = load_config(entry.preset, [f"data_root={args.data_root}"])
        bundled = ROOT / "src" / "repsr" / "models" / f"{entry.name}.safetensors"
        record = load_record(entry.name)
        if not args.write and args.only in (None, entry.name):
            train_and_bundle(entry, config, Path(args.runs) / entry.preset, bundled, record, data_root)
        if not bundled.is_file():
            continue
        refresh_bundled(entry, bundled, data_root)
        save_record(record)  # the bundled models' history only: study points are read from the studies each pass
        shown = {**record, "budgets": list(record["budgets"])}
        for point in study_points(entry.name):
            add_budget(shown, point)
        _, meta = load_deploy(bundled)
        rows.append((entry, meta, shown))
    write_model_zoo(rows)
    write_readme_table(rows)


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


def _cell(r: dict[str, float]) -> str:
    return f"{r['psnr']:.2f} / {r['ssim']:.4f}"


def degraded_lines(entry: ZooEntry, results: dict, baseline: dict | None) -> list[str]:
    """The degraded test sets: bicubic, the bicubic-trained counterpart (for a real-world model) and this model."""
    labels = [label for label in DEGRADED_SETS if label in results]
    if not labels:
        return []
    if baseline is None:
        lines = ["| LR | set | PSNR / SSIM | bicubic | gain |", "|---|---|---|---|---|"]
        for label in labels:
            name, degradation = label.split(" ", 1)
            r = results[label]
            lines.append(f"| {EvalDegradation(degradation).label} | {name} | {_cell(r)} | {r['bicubic_psnr']:.2f} / "
                         f"{r['bicubic_ssim']:.4f} | {r['psnr'] - r['bicubic_psnr']:+.2f} dB |")
        return ["On degraded LR (`repsr eval --degradation standard`):", "", *lines, ""]
    lines = [f"| LR | set | bicubic | {entry.baseline} | {entry.name} | vs {entry.baseline} |",
             "|---|---|---|---|---|---|"]
    for label in labels:
        name, degradation = label.split(" ", 1)
        r, b = results[label], baseline[label]
        lines.append(f"| {EvalDegradation(degradation).label} | {name} | {r['bicubic_psnr']:.2f} / "
                     f"{r['bicubic_ssim']:.4f} | {_cell(b)} | **{_cell(r)}** | {r['psnr'] - b['psnr']:+.2f} dB |")
    gain = float(np.mean([results[k]["psnr"] - baseline[k]["psnr"] for k in labels]))
    over_bicubic = float(np.mean([results[k]["psnr"] - results[k]["bicubic_psnr"] for k in labels]))
    cost = float(np.mean([results[k]["psnr"] - baseline[k]["psnr"] for k in TEST_SETS if k in baseline]))
    return [f"On degraded LR (`repsr eval --degradation standard`), against the bicubic-trained {entry.baseline}:", "",
            *lines, "",
            f"Mean over these {len(labels)} sets: **{gain:+.2f} dB** against {entry.baseline} "
            f"({over_bicubic:+.2f} dB against bicubic). On clean bicubic LR it costs {cost:+.2f} dB against "
            f"{entry.baseline} (mean over {', '.join(TEST_SETS)}).", ""]


def write_readme_table(rows: list[tuple[ZooEntry, dict[str, str], dict[str, Any]]]) -> None:
    """The README's one results table, between its ``<!-- models -->`` markers."""
    lines = ["| model | for | size | Set5 | Set14 | B100 | degraded LR (mean of 8 sets) |",
             "|---|---|---|---|---|---|---|"]
    for entry, meta, _ in rows:
        results = json.loads(meta["results"])
        cells = [f"{results[s]['psnr']:.2f} ({results[s]['bicubic_psnr']:.2f})" for s in TEST_SETS]
        degraded = [results[k] for k in DEGRADED_SETS if k in results]
        mean = (f"{np.mean([r['psnr'] for r in degraded]):.2f} ({np.mean([r['bicubic_psnr'] for r in degraded]):.2f})"
                if degraded else "-")
        kind = "real photos and video" if entry.inputs == "real" else "clean downscales"
        lines.append(f"| `{entry.name}` | {kind} | x{meta['scale']} M{meta['num_conv']}C{meta['num_feat']} | "
                     + " | ".join(cells) + f" | {mean} |")
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- models -->", "<!-- /models -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        with atomic_write(readme) as tmp:
            tmp.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])


def write_model_zoo(rows: list[tuple[ZooEntry, dict[str, str], dict[str, Any]]]) -> None:
    lines = ["# Model zoo", "",
             "Bundled with repsr (`repsr models` lists them; `repsr upscale --model NAME`). Every number below is "
             "written by `python scripts/model_zoo.py`, which trains each model with its preset, evaluates it and "
             "bundles it. PSNR/SSIM: Y channel, border crop = scale, BasicSR protocol (`repsr eval`), LR images by "
             "MATLAB bicubic downscaling of the test sets' HR images, and for the degraded sets that LR degraded "
             "further by a named, seeded degradation (`repsr eval --degradation`). Two kinds of model:", "",
             *(f"- **{kind}**: {text}" for kind, text in INPUTS.items()), "",
             "Why the bicubic recipes (block, learning rate, LR patch and batch, compared over seeds at equal "
             "iterations and at equal CPU time): [results/studies/x4_m4c16/study.md](results/studies/x4_m4c16/study.md)"
             ". Why the real-world recipe: [results/studies/x4_real_recipe](results/studies/x4_real_recipe/ablation.md)"
             "; "
             "what the two kinds do to real photos: [docs/real_world.md](docs/real_world.md). Why M4C16 and not a "
             "larger plain size (measured against the published quality of each size): "
             "[docs/frontier.md](docs/frontier.md#the-bundled-bicubic-models-stay-at-m4c16).", ""]
    all_results = {entry.name: json.loads(meta["results"]) for entry, meta, _ in rows}
    for entry, meta, record in rows:
        name, results = entry.name, all_results[entry.name]
        size = f"M{meta['num_conv']}C{meta['num_feat']}"
        scale = int(meta["scale"])
        version = meta.get("repsr_version", __version__)
        published = PUBLISHED.get(scale, {}) if entry.inputs == "clean" else {}
        lines += [f"## {name}", "",
                  f"{meta['description']}. SRVGGNetCompact {size}, x{scale}, trained through "
                  f"{record.get('trained_as', '?')}, then merged.", "",
                  f"- for: {INPUTS[entry.inputs]}",
                  f"- config: `src/repsr/presets/{entry.preset}.yml` (`repsr train {entry.preset}`), "
                  f"{meta['iterations']} iterations",
                  *([f"- recipe: {record['recipe']}"] if "recipe" in record else []),
                  f"- training data: {meta['train_data']}",
                  f"- trained on: {meta['trained_on']} ({meta['date']}, repsr {version})", ""]
        baseline = all_results.get(entry.baseline) if entry.baseline else None
        head = (f"| set | PSNR / SSIM | bicubic | gain | {PUBLISHED_LABEL} |" if published else
                f"| set | PSNR / SSIM | bicubic | gain | {entry.baseline} |" if baseline else
                "| set | PSNR / SSIM | bicubic | gain |")
        lines += ["On clean bicubic LR:", "", head, "|---" * (head.count("|") - 1) + "|"]
        for test_set in TEST_SETS:
            r = results[test_set]
            extra = ""
            if published:
                extra = f" {published[test_set]:.2f} ({r['psnr'] - published[test_set]:+.2f} dB) |"
            elif baseline:
                extra = f" {_cell(baseline[test_set])} ({r['psnr'] - baseline[test_set]['psnr']:+.2f} dB) |"
            lines.append(f"| {test_set} | {_cell(r)} | {r['bicubic_psnr']:.2f} / {r['bicubic_ssim']:.4f} | "
                         f"{r['psnr'] - r['bicubic_psnr']:+.2f} dB / {r['ssim'] - r['bicubic_ssim']:+.4f} |{extra}")
        lines.append("")
        lines += degraded_lines(entry, results, baseline)
        curve = record.get("curve", [])
        if curve:
            sets = [k for k in curve[-1] if k != "iteration"]
            svg = psnr_plot_svg([(s, [(c["iteration"], c[s]) for c in curve if s in c]) for s in sets], "EMA",
                                [record["switch"]] if record.get("switch") else None)
            with atomic_write(RECORDS / f"{name}_psnr.svg") as tmp:
                tmp.write_text(svg)
            switch_note = " (dashed: the BN switch)" if record.get("switch") else ""
            lines += [f"Validation PSNR of the EMA weights during training{switch_note}: "
                      f"![curve](results/model_zoo/{name}_psnr.svg)", ""]
        if entry.inputs == "clean":
            lines += budget_lines(name, scale, record)
    with atomic_write(ROOT / "MODEL_ZOO.md") as tmp:
        tmp.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
