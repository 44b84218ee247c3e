"""Cost of one training iteration (forward + backward + Adam step), measured side by side in one run:

- batch-statistics phase: the straightforward two-path module vs the online merge (BN statistics
  from the input's patch moments, then one conv per block; see repsr.patch_moments);
- population phase: the branches vs the online-merged kernel (one conv per block);
- the plain network of the deploy architecture, the floor.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from _results import record

from repsr import RepSRNet, set_bn_phase
from repsr.blocks import ReparamBlock


def iteration_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeat: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for i in range(repeat + 3):
        start = time.perf_counter()
        loss = F.l1_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def configure(model: RepSRNet, online: bool) -> RepSRNet:
    for m in model.modules():
        if isinstance(m, ReparamBlock):
            m.online_merge = online
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, data = [], {}
    for scale, blocks, feat, batch, patch in ((2, 4, 16, 16, 32), (4, 16, 64, 16, 32)):
        torch.manual_seed(0)
        x = torch.rand(batch, 3, patch, patch, device=device)
        y = torch.rand(batch, 3, patch * scale, patch * scale, device=device)
        base = RepSRNet(scale, feat, blocks).to(device)
        cases = {
            "batch phase, two-path module": (configure(base, False), "batch"),
            "batch phase, online merge (patch moments)": (configure(RepSRNet(scale, feat, blocks).to(device), True),
                                                          "batch"),
            "population phase, branches": (configure(RepSRNet(scale, feat, blocks).to(device), False), "population"),
            "population phase, online merge": (configure(RepSRNet(scale, feat, blocks).to(device), True),
                                               "population"),
            "plain (deploy architecture)": (RepSRNet(scale, feat, blocks, block="plain").to(device), None),
        }
        size = f"x{scale} M{blocks}C{feat}, batch {batch}, LR patch {patch}"
        times = {}
        for name, (model, phase) in cases.items():
            if phase:
                set_bn_phase(model, phase)
            times[name] = iteration_seconds(model, x, y, args.repeat)
        plain = times["plain (deploy architecture)"]
        data[size] = times
        rows += [f"| {size} | {name} | {t * 1e3:.1f} | {t / plain:.2f}x |" for name, t in times.items()]
        rows.append(f"| {size} | **batch phase: online merge vs two-path module** | | **"
                    f"{times['batch phase, two-path module'] / times['batch phase, online merge (patch moments)']:.2f}x"
                    " faster** |")
    table = (f"One training iteration (forward, backward, Adam) on {device}, median of {args.repeat}.\n\n"
             "| network | variant | ms | vs plain |\n|---|---|---|---|\n" + "\n".join(rows))
    record("train_step", table, data)


if __name__ == "__main__":
    main()
