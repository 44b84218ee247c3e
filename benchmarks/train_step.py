"""Cost of one training iteration (forward + backward + Adam step), measured side by side in one run:

- batch-statistics phase: the straightforward two-path module vs the online merge (BN statistics
  from the input's patch moments, then one conv per block; see repsr.archs.patch_moments);
- population phase: the branches vs the online-merged kernel (one conv per block);
- the plain network of the deploy architecture, the floor.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from _results import record, seconds_in_turns

from repsr import RepSRNet, set_bn_phase
from repsr.archs import ReparamBlock, RepSRBlock


def iteration_seconds(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, rounds: int
                      ) -> dict[str, float]:
    """Median seconds per training iteration (forward, backward, fused Adam) of each model, in turns
    of 3 iterations after one warm-up round (see seconds_in_turns)."""
    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        model.train()
        loss = F.l1_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    runs = {name: partial(step, model, torch.optim.Adam(model.parameters(), lr=1e-4, fused=True))
            for name, model in models.items()}
    return seconds_in_turns(runs, rounds, per_turn=3, warmup_rounds=1, cuda=x.is_cuda)


def configure(model: RepSRNet, online: bool) -> RepSRNet:
    for m in model.modules():
        if isinstance(m, ReparamBlock):
            m.online_merge = online
        if isinstance(m, RepSRBlock):
            m.batch_merge_min_channels = 1  # measure the batch-phase merge at every width
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, data = [], {}
    for scale, blocks, feat, batch, patch in ((2, 4, 16, 16, 32), (2, 10, 32, 16, 32), (4, 16, 64, 16, 32)):
        torch.manual_seed(0)
        x = torch.rand(batch, 3, patch, patch, device=device)
        y = torch.rand(batch, 3, patch * scale, patch * scale, device=device)
        sizes = dict(upscale=scale, num_feat=feat, num_block=blocks)
        base = RepSRNet(**sizes).to(device)
        cases = {
            "batch phase, two-path module": (configure(base, False), "batch"),
            "batch phase, online merge (patch moments)": (configure(RepSRNet(**sizes).to(device), True),
                                                          "batch"),
            "population phase, branches": (configure(RepSRNet(**sizes).to(device), False), "population"),
            "population phase, online merge": (configure(RepSRNet(**sizes).to(device), True),
                                               "population"),
            "plain (deploy architecture)": (RepSRNet(**sizes, block="plain").to(device), None),
        }
        size = f"x{scale} M{blocks}C{feat}, batch {batch}, LR patch {patch}"
        for model, phase in cases.values():
            if phase:
                set_bn_phase(model, phase)
        times = iteration_seconds({name: model for name, (model, _) in cases.items()}, x, y, args.rounds)
        plain = times["plain (deploy architecture)"]
        data[size] = times
        rows += [f"| {size} | {name} | {t * 1e3:.1f} | {1 / t:.2f} | {t / plain:.2f}x |" for name, t in times.items()]
        rows.append(f"| {size} | **batch phase: online merge vs two-path module** | | | **"
                    f"{times['batch phase, two-path module'] / times['batch phase, online merge (patch moments)']:.2f}x"
                    " faster** |")
    table = (f"One training iteration (forward, backward, Adam) on {device}: the variants of a network take "
             f"{args.rounds} turns of 3 iterations each, the last 2 timed; median. Fused Adam as in `repsr train`.\n\n"
             "The batch-phase online merge is measured here at every width; by default RepSR blocks use it from "
             "32 channels up (`RepSRBlock.batch_merge_min_channels`) and run the two-path module below.\n\n"
             "| network | variant | ms | it/s | vs plain |\n|---|---|---|---|---|\n" + "\n".join(rows))
    record("train_step", table, data)


if __name__ == "__main__":
    main()
