"""bf16 vs fp32 inference of the default model on the CPU: speed and the PSNR change on the test sets.

The bf16 path is worth keeping only where it is faster and costs <= 0.02 dB. Test sets come from
../shared/datasets when present, else the Set5 shipped with the tests.
"""

from __future__ import annotations

from pathlib import Path

import torch
from _results import record

from repsr import load_model
from repsr.data import HRFolder, default_cache_dir
from repsr.evaluate import evaluate_dataset
from repsr.inference import prepare
from repsr.speed import time_forward

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    shared = ROOT.parent / "shared" / "datasets"
    sets = [shared / s for s in ("Set5", "Set14", "B100")] if shared.is_dir() else [ROOT / "tests" / "data" / "Set5"]
    model = load_model("repsr-x4-m4c16")
    cpu = torch.device("cpu")
    x = torch.rand(1, 3, 180, 320).contiguous(memory_format=torch.channels_last)
    rows, data = [], {"sets": {}}
    speeds = {}
    for precision in ("fp32", "bf16"):
        prepared = prepare(model, cpu, precision)
        speeds[precision] = time_forward(prepared, x.to(prepared.body[0].weight.dtype), repeat=5)
    data["seconds"] = speeds
    for folder in sets:
        ds = HRFolder(folder, 4, default_cache_dir())
        r = {p: evaluate_dataset(prepare(model, cpu, p), ds, progress=False) for p in ("fp32", "bf16")}
        delta = r["bf16"]["psnr"] - r["fp32"]["psnr"]
        data["sets"][ds.name] = {p: [r[p]["psnr"], r[p]["ssim"]] for p in r}
        rows.append(f"| {ds.name} | {r['fp32']['psnr']:.3f} | {r['bf16']['psnr']:.3f} | {delta:+.3f} |")
    table = (f"repsr-x4-m4c16, CPU, 180x320 -> 720x1280: fp32 {speeds['fp32'] * 1e3:.1f} ms, bf16 "
             f"{speeds['bf16'] * 1e3:.1f} ms ({speeds['fp32'] / speeds['bf16']:.2f}x).\n\n"
             "| set | fp32 PSNR | bf16 PSNR | change (dB) |\n|---|---|---|---|\n" + "\n".join(rows))
    record("bf16_cpu", table, data)


if __name__ == "__main__":
    main()
