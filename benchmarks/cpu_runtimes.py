"""CPU runtimes for the deploy network, timed in turns in one run, and the PSNR cost of bf16.

Per network (M4C16 = the bundled x4 model, M16C64) and output size (720p, 1080p, x4):

- repsr end to end: a ``repsr.inference.Upscaler`` (made once) called on a uint8 image (what ``repsr upscale``
  runs per image), in fp32 and bf16 with the automatic backend, and in fp32 forced onto PyTorch;
- repsr's network alone: the prepared PyTorch network (the PyTorch runner's ``net``) on a channels_last float
  tensor (the baseline of the end-to-end overhead), and the OpenVINO runner's ``floats`` on a float tensor;
- other runtimes on float NCHW tensors, network only: PyTorch eager on NCHW (spandrel's way), onnxruntime,
  OpenVINO f32 and bf16 (both on the exported ONNX graph) and ncnn (CPU, its default Winograd convolutions)
  when installed.

All take turns, 2 runs each (the first untimed) after an idle gap (onnxruntime's worker threads spin after
a run and slow whatever runs next), for ``--rounds`` rounds; ratios are taken within a round and given
as median [min-max] over rounds. Then PSNR on Set5/Set14/B100 of the bundled models in fp32 and in bf16,
as ``repsr upscale --precision bf16`` runs them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _results import record, seconds_in_turns

from repsr import RepSRNet, load_model, reparameterize_model
from repsr.export import export_onnx
from repsr.inference import Upscaler
from repsr.runtimes import BACKEND_TITLES, cpu_has_bf16, openvino_available
from repsr.zoo import bundled_models

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
OUTPUTS = {"720p": (720, 1280), "1080p": (1080, 1920), "2160p": (2160, 3840)}


def networks(sizes: list[str]) -> dict[str, torch.nn.Module]:
    """M4C16: the bundled x4 model; other sizes: a merged RepSR network with random weights (speed only)."""
    torch.manual_seed(0)
    out = {}
    for size in sizes:
        blocks, feat = (int(v) for v in size.lower().split("x"))
        if (blocks, feat) == (4, 16):
            out["M4C16"] = load_model("repsr-x4-m4c16")
        else:
            out[f"M{blocks}C{feat}"] = reparameterize_model(RepSRNet(upscale=4, num_feat=feat, num_block=blocks).eval())
    return out


def eager_nchw(model: torch.nn.Module, tmp: Path):
    """spandrel's Compact model on the same weights when spandrel is installed, else the module itself: fp32, NCHW."""
    try:
        from repsr.export import save_deploy
        from repsr.peers.spandrel_import import import_spandrel

        path = save_deploy(model, tmp / "bench.safetensors")
        net = import_spandrel().ModelLoader().load_from_file(str(path)).model.eval()
    except ImportError:
        net = model.float().eval()

    def run(x):
        with torch.no_grad():
            return net(x)

    return run


def other_runtimes(model: torch.nn.Module, tmp: Path, threads: int) -> dict:
    """Runners (float32 NCHW numpy in) for the runtimes that are installed."""
    runners = {}
    onnx_path = export_onnx(model, tmp / "bench.onnx", dynamic=True)
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        runners["onnxruntime"] = lambda x: session.run(None, {"input": x})
    except ImportError:
        pass
    if openvino_available():
        import openvino as ov

        core = ov.Core()
        for precision in ("f32", "bf16"):
            if precision == "bf16" and not cpu_has_bf16():
                continue
            compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", {
                "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads})
            request = compiled.create_infer_request()
            runners[f"OpenVINO {precision}"] = partial(lambda r, x: r.infer([x], share_inputs=True), request)
    try:
        import ncnn

        from repsr.ncnn import INPUT_BLOB, OUTPUT_BLOB, ncnn_param, ncnn_weights

        (tmp / "bench.param").write_text(ncnn_param(model))
        (tmp / "bench.bin").write_bytes(ncnn_weights(model))
        net = ncnn.Net()
        net.opt.num_threads = threads  # default options otherwise: packing layout, Winograd convolutions
        net.load_param(str(tmp / "bench.param"))
        net.load_model(str(tmp / "bench.bin"))

        def run_ncnn(x):
            ex = net.create_extractor()
            ex.input(INPUT_BLOB, ncnn.Mat(np.ascontiguousarray(x[0])))
            return np.array(ex.extract(OUTPUT_BLOB)[1])

        runners["ncnn"] = run_ncnn
    except ImportError:
        pass
    return runners


def ratio(samples: dict[str, list[float]], a: str, b: str) -> tuple[float, float, float]:
    """time[b] / time[a] per round (above 1: a is faster): median, min, max."""
    r = [tb / ta for ta, tb in zip(samples[a], samples[b], strict=True)]
    return statistics.median(r), min(r), max(r)


def fmt(r: tuple[float, float, float]) -> str:
    return f"{r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]"


def speed(args, threads: int) -> tuple[list[str], list[dict]]:
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for name, model in networks(args.sizes.split(",")).items():
            fp32 = Upscaler(model, CPU, "fp32")
            bf16 = Upscaler(model, CPU, "bf16")
            torch_fp32 = Upscaler(model, CPU, "fp32", "torch")
            fp32_backend = BACKEND_TITLES[fp32.runner.backend]
            bf16_openvino = bf16.runner.backend == "openvino" and bf16.runner.precision == "bf16"
            bf16_label = "OpenVINO bf16" if bf16_openvino else "fp32 (no fast bf16 here)"
            others = other_runtimes(model, tmp, threads)
            eager = eager_nchw(model, tmp)
            outputs = args.outputs.split(",")
            if name == "M4C16" and args.narrow_outputs:
                outputs += args.narrow_outputs.split(",")
            for output in outputs:
                oh, ow = OUTPUTS[output]
                h, w = oh // model.upscale, ow // model.upscale
                img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
                x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
                x_cl = x.contiguous(memory_format=torch.channels_last)
                runs = {
                    "repsr fp32": partial(fp32, img),
                    "repsr fp32 PyTorch": partial(torch_fp32, img),
                    "repsr network PyTorch fp32": partial(torch_fp32.runner.net, x_cl),
                    "repsr bf16": partial(bf16, img),
                }
                if bf16_openvino:
                    runs["repsr network OpenVINO bf16"] = partial(bf16.runner.floats, x)
                runs["PyTorch eager NCHW"] = partial(eager, x)
                runs.update({k: partial(run, x.numpy()) for k, run in others.items()})
                samples: dict[str, list[float]] = {}
                with torch.inference_mode():
                    t = seconds_in_turns(runs, args.rounds, gap=args.gap, samples=samples)
                fp32_others = [k for k in ("PyTorch eager NCHW", "onnxruntime", "OpenVINO f32", "ncnn") if k in t]
                fastest = min(fp32_others, key=t.get)
                r = {"network": name, "output": output, "input": [h, w], "fp32_backend": fp32_backend,
                     "bf16": bf16_label, "ms": {k: v * 1e3 for k, v in t.items()},
                     "samples_ms": {k: [v * 1e3 for v in s] for k, s in samples.items()},
                     "e2e_over_network": ratio(samples, "repsr network PyTorch fp32", "repsr fp32 PyTorch"),
                     "bf16_speedup": ratio(samples, "repsr bf16", "repsr fp32"),
                     "bf16_speedup_vs_pytorch_fp32": ratio(samples, "repsr bf16", "repsr fp32 PyTorch"),
                     "fastest_other_fp32": fastest,
                     "fp32_vs_fastest_other": ratio(samples, "repsr fp32", fastest)}
                results.append(r)
                cell = {k: f"{v * 1e3:.1f}" if k in t else "" for k, v in t.items()}
                rows.append(
                    f"| {name} | {h}x{w} -> {output} | {cell['repsr fp32']} ({fp32_backend}) | "
                    f"{cell['repsr fp32 PyTorch']} | {cell['repsr network PyTorch fp32']} | "
                    f"**{fmt(r['e2e_over_network'])}** | {cell['repsr bf16']} ({bf16_label}) | "
                    f"{cell.get('repsr network OpenVINO bf16', '')} | **{fmt(r['bf16_speedup'])}** | "
                    f"{fmt(r['bf16_speedup_vs_pytorch_fp32'])} | "
                    f"{cell['PyTorch eager NCHW']} | {cell.get('onnxruntime', '')} | {cell.get('OpenVINO f32', '')} | "
                    f"{cell.get('OpenVINO bf16', '')} | {cell.get('ncnn', '')} | "
                    f"**{fmt(r['fp32_vs_fastest_other'])}** ({fastest}) |")
                print(rows[-1], flush=True)
    return rows, results


def test_sets() -> list[Path]:
    shared = ROOT.parent / "shared" / "datasets"
    if shared.is_dir():
        return [shared / s for s in ("Set5", "Set14", "B100")]
    return [ROOT / "tests" / "data" / "Set5"]


def psnr_rows() -> tuple[list[str], dict]:
    """PSNR of each bundled model in fp32 and in bf16 (as ``--precision bf16`` runs it here)."""
    from repsr.data import HRFolder, default_cache_dir
    from repsr.evaluate import evaluate_dataset

    rows, data = [], {}
    for bundled in bundled_models():
        model = load_model(bundled.name)
        nets = {p: Upscaler(model, CPU, p) for p in ("fp32", "bf16")}
        for folder in test_sets():
            ds = HRFolder(folder, model.upscale, default_cache_dir())
            r = {p: evaluate_dataset(net, ds, progress=False) for p, net in nets.items()}
            delta = r["bf16"]["psnr"] - r["fp32"]["psnr"]
            data[f"{bundled.name}/{ds.name}"] = {p: [r[p]["psnr"], r[p]["ssim"]] for p in r}
            rows.append(f"| {bundled.name} | {ds.name} | {r['fp32']['psnr']:.3f} | {r['bf16']['psnr']:.3f} | "
                        f"{delta:+.3f} |")
            print(rows[-1], flush=True)
    return rows, data


def versions() -> str:
    found = [f"torch {torch.__version__}"]
    for module in ("openvino", "onnxruntime", "ncnn"):
        try:
            found.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            found.append(f"{module}: not installed")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="4x16,16x64", help="comma-separated MxC (blocks x channels)")
    parser.add_argument("--outputs", default="720p,1080p")
    parser.add_argument("--narrow-outputs", default="2160p",
                        help="more outputs for M4C16 only, where PyTorch tiles (4K: seconds per run for M16C64)")
    parser.add_argument("--gap", type=float, default=0.2, help="idle seconds before each runtime's turn")
    parser.add_argument("--no-psnr", action="store_true")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    rows, results = speed(args, threads)
    psnr, psnr_data = ([], {}) if args.no_psnr else psnr_rows()
    bf16_cpu = "has" if cpu_has_bf16() else "has no"
    text = (
        f"x4, batch 1, {threads} threads for every runtime; this CPU {bf16_cpu} bf16 instructions; {versions()}. "
        f"{args.rounds} rounds; in each, every runtime takes a turn of 2 runs (the second timed) after "
        f"{args.gap} s idle; ms are medians, ratios are per round: median [min-max]. "
        "**e2e / net**: an `Upscaler` on a uint8 image with PyTorch (colour conversion, NaN check, rounding "
        "included) over the prepared PyTorch network alone on a channels_last float tensor (target: <= 1.10x). "
        "**bf16 speed-up**: an `Upscaler` in fp32 over bf16, both with the automatic backend (targets: >= 1.3x "
        "M4C16, >= 1.45x M16C64); **vs PyTorch fp32**: the same against the end-to-end PyTorch fp32 path. "
        "**fp32 vs fastest**: the fastest other fp32 runtime's network call over repsr's "
        "end-to-end fp32 (above 1: repsr is faster; target >= 1). Other runtimes run the network alone on float "
        "NCHW tensors: PyTorch eager NCHW (spandrel's way), onnxruntime and OpenVINO on the exported ONNX "
        "graph, ncnn on the exported ncnn files with its default (Winograd) convolutions. repsr's end-to-end "
        "calls use the default tiling: PyTorch tiles the 2160p input (320 px), OpenVINO and ncnn run one pass.\n\n"
        "| network | input -> output | repsr fp32 ms (backend) | repsr fp32 PyTorch e2e ms | "
        "PyTorch network ms | e2e / net | repsr bf16 ms | OpenVINO bf16 network ms | bf16 speed-up | "
        "bf16 vs PyTorch fp32 | PyTorch eager NCHW ms | onnxruntime ms | OpenVINO f32 ms | OpenVINO bf16 ms | "
        "ncnn ms | fp32 vs fastest other |\n|" + "---|" * 16 + "\n" + "\n".join(rows))
    if psnr:
        text += ("\n\nPSNR (Y, BasicSR protocol) of the bundled models through an `Upscaler`, fp32 against "
                 "`--precision bf16` (target: change <= 0.02 dB).\n\n"
                 "| model | set | fp32 PSNR | bf16 PSNR | change (dB) |\n|---|---|---|---|---|\n" + "\n".join(psnr))
    record("cpu_runtimes", text, {"results": results, "psnr": psnr_data, "versions": versions(), "rounds": args.rounds})


if __name__ == "__main__":
    main()
