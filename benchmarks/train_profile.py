"""Where a CPU training iteration of x4 M4C16 goes, and what torch.compile does to it.

For RepSR in both BN phases and the plain network (batch 16, LR patch 32, fused Adam, as the
studies train): the share of one iteration spent in convolutions (forward and backward) against
everything else (torch.profiler, 10 iterations), the multiply-adds per LR pixel of the convs that
run, and iterations per second of eager against ``torch.compile`` (``train.compile``), in turns.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from _results import record, seconds_in_turns
from torch.profiler import ProfilerActivity, profile

from repsr import RepSRNet, reparameterize_model, set_bn_phase
from repsr.archs import branch_forward
from repsr.speed import conv_flops

CONV_OPS = ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution", "aten::conv2d",
            "aten::convolution", "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward")


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, compiled: bool):
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def step() -> None:
        loss = F.l1_loss(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def conv_share(step) -> float:
    """Fraction of the profiled self CPU time spent in convolution kernels (forward and backward)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in CONV_OPS) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = torch.rand(16, 3, 32, 32), torch.rand(16, 3, 128, 128)
    cases = {"RepSR, batch phase": ("repsr", "batch"), "RepSR, population phase": ("repsr", "population"),
             "plain": ("plain", None)}
    models, steps, shares, macs = {}, {}, {}, {}
    for name, (block, phase) in cases.items():
        for compiled in (False, True):
            model = RepSRNet(upscale=4, num_feat=16, num_block=4, block=block).train()
            if phase:
                set_bn_phase(model, phase)
            models[name] = model
            step = make_step(model, x, y, compiled)
            for _ in range(3):  # warm-up (and compilation)
                step()
            steps[f"{name}, {'compiled' if compiled else 'eager'}"] = step
        shares[name] = conv_share(steps[f"{name}, eager"])
        if phase == "batch":  # the paths run (below 32 channels): count their convs
            with branch_forward(model):
                macs[name] = conv_flops(model, x[:1]) / 2 / (32 * 32)
        else:  # one conv per block: the deploy network's convs
            macs[name] = conv_flops(reparameterize_model(model), x[:1]) / 2 / 32**2
    times = seconds_in_turns(steps, args.rounds, per_turn=3, warmup_rounds=1)
    plain = times["plain, eager"]
    rows = []
    for name in cases:
        eager, compiled = times[f"{name}, eager"], times[f"{name}, compiled"]
        rows.append(f"| {name} | {eager * 1e3:.1f} | {1 / eager:.1f} | {eager / plain:.2f}x | {shares[name]:.0%} | "
                    f"{macs[name]:,.0f} | {compiled * 1e3:.1f} | {eager / compiled:.2f}x |")
    table = ("x4 M4C16, batch 16, LR patch 32, fused Adam, CPU. One training iteration (forward, backward, step): "
             f"variants in {args.rounds} turns of 3 iterations, the last 2 timed, median. Conv share: "
             "torch.profiler self time in convolution kernels (forward + backward) over all ops, 10 iterations. "
             "MACs: multiply-adds per LR pixel of the forward's convs as they run (RepSR's batch phase runs its "
             "paths below 32 channels; the population phase runs one merged conv per block).\n\n"
             "| network | eager ms | it/s | vs plain | conv share | conv MACs/px | torch.compile ms "
             "| compile speed-up |\n"
             "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print(table)
    record("train_profile", table, {"seconds": times, "conv_share": shares, "macs_per_px": macs})


if __name__ == "__main__":
    main()
