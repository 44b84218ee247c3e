"""Before and after the runner refactor (one runtime protocol; video frames through the image path's runner):
`repsr.upscale`-style image upscaling end to end and video frames through the network, timed in turns.

The code before is a git worktree of ``--before`` (default: the last commit before the refactor); each side runs
in its own subprocess, and the sides take turns, round after round, so that both see the same machine state. In
a round each side loads its code once (outside the timing) and times ``--repeats`` calls; the median per side is
reported, and the ratio of the medians per round with its range.

    python benchmarks/runner_refactor.py [--before 4123f1f] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import record

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "4123f1f"  # the last commit before the runner refactor (repsr.backends, prepare, FrameUpscaler)

# What each side times, in its own process: the same image and frames, the bundled M4C16 x4 model, fp32, CPU.
CHILD = r"""
import json, statistics, sys, time
import numpy as np, torch
after = sys.argv[1] == "after"
repeats = int(sys.argv[2])
from repsr.loading import load_model
model = load_model("repsr-x4-m4c16")
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (480, 854, 3), dtype=np.uint8)
frames = rng.integers(0, 256, (4, 480, 854, 3), dtype=np.uint8)
if after:
    from repsr.inference import Upscaler
    upscaler = Upscaler(model, "cpu")
    run_image = lambda: upscaler(image)
    run_frames = lambda: upscaler.frames(frames)
else:
    from repsr.inference import prepare, upscale
    from repsr.video import FrameUpscaler
    net = prepare(model, torch.device("cpu"))
    frame_upscaler = FrameUpscaler(net)
    run_image = lambda: upscale(image, net, prepared=True)
    run_frames = lambda: frame_upscaler(frames)
out = {}
for name, run in (("image", run_image), ("frames", run_frames)):
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def side(code: Path, name: str, repeats: int) -> dict[str, float]:
    env = {"PYTHONPATH": str(code / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", CHILD, name, str(repeats)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="one round of one repeat; printed, not recorded")
    args = parser.parse_args()
    rounds, repeats = (1, 1) if args.smoke else (args.rounds, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
            for _ in range(rounds):
                runs["before"].append(side(before, "before", repeats))
                runs["after"].append(side(ROOT, "after", repeats))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=ROOT, capture_output=True)
    rows, data = [], {"before": args.before, "runs": runs}
    for what, label, per in (("image", "`repsr.upscale` of a 480x854 uint8 image (end to end)", 1),
                             ("frames", "video frames of 480x854 through the network, batches of 4 (per frame)", 4)):
        b = statistics.median(r[what] for r in runs["before"])
        a = statistics.median(r[what] for r in runs["after"])
        ratios = [x[what] / y[what] for x, y in zip(runs["before"], runs["after"], strict=True)]
        rows.append(f"| {label} | {b / per * 1e3:.0f} | {a / per * 1e3:.0f} | **{b / a:.2f}x** "
                    f"({min(ratios):.2f}-{max(ratios):.2f}) |")
        data[what] = {"before_s": b, "after_s": a, "speedup": b / a, "per_round": ratios}
    table = (f"repsr-x4-m4c16, fp32, CPU (PyTorch). Before: commit `{args.before}` (`prepare` + `upscale(prepared="
             "True)`, video through `FrameUpscaler`); after: `Upscaler` and `Upscaler.frames` on one runner. Each side "
             f"in its own process, the sides in turns, {rounds} rounds of {repeats} calls; median.\n\n"
             "| what | before ms | after ms | after vs before (range over rounds) |\n|---|---|---|---|\n"
             + "\n".join(rows))
    record("runner_refactor", table, data, smoke=args.smoke)


if __name__ == "__main__":
    main()
