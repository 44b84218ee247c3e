"""The study report: ablation.md (tables, verdicts, costs, the curve plot) and ablation.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..fileio import atomic_write
from ..plots import psnr_plot_svg
from .record import RunRecord
from .spec import AblationSpec
from .statistics import summarize


def delta_cell(d: dict[str, Any]) -> str:
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
                cells.append(delta_cell(d))
        gain = r.get("last_quarter_gain")
        cells.append("-" if gain is None else f"{gain:+.3f} dB")
        cells.append(f"{r['train_it_per_s']:.1f}")
        cells.append(f"{r['iterations'] / max(r['train_it_per_s'], 1e-9) / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_deltas(runs: list[RunRecord], name: str, against: str, test_sets: list[str]) -> list[dict[str, Any]] | None:
    """``name``'s differences from ``against`` per test set, paired by seed, with their verdicts; None unless
    both have finished runs of a common seed."""
    row = summarize(runs, [name], against, test_sets)
    if not row or not all("delta" in row[0]["test"][s] for s in test_sets):
        return None
    return [row[0]["test"][s]["delta"] for s in test_sets]


def pairs_table(runs: list[RunRecord], pairs: list[list[str]], labels: dict[str, str],
                test_sets: list[str]) -> str:
    """Paired differences for the spec's ``pairs``, called as against the reference."""
    lines = ["| variant | against | " + " | ".join(test_sets) + " |", "|---|---|" + "---|" * len(test_sets)]
    for name, against in pairs:
        deltas = paired_deltas(runs, name, against, test_sets)
        if deltas is None:
            continue
        cells = [delta_cell(d) for d in deltas]
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


def mean_curve(runs: list[RunRecord], key: str) -> list[tuple[int, float]]:
    """Validation PSNR averaged over the seeds at the iterations every seed validated."""
    per_seed = [{h["iteration"]: h[key] for h in r.history if key in h} for r in runs]
    common = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
    return [(it, float(np.mean([p[it] for p in per_seed]))) for it in common]


def _curve_key(config: Config) -> str:
    if not config.data.val.paths:
        return ""
    which = "ema" if config.train.ema_decay > 0 else "raw"
    return f"{which}/{Path(config.data.val.paths[0]).name}"


def write_report(spec: AblationSpec, spec_path: Path, out: Path, runs: list[RunRecord], config: Config,
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
    series = [(r["label"], mean_curve([x for x in runs if x.name == r["name"]], key)) for r in rows] if key else []
    svg = psnr_plot_svg(series, key + " (mean over seeds)",
                        [r["bn_switch"] for r in rows if r["bn_switch"] is not None and r["has_bn"]])
    if svg:
        lines += [f"Validation PSNR ({key}, mean over seeds) over training; dashed: the BN switch. "
                  "![plot](ablation_psnr.svg)", ""]
        with atomic_write(out / "ablation_psnr.svg") as tmp:
            tmp.write_text(svg)
    lines += extra or []
    with atomic_write(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps({"reference": reference, "seeds": seeds, "summary": rows,
                                   "runs": [dataclasses.asdict(r) for r in runs]}, indent=2) + "\n")
    text = "\n".join(lines)
    with atomic_write(out / "ablation.md") as tmp:
        tmp.write_text(text)
    return text
