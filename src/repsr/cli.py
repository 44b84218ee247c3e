"""The ``repsr`` command line. Each subcommand is a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._version import __version__
from .errors import RepsrError

if TYPE_CHECKING:
    from .archs.networks import CompactSRNet


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), scale=args.scale, num_feat=args.num_feat, num_block=args.num_block,
             steps=args.steps, seed=args.seed)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .export import convert

    out = convert(Path(args.checkpoint), Path(args.output), use_ema=not args.no_ema)
    print(f"wrote {out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import run_eval_cli

    return run_eval_cli(args)


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .training import train

    config = load_config(args.config, args.opt)
    out = Path(args.out) if args.out else Path("runs") / config.name
    train(config, out, resume=args.resume)
    return 0


def _cmd_upscale(args: argparse.Namespace) -> int:
    from .batch_upscale import upscale_files
    from .video import VideoOptions
    from .zoo import DEFAULT_MODEL

    video = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt, batch=args.batch)
    report = upscale_files(args.inputs, args.output, args.model or DEFAULT_MODEL, scale=args.scale, tile=args.tile,
                           precision=args.precision, device=args.device, overwrite=args.overwrite, fmt=args.format,
                           suffix=args.suffix, video=video, backend=args.backend)
    videos = f" ({report.videos} video{'s' * (report.videos != 1)})" if report.videos else ""
    parts = [f"{len(report.done)} upscaled{videos}"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped (output exists; --overwrite to redo)")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    if report.earlier_outputs:
        n = len(report.earlier_outputs)
        parts.append(f"{n} earlier output{'s' * (n != 1)} of repsr in the inputs left alone")
    if report.interrupted:
        print(f"repsr: interrupted; {', '.join(parts)}; finished outputs are complete", file=sys.stderr)
        return 130
    where = args.output if args.output is not None else "beside the inputs"
    print(f"{', '.join(parts)} -> {where}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_models(args: argparse.Namespace) -> int:
    import numpy as np

    from .zoo import DEFAULT_MODEL, INPUTS, bundled_models, ordered_sets

    models = bundled_models()
    if not models:
        print("no bundled models")
        return 0
    sets = ordered_sets({name for m in models for name in m.clean_results})
    degraded = any(m.degraded_results for m in models)
    columns = sets + (["degraded (mean)"] if degraded else [])
    width = 26
    lead = f"{'':<22} {'':>5} {'':>6} {'':>4}"
    print((lead + "".join(f"  {s:<{width}}" for s in columns)).rstrip())
    pair = f"{'PSNR/SSIM':<14}{'bicubic':<12}"
    print((f"{'model':<22} {'scale':>5} {'size':>6} {'KiB':>4}" + f"  {pair}" * len(columns) + "  for").rstrip())
    for m in models:
        cells = [m.results.get(s) for s in sets]
        if degraded:
            rows = list(m.degraded_results.values())
            cells.append({key: float(np.mean([r[key] for r in rows])) for key in rows[0]} if rows else None)
        text = ""
        for r in cells:
            cell = "-"
            if r:
                cell = f"{r['psnr']:.2f}/{r['ssim']:.4f}"
                if "bicubic_psnr" in r:
                    cell += f"  {r['bicubic_psnr']:.2f}/{r['bicubic_ssim']:.4f}"
            text += f"  {cell:<{width}}"
        default = " (default)" if m.name == DEFAULT_MODEL else ""
        kib = m.path.stat().st_size / 1024
        print(f"{m.name:<22} {'x' + str(m.scale):>5} {m.size:>6} {kib:>4.0f}{text}  {INPUTS[m.inputs]}{default}")
    print("PSNR (dB) / SSIM on the Y channel, border crop = scale (repsr eval); bicubic: MATLAB imresize. "
          + ("degraded: mean over Set14 and B100 with the LR degraded by JPEG q40, noise 10 + JPEG q60, blur 1 + "
             "JPEG q60 and the real-world pipeline (repsr eval --degradation standard). " if degraded else "")
          + "Recipes: MODEL_ZOO.md")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import save_deploy
    from .loading import load_model
    from .ncnn import check_ncnn_name, default_ncnn_name

    if not (args.onnx or args.compact or args.ncnn):
        raise RepsrError("export: give --onnx OUT.onnx, --ncnn DIR and/or --compact OUT.pth|OUT.safetensors")
    static = parse_static_size(args.static) if args.static is not None else None
    if static and not args.onnx:
        raise RepsrError("export: --static fixes the ONNX input; give --onnx OUT.onnx")
    if static and args.dynamic:
        raise RepsrError("export: --static and --dynamic contradict each other (ONNX is dynamic by default)")
    if args.name is not None and not args.ncnn:
        raise RepsrError("export: --name names the ncnn files; give --ncnn DIR")
    model = load_model(args.model)
    name = None
    if args.ncnn:  # checked before anything is written
        name = args.name if args.name is not None else default_ncnn_name(_model_stem(args.model), model.upscale)
        check_ncnn_name(name, model.upscale)
    if args.onnx:
        _export_onnx(model, args.onnx, static, args.opset)
    if args.ncnn:
        _export_ncnn(model, Path(args.ncnn), name)
    if args.compact:
        print(f"wrote {save_deploy(model, args.compact)}")
    return 0


def parse_static_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``256x256``) -> (H, W), both positive."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise RepsrError(f"--static {text!r}: expected HxW with positive whole numbers, e.g. 256x256")
    return int(match[1]), int(match[2])


def _model_stem(model: str) -> str:
    path = Path(model)
    return path.stem if path.is_file() else path.name  # a file's stem, or a bundled model's name


def _channels_text(channels: int) -> str:
    return {1: "one channel (gray or Y)", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels} channels")


def _export_onnx(model: CompactSRNet, path: str, static: tuple[int, int] | None, opset: int) -> None:
    from .export import check_onnx, export_onnx, onnx_input_shape

    path = export_onnx(model, path, opset=opset, static_size=static)
    c, s = model.num_in_ch, model.upscale
    shape: list = [1, c, *static] if static else ["N", c, "H", "W"]
    try:
        names = {"batch": "N", "height": "H", "width": "W"}
        shape = [names.get(d, d) if isinstance(d, str) else d for d in onnx_input_shape(path)]
        note = f"; onnxruntime max |error| {check_onnx(model, path, (1, c, *static) if static else (2, c, 37, 45)):.1e}"
    except ImportError:
        note = " (install repsr[onnx] to verify it)"
    out = [d * s if isinstance(d, int) else f"{s}{d}" for d in shape[2:]]
    print(f"wrote {path}{note}")
    print(f"  input: float32[{','.join(map(str, shape))}] {_channels_text(c)} in [0,1]; "
          f"output: float32[{shape[0]},{model.num_out_ch},{out[0]},{out[1]}]")


def _export_ncnn(model: CompactSRNet, folder: Path, name: str) -> None:
    import shlex

    from .ncnn import INPUT_BLOB, OUTPUT_BLOB, check_ncnn, export_ncnn

    param, weights = export_ncnn(model, folder, name)
    c, s = model.num_in_ch, model.upscale
    try:
        note = f"; ncnn max |error| {check_ncnn(model, param, weights, (1, c, 37, 45)):.1e}"
    except ImportError:
        note = " (install repsr[ncnn] to verify it)"
    print(f"wrote {param} + {weights.name} (fp32){note}")
    print(f"  input blob {INPUT_BLOB!r}: float32 CHW {_channels_text(c)} in [0,1]; output blob {OUTPUT_BLOB!r}: x{s}")
    print(f"  realesrgan-ncnn-vulkan -i in.png -o out.png -m {shlex.quote(str(folder))} -n {name} -s {s}")
    notes = []
    if folder.resolve().name == "models":
        print(f"  Upscayl: Settings > Add Custom Models > select this 'models' folder; then pick {name!r}")
    else:
        notes.append("Upscayl accepts only a folder named 'models', and realesrgan-ncnn-vulkan needs 'models' "
                     "in its -m path: put the two files in such a folder")
    if c != 3 or model.num_out_ch != 3:
        notes.append(f"{c}-channel input: realesrgan-ncnn-vulkan and Upscayl feed RGB, so only your own ncnn "
                     "code can run this model")
    if model.num_conv + 2 > 10:
        notes.append(f"realesrgan-ncnn-vulkan and Upscayl overlap tiles by 10 px and this network sees "
                     f"{model.num_conv + 2} px, so tile seams can differ slightly from one pass "
                     "(as with Real-ESRGAN's own Compact models)")
    if len(f"{folder}/{name}.param") > 255:
        notes.append("realesrgan-ncnn-vulkan cuts model paths at 255 characters: use a shorter -m path")
    for text in notes:
        print(f"  note: {text}")


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import BenchOptions, parse_size, report, run_bench, subject_list, to_json

    if args.list:
        print(subject_list())
        return 0
    if not args.models:
        raise RepsrError("bench: name the networks to time (repsr bench --list shows them)")
    options = BenchOptions(input=parse_size(args.input) if args.input else None, scale=args.scale, batch=args.batch,
                           device=args.device, precision=args.precision, threads=args.threads,
                           series=("torch", "repsr") if args.series == "both" else (args.series,),
                           rounds=args.rounds, protocol=args.protocol, memory=not args.no_memory)
    if min(options.scale, options.batch, options.rounds) < 1 or (options.threads is not None and options.threads < 1):
        raise RepsrError("bench: --scale, --batch, --rounds and --threads must be >= 1")
    results = run_bench(args.models, options)
    print(to_json(results, options) if args.json else report(results, options))
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .ablation import run_ablation

    run_ablation(args.spec, args.out, args.only)
    return 0


def _cmd_bn_study(args: argparse.Namespace) -> int:
    from .ablation import bn_study
    from .data import default_cache_dir, open_dataset

    runs = [Path(args.noswitch), Path(args.switched)]
    scale = read_run_scale(runs[0])
    datasets = [open_dataset(d, scale, default_cache_dir()) for d in args.data]
    print(bn_study(runs[0], runs[1], datasets, Path(args.out)))
    return 0


def read_run_scale(run: Path) -> int:
    import yaml

    config = run / "config.yml"
    if not config.is_file():
        raise RepsrError(f"{run}: not a training run folder (no config.yml)")
    return int(yaml.safe_load(config.read_text())["scale"])


DESCRIPTION = """\
repsr: train RepSR super-resolution networks (multi-branch blocks with BatchNorm), merge them into
plain Real-ESRGAN Compact networks, and upscale images and videos with them. See README.md."""

EPILOG = """\
examples:
  repsr upscale photo.jpg clip.mp4 -o out/      upscale with the default x4 model
  repsr models                                  the bundled models and their PSNR/SSIM
  repsr eval --model repsr-x4-m4c16 --data Set5 Set14 B100
  repsr train demo                              a CPU-sized training run (see 'repsr train -h')
  repsr demo                                    the method step by step in a minute

'repsr COMMAND -h' describes each command."""

UPSCALE_EXAMPLES = """\
examples:
  repsr upscale photo.jpg                       -> photo_x4.png beside it
  repsr upscale pics/ "shots/*.png" -o out/     -> out/NAME_x4.png for every image
  repsr upscale clip.mp4 -o out/ --crf 16       -> out/clip_x4.mp4 (H.264; audio and subtitles copied)
  repsr upscale pics/ -o big/ --suffix ''       -> big/NAME.png (only into another folder)
  repsr upscale big.tif --model repsr-x2-m4c16 --tile 512 --device cuda --precision fp16"""


def build_parser() -> argparse.ArgumentParser:
    from .demo import DEFAULT_OUT as DEMO_OUT
    from .evaluate import DEFAULT_DATA_ROOT
    from .zoo import bundled_names

    parser = argparse.ArgumentParser(prog="repsr", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"repsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="build, briefly train, merge and verify a RepSR model; write a deploy file")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default: {DEMO_OUT})")
    demo.add_argument("--scale", type=int, default=4, help="upscaling factor (default: 4)")
    demo.add_argument("--num-feat", type=int, default=16, help="channels per conv (default: 16)")
    demo.add_argument("--num-block", type=int, default=4, help="RepSR blocks (default: 4)")
    demo.add_argument("--steps", type=int, default=60, help="training iterations in all (default: 60)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(func=_cmd_demo)

    convert = sub.add_parser("convert", help="merge a training checkpoint into a deploy file (.safetensors or .pth)")
    convert.add_argument("checkpoint", help="training checkpoint (.pth) or deploy file")
    convert.add_argument("output", help="output path ending in .safetensors or .pth")
    convert.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    convert.set_defaults(func=_cmd_convert)

    tr = sub.add_parser("train", help="train a RepSR model from a YAML config or a preset")
    tr.add_argument("config", help="YAML file or preset name (e.g. demo, repsr_x4_m4c16)")
    tr.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --opt train.total_iter=2000 (repeatable)")
    tr.add_argument("--out", help="run folder (default: runs/<name>)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    tr.set_defaults(func=_cmd_train)

    up = sub.add_parser("upscale", help="upscale images and videos with a bundled or trained model",
                        description="Upscale images and videos. Outputs are named after their inputs with a\n"
                        "suffix (photo.jpg -> photo_x4.png, clip.mp4 -> clip_x4.mp4) and never replace an input,\n"
                        "--overwrite or not. Each is written under a temporary name and renamed when complete.",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=UPSCALE_EXAMPLES)
    up.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="image or video files, folders (their images and videos) and globs (quote them: "
                         "'shots/*.png'). Images: png, jpg, webp, bmp, tif; videos: mp4, m4v, mkv, mov, webm, gif, "
                         "avi, ts, m2ts")
    up.add_argument("-o", "--output", metavar="OUTDIR",
                    help="output folder, created if needed (default: beside each input)")
    up.add_argument("--model", help="bundled model name, deploy file or training checkpoint "
                                    "(default: the bundled x4 model; see 'repsr models')")
    up.add_argument("--scale", type=int, help="check that the model has this scale")
    up.add_argument("--suffix", help="added to each output's name; {scale} is the model's scale "
                    "(default: _x{scale}, e.g. photo_x4.png; write --suffix=-up for one that starts with '-'); "
                    "'' only with -o another folder than the inputs'")
    up.add_argument("--tile", type=int, help="process in seamless tiles of N LR pixels (default: 320 on CPU for "
                    "large images, where measured faster; else the whole image); 0: the whole image")
    up.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "fp64"],
                    help="fp32 (default); bf16: faster on GPUs and, with OpenVINO, on CPUs with bf16 instructions; "
                         "fp16: GPUs; fp64 makes tiled output bit-identical to untiled")
    up.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino", "ncnn"],
                    help="CPU runtime: auto (default: the measured fastest installed one: OpenVINO for bf16, ncnn or "
                         "OpenVINO for wide fp32 networks, else PyTorch), torch, openvino or ncnn "
                         "(pip install 'repsr[openvino]' / 'repsr[ncnn]')")
    up.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    up.add_argument("--overwrite", action="store_true", help="redo outputs that exist (inputs are never replaced)")
    img = up.add_argument_group("images")
    img.add_argument("--format", default="png", choices=["png", "input"],
                     help="output format: png (default) or the input's own")
    vid = up.add_argument_group("videos (need PyAV: pip install 'repsr[video]')")
    vid.add_argument("--codec", choices=["h264", "h265", "vp9", "av1", "ffv1", "gif"],
                     help="video codec (default: h264 in the input's container; vp9 for .webm, gif for .gif). "
                          "A container that cannot hold the codec becomes .mkv (.mp4 for a GIF input)")
    vid.add_argument("--crf", type=int, help="quality, lower is better (default: h264 18, h265 20, vp9 31, av1 30)")
    vid.add_argument("--preset", help="encoder speed: h264/h265 ultrafast..veryslow (default medium), "
                                      "vp9 0-8 (default 4), av1 0-13 (default 8)")
    vid.add_argument("--pix-fmt", help="pixel format (default: yuv420p; 10-bit inputs stay 10-bit with h265, vp9 "
                                       "and av1; ffv1: bgr0, lossless RGB)")
    vid.add_argument("--batch", type=int, help="frames per network call (default: 1 on CPU, 4 on GPU)")
    up.set_defaults(func=_cmd_upscale)

    models = sub.add_parser("models", help="list the bundled models with their PSNR/SSIM and bicubic's")
    models.set_defaults(func=_cmd_models)

    ex = sub.add_parser("export", help="export a model to ONNX, ncnn (Upscayl, realesrgan-ncnn-vulkan) or a "
                                       "Compact file (spandrel/chaiNNer/ComfyUI)")
    ex.add_argument("model", help="bundled model name, deploy file or training checkpoint")
    ex.add_argument("--onnx", metavar="OUT.onnx", help="ONNX with free batch, height and width (float32 NCHW in [0,1])")
    ex.add_argument("--static", metavar="HxW", help="fix the ONNX input to 1 x C x H x W, e.g. 256x256")
    ex.add_argument("--dynamic", action="store_true",
                    help="accepted for compatibility and ignored: ONNX is dynamic by default")
    ex.add_argument("--opset", type=int, default=17)
    ex.add_argument("--ncnn", metavar="DIR", help="write DIR/NAME.param + DIR/NAME.bin (fp32) for ncnn, Upscayl and "
                    "realesrgan-ncnn-vulkan (name the folder 'models' for them)")
    ex.add_argument("--name", help="ncnn model name; Upscayl reads the scale from it, so it must say x2/x3/x4 "
                    "(default: the model's name or file stem, plus -x<scale> if missing)")
    ex.add_argument("--compact", metavar="OUT", help="OUT.pth or OUT.safetensors in SRVGGNetCompact layout")
    ex.set_defaults(func=_cmd_export)

    be = sub.add_parser("bench", help="time networks on this machine: repsr's, plain ones by size, or peers",
                        description="Time SR networks the way the field times them: warm-up, candidates in turns, "
                        "median and spread; ms/image, images/s, MP/s of output, parameters, MACs, peak memory.")
    be.add_argument("models", nargs="*", metavar="MODEL",
                    help="bundled model, deploy file, compact:mXcY (random weights) or a peer (imdn, span, ...)")
    be.add_argument("--list", action="store_true", help="list what can be timed")
    be.add_argument("--input", metavar="HxW", help="LR input size (default: the 1280x720 output, 180x320 at x4)")
    be.add_argument("--scale", type=int, default=4)
    be.add_argument("--batch", type=int, default=1)
    be.add_argument("--device", default="auto", help="auto, cpu or cuda")
    be.add_argument("--precision", default="fp32", help="fp32, fp16 or bf16")
    be.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's)")
    be.add_argument("--series", choices=("torch", "repsr", "both"), default="torch",
                    help="torch: eager PyTorch, the common ground; repsr: what repsr upscale runs (its best runtime, "
                         "uint8 images in and out; Compact networks only); both")
    be.add_argument("--rounds", type=int, default=7, help="timed rounds, every candidate once per round")
    be.add_argument("--protocol", choices=("default", "ntire"), default="default",
                    help="ntire: the NTIRE Efficient SR timing (fp32, batch 1, CUDA events, cuDNN autotuning off)")
    be.add_argument("--no-memory", action="store_true", help="skip the peak-memory run")
    be.add_argument("--json", action="store_true", help="one JSON object: machine, settings, results")
    be.set_defaults(func=_cmd_bench)

    ab = sub.add_parser("ablate", help="train and compare block/BN variants from an ablation spec")
    ab.add_argument("spec", help="ablation spec YAML (see specs/)")
    ab.add_argument("--out", required=True, help="output folder (resumable: finished variants are kept)")
    ab.add_argument("--only", nargs="+", metavar="VARIANT",
                    help="train only these variants (the report still counts the others' finished runs), e.g. "
                         "one per process to use every core")
    ab.set_defaults(func=_cmd_ablate)

    bs = sub.add_parser("bn-study", help="BN artifacts: population vs per-image batch statistics vs the switch")
    bs.add_argument("noswitch", help="run folder of a BN model trained without the switch")
    bs.add_argument("switched", help="run folder of the same model trained with the switch")
    bs.add_argument("--data", nargs="+", required=True, help="test set folders")
    bs.add_argument("--out", required=True)
    bs.set_defaults(func=_cmd_bn_study)

    ev = sub.add_parser("eval", help="PSNR/SSIM (Y channel, BasicSR/MATLAB protocol) of a model on test sets",
                        description="PSNR/SSIM on the Y channel with border crop = scale (BasicSR's protocol; "
                        "LR images made by MATLAB bicubic).")
    ev.add_argument("--model", required=True,
                    help=f"'bicubic', a bundled model ({', '.join(bundled_names()) or 'none'}), a deploy file "
                         "(.safetensors/.pth) or a training checkpoint")
    ev.add_argument("--data", required=True, nargs="+", metavar="SET",
                    help="test sets: folders, or names found under --data-root (e.g. Set5 Set14 B100). A set is a "
                         "folder of HR images, or paired folders (DIR/HR + DIR/LR_bicubic/X<s>, DIV2K layout)")
    ev.add_argument("--data-root", metavar="DIR",
                    help=f"where set names are looked up (default: {DEFAULT_DATA_ROOT}, as in the training presets)")
    ev.add_argument("--scale", type=int, help="upscaling factor (default: the model's; required for bicubic)")
    ev.add_argument("--degradation", nargs="+", metavar="NAME",
                    help="score on LR images made by MATLAB bicubic and then degraded, one row per name: jpeg40, "
                         "noise10+jpeg60, blur1+jpeg60 (steps jpegQ, noiseSIGMA, blurSIGMA joined by '+'), real (the "
                         "second-order training pipeline), standard (those four), clean (bicubic only; the "
                         "default). Cached like the bicubic LR")
    ev.add_argument("--degradation-seed", type=int, default=0, metavar="N",
                    help="seed of the random degradations (noise, real), per image name (default: 0)")
    ev.add_argument("--json", action="store_true", help="print one JSON object per dataset to stdout")
    ev.add_argument("--save-images", metavar="OUT", help="write the SR images to OUT/<dataset>/")
    ev.add_argument("--round-y", action="store_true",
                    help="round Y to integers as MATLAB scripts do (default: BasicSR, unrounded)")
    ev.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    ev.add_argument("--cache-dir", help="where LR images made from HR folders are cached "
                                         "(default: ~/.cache/repsr/lr; 'none' disables)")
    ev.set_defaults(func=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RepsrError as e:
        print(f"repsr: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("repsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
