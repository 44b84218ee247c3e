"""Speed of `repsr.upscale`'s tiling on CPU: `Upscaler.floats` in one pass over the image, in tiles of 320 LR
pixels, and with the default tile (`Runner.auto_tile`: PyTorch tiles only when the widest activation of one pass
exceeds CPU_TILE_ABOVE_BYTES; OpenVINO and ncnn, which the automatic backend picks for wide networks when
installed, only past RUNTIME_TILE_ABOVE_BYTES, in tiles of RUNTIME_TILE).

Tiles overlap by the receptive radius, so they compute more; they win when their activations stay
in cache. The variants take turns on the same input (this CPU's speed drifts), medians reported.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from _results import record, seconds_in_turns

from repsr import RepSRNet, reparameterize_model
from repsr.inference import Upscaler
from repsr.runtimes import CPU_TILE

CASES = ((16, 64, 4, 180, 320), (16, 64, 2, 540, 960), (10, 32, 2, 360, 640), (10, 32, 2, 540, 960),
         (4, 16, 2, 540, 960), (4, 16, 4, 750, 1000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    tiles = (0, CPU_TILE, None)
    rows, data = [], []
    for blocks, feat, scale, h, w in CASES:
        torch.manual_seed(0)
        net = reparameterize_model(RepSRNet(upscale=scale, num_feat=feat, num_block=blocks).eval())
        upscalers = {t: Upscaler(net, device, tile=t) for t in tiles}  # the automatic backend, as `repsr upscale`
        x = torch.rand(1, 3, h, w)
        seconds = seconds_in_turns({str(t): partial(up.floats, x) for t, up in upscalers.items()}, args.rounds,
                                   per_turn=1, warmup_rounds=1)
        med = {t: seconds[str(t)] for t in tiles}
        auto = upscalers[None].runner.auto_tile(h, w)
        data.append({"size": f"M{blocks}C{feat}", "scale": scale, "input": [h, w], "auto_tile": auto,
                     "seconds": {str(t): s for t, s in med.items()}})
        rows.append(f"| M{blocks}C{feat} x{scale} | {h}x{w} | {med[0] * 1e3:.0f} | {med[CPU_TILE] * 1e3:.0f} "
                    f"({med[0] / med[CPU_TILE]:.2f}x) | {auto or 'one pass'} | {med[None] * 1e3:.0f} "
                    f"(**{med[0] / med[None]:.2f}x**) |")
    table = (f"`Upscaler.floats` on CPU, fp32, median of {args.rounds} turns; speed relative to one pass in "
             "brackets.\n\n"
             f"| network | LR input | one pass ms | tiles of {CPU_TILE} ms | default picks | default ms |\n"
             "|---|---|---|---|---|---|\n" + "\n".join(rows))
    record("tiling_speed", table, {"results": data})


if __name__ == "__main__":
    main()
