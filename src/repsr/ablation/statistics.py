"""Statistics over seeds: mean and spread per variant, differences paired by seed, and their verdicts."""

from __future__ import annotations

from typing import Any

import numpy as np

from .record import RunRecord


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


def last_quarter_gain(history: list[dict[str, float]], key: str) -> float | None:
    """Validation PSNR gained over the last quarter of training (final minus the value at 75%)."""
    points = [(h["iteration"], h[key]) for h in history if key in h]
    if len(points) < 2:
        return None
    end = points[-1][0]
    before = [y for x, y in points if x <= 0.75 * end]
    return points[-1][1] - before[-1] if before else None


def summarize(runs: list[RunRecord], variants: list[str], reference: str, test_sets: list[str],
              curve_key: str = "", labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Per variant: mean +- std over seeds per test set, and the difference from ``reference`` paired by seed.
    ``labels`` (the spec's) win over those recorded in the runs, which another spec may have trained. The rows
    are what ablation.json's ``summary`` holds (plain JSON: other tools read it)."""
    by_variant: dict[str, dict[int, RunRecord]] = {}
    for r in runs:
        by_variant.setdefault(r.name, {})[r.seed] = r
    ref = by_variant.get(reference, {})
    rows = []
    for name in variants:
        seeds = by_variant.get(name)
        if not seeds:
            continue
        first = next(iter(seeds.values()))
        label = (labels or {}).get(name) or first.label
        row: dict[str, Any] = {"name": name, "label": label, "block": first.block,
                               "bn_switch": first.bn_switch, "has_bn": first.has_bn,
                               "iterations": first.iterations, "seeds": sorted(seeds),
                               "train_params": first.train_params, "deploy_params": first.deploy_params,
                               "train_flops_per_px": first.train_flops_per_px,
                               "deploy_flops_per_px": first.deploy_flops_per_px,
                               "train_it_per_s": float(np.mean([r.train_it_per_s for r in seeds.values()])),
                               "test": {}}
        for s in test_sets:
            psnrs = [seeds[k].test[s]["psnr"] for k in sorted(seeds)]
            ssims = [seeds[k].test[s]["ssim"] for k in sorted(seeds)]
            mean, std = _mean_std(psnrs)
            cell: dict[str, Any] = {"psnr": mean, "psnr_std": std, "ssim": _mean_std(ssims)[0], "per_seed": psnrs}
            paired = sorted(set(seeds) & set(ref))
            if name != reference and paired:
                deltas = [seeds[k].test[s]["psnr"] - ref[k].test[s]["psnr"] for k in paired]
                ref_std = _mean_std([ref[k].test[s]["psnr"] for k in paired])[1]
                d_mean, d_std = _mean_std(deltas)
                cell["delta"] = {"mean": d_mean, "std": d_std, "per_seed": deltas, "seeds": paired,
                                 "verdict": verdict(deltas, max(std, ref_std))}
            row["test"][s] = cell
        if curve_key:
            gains = [g for r in seeds.values() if (g := last_quarter_gain(r.history, curve_key)) is not None]
            row["last_quarter_gain"] = float(np.mean(gains)) if gains else None
        rows.append(row)
    return rows
