"""Bicubic baselines on Set5/Set14/B100 against the literature's MATLAB values -> results/bicubic_baselines.md.

Usage: python scripts/bicubic_baselines.py [DATASETS_ROOT]   (default: ../shared/datasets)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from repsr.data import HRFolder, default_cache_dir
from repsr.evaluate import evaluate_dataset

LITERATURE = {  # PSNR / SSIM, Y channel, crop = scale (VDSR/EDSR tables)
    "Set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
    "Set14": {2: (30.24, 0.8688), 3: (27.55, 0.7742), 4: (26.00, 0.7027)},
    "B100": {2: (29.56, 0.8431), 3: (27.21, 0.7385), 4: (25.96, 0.6675)},
}


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parents[1] / ".." / "shared" / "datasets")
    rows, results = [], []
    for name, refs in LITERATURE.items():
        for scale, (ref_psnr, ref_ssim) in refs.items():
            ds = HRFolder(root / name, scale, default_cache_dir())
            basic = evaluate_dataset("bicubic", ds, progress=False)
            matlab = evaluate_dataset("bicubic", ds, progress=False, round_y=True)
            ours = {"basicsr": (basic["psnr"], basic["ssim"]), "matlab_round_y": (matlab["psnr"], matlab["ssim"])}
            results.append({"dataset": name, "scale": scale, "literature": [ref_psnr, ref_ssim], **ours})
            cells = [f"{ref_psnr:.2f} / {ref_ssim:.4f}"]
            for p, s in ours.values():
                cells += [f"{p:.2f} / {s:.4f}", f"{p - ref_psnr:+.3f} / {s - ref_ssim:+.4f}"]
            rows.append(f"| {name} | x{scale} | " + " | ".join(cells) + " |")
    text = """# Bicubic baselines

Produced by `python scripts/bicubic_baselines.py [DATASETS_ROOT]` (default `../shared/datasets`: Set5, Set14, B100 HR
images; LR made by repsr's MATLAB-bicubic downscaling of the modcropped HR; bicubic upscaling back; PSNR/SSIM on
the Y channel with a border crop equal to the scale; Set14's grayscale `bridge` on its gray values).

Two Y conventions: **BasicSR** (repsr's default: Y not rounded) and **MATLAB** (`--round-y`: Y rounded to integers,
as MATLAB's `rgb2ycbcr` does on uint8 images). The literature's values come from MATLAB scripts; the rounded
variant matches them a little more closely in SSIM (BasicSR's unrounded Y gives SSIM about +0.0005 higher).

| set | scale | literature (MATLAB) | repsr, BasicSR Y | difference | repsr, MATLAB Y (`--round-y`) | difference |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    out = Path(__file__).parents[1] / "results"
    (out / "bicubic_baselines.md").write_text(text)
    (out / "bicubic_baselines.json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
