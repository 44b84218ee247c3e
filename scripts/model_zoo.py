"""Train the bundled models, evaluate them, bundle them and write MODEL_ZOO.md.

    python scripts/model_zoo.py [--data-root ../shared/datasets] [--runs runs/zoo] [--only NAME]

Each entry is trained with `repsr train <preset>` (resumed if its run folder has checkpoints, skipped
if it has finished), evaluated on Set5/Set14/B100 next to bicubic, and copied to
src/repsr/models/NAME.safetensors with its recipe and results in the file's metadata.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from repsr import __version__
from repsr.config import load_config
from repsr.data import HRFolder, default_cache_dir
from repsr.evaluate import evaluate_dataset
from repsr.export import save_deploy
from repsr.inference import prepare
from repsr.loading import load_deploy
from repsr.training import train

ROOT = Path(__file__).resolve().parents[1]
ZOO = [  # name, preset, description
    ("repsr-x4-m4c16", "zoo_x4_m4c16", "x4 RGB, the default model of `repsr upscale`"),
    ("repsr-x2-m4c16", "zoo_x2_m4c16", "x2 RGB"),
]
TEST_SETS = ("Set5", "Set14", "B100")


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
            meta = {"name": name, "description": description, "preset": preset,
                    "iterations": str(config.train.total_iter), "train_data": "T91 + BSD200 (291 images)",
                    "trained_on": f"{platform.processor() or platform.machine()}, CPU, {seconds} s",
                    "date": datetime.date.today().isoformat(), "results": json.dumps(results)}
            save_deploy(model, bundled, metadata=meta)
        _, meta = load_deploy(bundled)
        rows.append((name, preset, meta))
    write_model_zoo(rows)


def write_model_zoo(rows) -> None:
    lines = ["# Model zoo", "",
             "Bundled with repsr (`repsr models` lists them; `repsr upscale --model NAME`). Every number below is "
             "written by `python scripts/model_zoo.py`, which trains each model with its preset, evaluates it and "
             "bundles it. PSNR/SSIM: Y channel, border crop = scale, BasicSR protocol (`repsr eval`), LR images by "
             "MATLAB bicubic downscaling of the test sets' HR images.", ""]
    for name, preset, meta in rows:
        results = json.loads(meta["results"])
        size = f"M{meta['num_conv']}C{meta['num_feat']}"
        version = meta.get("repsr_version", __version__)
        lines += [f"## {name}", "",
                  f"{meta['description']}. SRVGGNetCompact {size}, x{meta['scale']}, trained as RepSR (RepSR blocks "
                  "with BN, switched to population statistics at 80% of training, EMA), then merged.", "",
                  f"- config: `src/repsr/presets/{preset}.yml` (`repsr train {preset}`), "
                  f"{meta['iterations']} iterations",
                  f"- training data: {meta['train_data']}",
                  f"- trained on: {meta['trained_on']} ({meta['date']}, repsr {version})",
                  "", "| set | PSNR / SSIM | bicubic | gain |", "|---|---|---|---|"]
        for test_set, r in results.items():
            lines.append(f"| {test_set} | {r['psnr']:.2f} / {r['ssim']:.4f} | {r['bicubic_psnr']:.2f} / "
                         f"{r['bicubic_ssim']:.4f} | {r['psnr'] - r['bicubic_psnr']:+.2f} dB / "
                         f"{r['ssim'] - r['bicubic_ssim']:+.4f} |")
        lines.append("")
    (ROOT / "MODEL_ZOO.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
