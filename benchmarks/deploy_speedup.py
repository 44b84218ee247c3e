"""Speed of the merged (deploy) network against the multi-branch training network, same run.

Both in eval mode, fp32, batch 1, 180x320 input (x4 -> 720x1280), on the CPU threads torch uses.
"""

from __future__ import annotations

import argparse

import torch
from _results import record

from repsr import RepSRNet, reparameterize_model
from repsr.speed import conv_flops, time_forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows, data = [], {"results": []}
    x = torch.rand(1, 3, 180, 320)
    for blocks, feat in ((16, 64), (4, 16)):
        train = RepSRNet(4, feat, blocks).eval()
        deploy = reparameterize_model(train)
        t_train = time_forward(train, x, args.repeat)
        t_deploy = time_forward(deploy, x, args.repeat)
        cl = deploy.to(memory_format=torch.channels_last)
        t_cl = time_forward(cl, x.to(memory_format=torch.channels_last), args.repeat)
        gflop = conv_flops(deploy, x) / 1e9
        best = min(t_deploy, t_cl)
        result = {"size": f"M{blocks}C{feat}", "scale": 4, "input": [180, 320], "train_s": t_train,
                  "deploy_s": t_deploy, "deploy_channels_last_s": t_cl, "deploy_gflop": gflop,
                  "speedup": t_train / best}
        data["results"].append(result)
        rows.append(f"| M{blocks}C{feat} x4 | {t_train * 1e3:.1f} | {t_deploy * 1e3:.1f} | {t_cl * 1e3:.1f} | "
                    f"{gflop / best:.0f} | **{t_train / best:.2f}x** |")
    table = ("Merged (deploy) vs training network, eval mode, fp32, batch 1, 180x320 -> 720x1280, median of "
             f"{args.repeat}.\n\n| network | training net ms | merged ms | merged, channels_last ms | "
             "merged GFLOP/s | speed-up |\n|---|---|---|---|---|---|\n" + "\n".join(rows))
    record("deploy_speedup", table, data)


if __name__ == "__main__":
    main()
