"""Inference speed, measured side by side in one run:

- the merged (deploy) network vs the multi-branch training network (eval mode), per size;
- repsr's network in the runtime ``repsr upscale`` picks (the prepared PyTorch network on a channels_last
  tensor, or on the CPU OpenVINO/ncnn for wide networks when installed), and on the CPU in tiles of 320 LR
  pixels (``Upscaler.floats``; PyTorch's automatic tile for large images), vs spandrel's Compact model run
  eagerly in fp32 on the same weights and input (what chaiNNer/ComfyUI users run today), and vs onnxruntime on
  the exported ONNX graph;
- achieved GFLOP/s against the machine's fp32 GEMM ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from math import nan
from pathlib import Path

import torch
from _results import record, seconds_in_turns

from repsr import RepSRNet, reparameterize_model
from repsr.archs import branch_forward
from repsr.export import save_deploy
from repsr.inference import Upscaler
from repsr.runtimes import CPU_TILE
from repsr.speed import conv_flops, time_forward

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


GEMM_N = 2048


def gemm_runner(device: torch.device):
    """One fp32 2048^3 matrix product: its rate is the practical ceiling for convolutions here."""
    a, b = torch.rand(GEMM_N, GEMM_N, device=device), torch.rand(GEMM_N, GEMM_N, device=device)
    return lambda _x: a @ b


def onnxruntime_runner(deploy, tmp: Path):
    """A callable running the exported ONNX graph in onnxruntime (CPU), or None without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return None
    from repsr.export import export_onnx

    path = export_onnx(deploy, tmp / "bench.onnx", dynamic=True)
    options = onnxruntime.SessionOptions()
    # no busy-waiting threads after a run: they would steal the cores from the next measurement
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x.cpu().numpy()})


def spandrel_model(deploy, tmp: Path):
    try:
        from repsr.peers.spandrel_import import import_spandrel

        path = save_deploy(deploy, tmp / "bench.safetensors")
        return import_spandrel().ModelLoader().load_from_file(str(path)).model.eval()
    except ImportError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="16x64,10x32,4x16", help="comma-separated MxC (blocks x channels)")
    parser.add_argument("--scales", default="4,2")
    parser.add_argument("--outputs", default="720p,1080p", help="comma-separated output sizes: 720p, 1080p")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    rows, results = [], []
    tmp = Path(__file__).parent / "results"
    for size in args.sizes.split(","):
        blocks, feat = (int(v) for v in size.lower().split("x"))
        for scale in (int(s) for s in args.scales.split(",")):
            for output in args.outputs.split(","):
                out_h = {"720p": 720, "1080p": 1080}[output]
                x = torch.rand(1, 3, out_h // scale, out_h * 16 // 9 // scale, device=device)
                train = RepSRNet(upscale=scale, num_feat=feat, num_block=blocks).to(device).eval()
                deploy = reparameterize_model(train)
                with branch_forward(train):  # seconds to a minute per run: one run after one warm-up
                    t_train = time_forward(train, x, repeat=1, warmup=1)
                upscaler = Upscaler(deploy, device, tile=CPU_TILE)
                runner = upscaler.runner  # the network alone: PyTorch's module, or another runtime's float call
                fast = runner.net if runner.backend == "torch" else runner.floats
                runners = {"repsr": fast, "gemm": gemm_runner(device)}
                inputs = {"repsr": x.contiguous(memory_format=torch.channels_last), "gemm": x}
                if device.type == "cpu":  # cache-sized tiles, as `repsr upscale` runs large images on CPU
                    runners["tiled"] = upscaler.floats
                    inputs["tiled"] = x
                reference = spandrel_model(deploy.cpu(), tmp)
                if reference is not None:
                    runners["spandrel"], inputs["spandrel"] = reference.to(device), x
                run_ort = onnxruntime_runner(deploy.cpu(), tmp) if device.type == "cpu" else None
                if run_ort is not None:
                    runners["onnxruntime"], inputs["onnxruntime"] = run_ort, x
                with torch.inference_mode():
                    t = seconds_in_turns({name: partial(run, inputs[name]) for name, run in runners.items()},
                                         args.rounds, cuda=device.type == "cuda")
                t_deploy, t_spandrel, t_ort = t["repsr"], t.get("spandrel", nan), t.get("onnxruntime", nan)
                t_tiled = t.get("tiled", nan)
                ceiling = 2 * GEMM_N**3 / t["gemm"] / 1e9
                gflop = conv_flops(deploy, x) / 1e9
                r = {"size": f"M{blocks}C{feat}", "scale": scale, "output": output, "input": list(x.shape[2:]),
                     "train_s": t_train, "deploy_s": t_deploy, "spandrel_s": t_spandrel, "onnxruntime_s": t_ort,
                     "gflop": gflop,
                     "gflops": gflop / t_deploy, "ceiling_gflops": ceiling, "tiled_s": t_tiled}
                results.append(r)
                rows.append(f"| M{blocks}C{feat} x{scale} | {x.shape[2]}x{x.shape[3]} -> {output} | "
                            f"{t_train * 1e3:.0f} | {t_deploy * 1e3:.1f} | {t_spandrel * 1e3:.1f} | "
                            f"**{t_train / t_deploy:.2f}x** | {t_spandrel / t_deploy:.2f}x | {t_ort * 1e3:.1f} | "
                            f"{t_ort / t_deploy:.2f}x | {1 / t_deploy:.1f} | "
                            f"{gflop / t_deploy:.0f} / {ceiling:.0f} ({gflop / t_deploy / ceiling:.0%}) | "
                            f"{t_tiled * 1e3:.1f} ({gflop / t_tiled / ceiling:.0%}) |")
    (tmp / "bench.safetensors").unlink(missing_ok=True)
    (tmp / "bench.onnx").unlink(missing_ok=True)
    table = (f"Batch 1, fp32; device {device}. repsr, spandrel, onnxruntime and an fp32 {GEMM_N}^3 matrix product "
             f"(the ceiling) take {args.rounds} turns of 2 runs each, the second timed; median. So each row's "
             "ratios come from the same minutes. Training net: multi-branch, eval mode, branches run as such "
             "(one run). "
             "onnxruntime: CPU provider, default graph optimizations, on `repsr export --onnx`'s graph; "
             "'ort vs repsr' above 1 means repsr is faster. "
             f"Tiled: `Upscaler.floats` in tiles of {CPU_TILE} LR px, as `repsr upscale` runs large images on CPU; "
             "its fraction counts the untiled FLOPs (useful work).\n\n"
             "| network | input -> output | training net ms | repsr deploy ms | spandrel Compact ms | "
             "deploy vs training | repsr vs spandrel | onnxruntime ms | ort vs repsr | images/s | "
             "deploy / GEMM GFLOP/s (fraction) | tiled ms (fraction) |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    record("deploy_speedup", table, {"results": results})


if __name__ == "__main__":
    main()
