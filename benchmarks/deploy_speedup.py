"""Inference speed, measured side by side in one run:

- the merged (deploy) network vs the multi-branch training network (eval mode), per size;
- repsr's inference path vs spandrel's Compact model run eagerly in fp32 on the same weights and
  input (what chaiNNer/ComfyUI users run today);
- achieved GFLOP/s against the machine's fp32 GEMM ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from _results import record

from repsr import RepSRNet, reparameterize_model
from repsr.blocks import branch_forward
from repsr.export import save_deploy
from repsr.inference import prepare
from repsr.speed import conv_flops, time_forward

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


def gemm_ceiling(device: torch.device, n: int = 2048, repeat: int = 10) -> float:
    """fp32 matrix-multiply GFLOP/s: the practical ceiling for convolutions on this device."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeat / (time.perf_counter() - start) / 1e9


def spandrel_model(deploy, tmp: Path):
    try:
        from spandrel_compat import import_spandrel

        path = save_deploy(deploy, tmp / "bench.safetensors")
        return import_spandrel().ModelLoader().load_from_file(str(path)).model.eval()
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="16x64,10x32,4x16", help="comma-separated MxC (blocks x channels)")
    parser.add_argument("--scales", default="4,2")
    parser.add_argument("--outputs", default="720p", help="comma-separated output sizes: 720p, 1080p")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    ceiling = gemm_ceiling(device)
    rows, results = [], []
    tmp = Path(__file__).parent / "results"
    for size in args.sizes.split(","):
        blocks, feat = (int(v) for v in size.lower().split("x"))
        for scale in (int(s) for s in args.scales.split(",")):
            for output in args.outputs.split(","):
                out_h = {"720p": 720, "1080p": 1080}[output]
                x = torch.rand(1, 3, out_h // scale, out_h * 16 // 9 // scale, device=device)
                train = RepSRNet(scale, feat, blocks).to(device).eval()
                deploy = reparameterize_model(train)
                with branch_forward(train):
                    t_train = time_forward(train, x, args.repeat)
                fast = prepare(deploy, device)
                t_deploy = time_forward(fast, x.contiguous(memory_format=torch.channels_last), args.repeat)
                reference = spandrel_model(deploy.cpu(), tmp)
                t_spandrel = float("nan")
                if reference is not None:
                    t_spandrel = time_forward(reference.to(device), x, args.repeat)
                gflop = conv_flops(deploy, x) / 1e9
                r = {"size": f"M{blocks}C{feat}", "scale": scale, "output": output, "input": list(x.shape[2:]),
                     "train_s": t_train, "deploy_s": t_deploy, "spandrel_s": t_spandrel, "gflop": gflop,
                     "gflops": gflop / t_deploy, "ceiling_gflops": ceiling}
                results.append(r)
                rows.append(f"| M{blocks}C{feat} x{scale} | {x.shape[2]}x{x.shape[3]} -> {output} | "
                            f"{t_train * 1e3:.0f} | {t_deploy * 1e3:.1f} | {t_spandrel * 1e3:.1f} | "
                            f"**{t_train / t_deploy:.2f}x** | {t_spandrel / t_deploy:.2f}x | {1 / t_deploy:.1f} | "
                            f"{gflop / t_deploy:.0f} ({gflop / t_deploy / ceiling:.0%}) |")
    (tmp / "bench.safetensors").unlink(missing_ok=True)
    table = (f"Batch 1, fp32, median of {args.repeat}; device {device}; fp32 GEMM ceiling measured in this run: "
             f"{ceiling:.0f} GFLOP/s. Training net: multi-branch, eval mode, branches run as such.\n\n"
             "| network | input -> output | training net ms | repsr deploy ms | spandrel Compact ms | "
             "deploy vs training | repsr vs spandrel | images/s | deploy GFLOP/s (of ceiling) |\n"
             "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    record("deploy_speedup", table, {"ceiling_gflops": ceiling, "results": results})


if __name__ == "__main__":
    main()
