"""Peak memory and time of upscaling a 4000x3000 image x4 with the default model, by tile size.

Each case runs in a fresh process and reports its peak resident memory (ru_maxrss), so cases do not
see each other's allocations. The input (36 MB) and the 16000x12000 output (576 MB as uint8, 2.3 GB
as the float32 buffer the tiles are written into) are needed whatever the tiling; what the tile size
bounds is the network's activations.
"""

from __future__ import annotations

import json
import subprocess
import sys

from _results import record

CHILD = r"""
import json, resource, sys, time
import numpy as np
import repsr
tile = None if sys.argv[1] == "default" else int(sys.argv[1])  # 0: one pass
model = repsr.load_model("repsr-x4-m4c16")
img = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
out = repsr.upscale(img, model, tile=tile)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tile": tile, "seconds": seconds, "peak_mib": peak / 1024,
                  "before_mib": base / 1024, "shape": list(out.shape)}))
"""


def main() -> None:
    rows, results = [], []
    for tile in ("256", "default", "512", "1024", "0"):
        done = subprocess.run([sys.executable, "-c", CHILD, tile], capture_output=True, text=True)
        if done.returncode != 0:
            rows.append(f"| {tile} | failed: {done.stderr.strip().splitlines()[-1][:80]} | | |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(r)
        rows.append(f"| {dict(default='default (320)', **{'0': 'untiled'}).get(tile, tile)} | {r['peak_mib']:.0f} | "
                    f"{r['peak_mib'] - r['before_mib']:.0f} | {r['seconds']:.1f} |")
    table = ("`repsr.upscale` of a 4000x3000 uint8 RGB image with repsr-x4-m4c16 (output 16000x12000), CPU fp32.\n\n"
             "| tile (LR px) | peak RSS MiB | growth during upscale MiB | seconds |\n|---|---|---|---|\n"
             + "\n".join(rows))
    record("upscale_memory", table, {"results": results})


if __name__ == "__main__":
    main()
