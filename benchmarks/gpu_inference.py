"""GPU inference of the deploy networks against the card's own limits, prepared for one run.

For M4C16/M10C32/M16C64 at x4 to 1080p (270x480 input) and x2 to 1080p: fp32, fp32 with TF32 (what
PyTorch runs fp32 convolutions as by default on NVIDIA GPUs), fp16 and bf16, batch 1 and 8, channels_last,
eager and replayed as a CUDA graph; the network is the PyTorch module ``repsr.runtimes.make_runner`` prepares
(``backend="torch"``, its runner's ``net``). The floor per frame is the larger of FLOPs / (measured matrix rate
in that precision, under the same TF32 setting as the convolutions) and bytes moved / (measured copy
bandwidth), where bytes are each conv's input and output activations once. Writes the ``gpu_inference``
section of RESULTS.md. Without CUDA it stops with a message, unless ``--device cpu`` (a check of
the script itself on small inputs, fp32, batch 1; printed, not recorded).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from _results import record

from repsr import RepSRNet, reparameterize_model
from repsr.runtimes import make_runner
from repsr.speed import conv_flops, tf32, tf32_flags

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(run, device: torch.device, repeat: int = 20, warmup: int = 5) -> float:
    for _ in range(warmup):
        run()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matrix_rate(device: torch.device, dtype: torch.dtype, n: int = 8192) -> float:
    """FLOP/s of an n^3 matrix product in ``dtype``."""
    n = n if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / seconds(lambda: a @ b, device, repeat=10, warmup=3)


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(256 * 2**20 if device.type == "cuda" else 32 * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() / seconds(lambda: dst.copy_(src), device, repeat=10, warmup=3)


def activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Each conv's input and output once: what a network of unfused convs must move at the least."""
    total = 0

    def count(module, inputs, output) -> None:
        nonlocal total
        total += (inputs[0].numel() + output.numel()) * output.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    return total


def graphed(model: torch.nn.Module, x: torch.Tensor):
    """``model(x)`` captured once as a CUDA graph; the callable replays it (same input buffer)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        model(x)
    return graph.replay


def measure(model: torch.nn.Module, shape: tuple[int, int, int, int], device: torch.device, precision: str,
            rate: float, bandwidth: float) -> dict:
    """Eager and CUDA-graph seconds of one batch, its floor and achieved TFLOP/s, with the TF32 flags it ran
    under."""
    x = torch.rand(shape, device=device, dtype=DTYPES[precision]).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = seconds(lambda: model(x), device)
    graph = seconds(graphed(model, x), device) if device.type == "cuda" else float("nan")
    flops = conv_flops(model, x)
    floor = max(flops / rate, activation_bytes(model, x) / bandwidth)
    best = eager if math.isnan(graph) else min(eager, graph)
    return {"input": list(shape[2:]), "precision": precision, "batch": shape[0], "eager_s": eager, "graph_s": graph,
            "floor_s": floor, "tflops": flops / best / 1e12, **tf32_flags()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="M4C16 x4 only (a check of the script)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_inference: no CUDA device here (use --device cpu to check the script)")
    precisions = list(DTYPES) if device.type == "cuda" else ["fp32"]
    batches = (1, 8) if device.type == "cuda" else (1,)
    rates = {}
    for p in precisions:
        with tf32(p == "tf32"):
            rates[p] = matrix_rate(device, DTYPES[p])
    bandwidth = copy_bandwidth(device)
    rows, results = [], []
    for blocks, feat in ((4, 16),) if args.quick else ((4, 16), (10, 32), (16, 64)):
        for scale in (4,) if args.quick else (4, 2):
            h, w = 1080 // scale, 1920 // scale
            if device.type != "cuda":
                h, w = h // 4, w // 4
            deploy = reparameterize_model(RepSRNet(upscale=scale, num_feat=feat, num_block=blocks).eval())
            for precision in precisions:
                # the prepared PyTorch module (channels_last, in its precision): hooks and CUDA graphs need it
                model = make_runner(deploy, device, "fp32" if precision == "tf32" else precision, "torch").net
                for batch in batches:
                    with tf32(precision == "tf32"):  # the convolutions and their floor under one setting
                        r = measure(model, (batch, 3, h, w), device, precision, rates[precision], bandwidth)
                    results.append({"size": f"M{blocks}C{feat}", "scale": scale, **r})
                    best = r["eager_s"] if math.isnan(r["graph_s"]) else min(r["eager_s"], r["graph_s"])
                    rows.append(f"| M{blocks}C{feat} x{scale} | {h}x{w} | {precision} | {batch} | "
                                f"{r['eager_s'] / batch * 1e3:.2f} | {r['graph_s'] / batch * 1e3:.2f} | "
                                f"{r['floor_s'] / batch * 1e3:.3f} | {r['floor_s'] / best:.0%} | {r['tflops']:.1f} |")
    limits = ", ".join(f"{p} {rate / 1e12:.1f} TFLOP/s" for p, rate in rates.items())
    table = (f"Device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; measured matrix rates: "
             f"{limits}; copy bandwidth {bandwidth / 1e9:.0f} GB/s. ms per frame (batch time / batch), "
             "median of 20; channels_last; floor = max(FLOPs / matrix rate, conv activations / bandwidth). fp32: "
             "TF32 off for convolutions and matrix products; tf32: on for both (PyTorch's default for convolutions)."
             "\n\n"
             "| network | input | precision | batch | eager ms | CUDA graph ms | floor ms | floor / best | TFLOP/s |\n"
             "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    record("gpu_inference", table, {"rates": rates, "bandwidth": bandwidth, "results": results},
           smoke=device.type != "cuda")


if __name__ == "__main__":
    main()
