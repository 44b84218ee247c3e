"""Speed of `repsr.upscale`'s tiling on CPU: one pass over the image vs tiles of 256 and 320 LR pixels.

Tiles overlap by the receptive radius, so they compute more; they win when their activations stay
in cache. The variants take turns on the same input (this CPU's speed drifts), medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _results import record

from repsr import RepSRNet, reparameterize_model
from repsr.inference import CPU_TILE, prepare, run_tiled

CASES = ((16, 64, 2, 540, 960), (16, 64, 4, 500, 750), (4, 16, 4, 750, 1000), (4, 16, 2, 540, 960))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    tiles = (0, 256, CPU_TILE)
    rows, data = [], []
    for blocks, feat, scale, h, w in CASES:
        torch.manual_seed(0)
        net = prepare(reparameterize_model(RepSRNet(scale, feat, blocks).eval()), device)
        x = torch.rand(1, 3, h, w)
        times: dict[int, list[float]] = {t: [] for t in tiles}
        for r in range(args.rounds + 1):  # round 0 warms up
            for tile in tiles:
                start = time.perf_counter()
                run_tiled(net, x, scale, tile)
                if r:
                    times[tile].append(time.perf_counter() - start)
        med = {t: statistics.median(v) for t, v in times.items()}
        data.append({"size": f"M{blocks}C{feat}", "scale": scale, "input": [h, w],
                     "seconds": {str(t): s for t, s in med.items()}})
        rows.append(f"| M{blocks}C{feat} x{scale} | {h}x{w} | {med[0] * 1e3:.0f} | {med[256] * 1e3:.0f} | "
                    f"{med[CPU_TILE] * 1e3:.0f} | **{med[0] / med[CPU_TILE]:.2f}x** |")
    table = (f"`run_tiled` on CPU, fp32, median of {args.rounds} turns. Default tile on CPU: {CPU_TILE}.\n\n"
             f"| network | LR input | one pass ms | tile 256 ms | tile {CPU_TILE} ms | tile {CPU_TILE} vs one pass |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows))
    record("tiling_speed", table, {"results": data})


if __name__ == "__main__":
    main()
