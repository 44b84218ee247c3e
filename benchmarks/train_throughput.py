"""Training iterations per second: DataLoader workers vs the on-device input pipeline, same run.

Synthetic images (no dataset needed); RepSR x2 M4C16, LR patch 32, batch 16 (the demo preset's shape).
The per-iteration cost is (time of N+100 iterations - time of N) / 100, so start-up is excluded.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import record

from repsr.config import load_config
from repsr.demo import synthetic_image
from repsr.images import write_image
from repsr.training import Trainer


def seconds_for(root: Path, iters: int, **train_data) -> float:
    config = load_config({
        "name": "bench", "scale": 2, "data_root": str(root), "device": "auto",
        "network": {"num_feat": 16, "num_block": 4},
        "data": {"train": {"paths": ["imgs"], "lr_patch": 32, "batch_size": 16, "repeat": 50,
                           "cache_dir": str(root / "cache"), **train_data}, "val": {"paths": []}},
        "train": {"total_iter": iters, "bn": {"switch": None}},
        "checkpoint": {"every": 100000}, "logger": {"print_every": 100000, "tensorboard": False, "progress": False},
    })
    out = Path(tempfile.mkdtemp(dir=root))
    trainer = Trainer(config, out)
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "imgs").mkdir()
        rng = np.random.default_rng(0)
        for i in range(32):
            write_image(root / "imgs" / f"{i}.png", synthetic_image(rng, 160))
        rows, data = [], {}
        device = "cuda" if torch.cuda.is_available() else "cpu"
        for label, options in (("DataLoader, 0 workers", {"num_workers": 0}),
                               ("DataLoader, 2 workers", {"num_workers": 2}),
                               (f"on-device sampling ({device})", {"on_device": True, "num_workers": 0})):
            per_iter = (seconds_for(root, 120, **options) - seconds_for(root, 20, **options)) / 100
            data[label] = 1 / per_iter
            rows.append(f"| {label} | {1 / per_iter:.2f} |")
    table = ("RepSR x2 M4C16 training iterations/s (batch 16, LR patch 32, batch-statistics BN), "
             f"on {device}.\n\n| input pipeline | it/s |\n|---|---|\n" + "\n".join(rows))
    record("train_throughput", table, {"it_per_s": data})


if __name__ == "__main__":
    main()
