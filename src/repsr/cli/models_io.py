"""``repsr export`` and ``repsr convert``: model files for other tools."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RepsrError


def register(sub: argparse._SubParsersAction) -> None:
    ex = sub.add_parser("export", help="export a model to ONNX, ncnn (Upscayl, realesrgan-ncnn-vulkan) or a "
                                       "Compact file (spandrel/chaiNNer/ComfyUI)")
    ex.add_argument("model", help="bundled model name, deploy file or training checkpoint")
    ex.add_argument("--onnx", metavar="OUT.onnx", help="ONNX with free batch, height and width (float32 NCHW in [0,1])")
    ex.add_argument("--static", metavar="HxW", help="fix the ONNX input to 1 x C x H x W, e.g. 256x256")
    ex.add_argument("--opset", type=int, default=17)
    ex.add_argument("--ncnn", metavar="DIR", help="write DIR/NAME.param + DIR/NAME.bin (fp32) for ncnn, Upscayl and "
                    "realesrgan-ncnn-vulkan (name the folder 'models' for them)")
    ex.add_argument("--name", help="ncnn model name; Upscayl reads the scale from it, so it must say x2/x3/x4 "
                    "(default: the model's name or file stem, plus -x<scale> if missing)")
    ex.add_argument("--compact", metavar="OUT", help="OUT.pth or OUT.safetensors in SRVGGNetCompact layout")
    ex.set_defaults(func=run_export)

    convert = sub.add_parser("convert", help="merge a training checkpoint into a deploy file (.safetensors or .pth)")
    convert.add_argument("checkpoint", help="training checkpoint (.pth) or deploy file")
    convert.add_argument("output", help="output path ending in .safetensors or .pth")
    convert.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    convert.set_defaults(func=run_convert)


def run_export(args: argparse.Namespace) -> int:
    from ..bench import parse_size
    from ..export import export_onnx, onnx_report, save_deploy
    from ..loading import load_model
    from ..ncnn import check_ncnn_name, default_ncnn_name, export_ncnn, ncnn_report

    if not (args.onnx or args.compact or args.ncnn):
        raise RepsrError("export: give --onnx OUT.onnx, --ncnn DIR and/or --compact OUT.pth|OUT.safetensors")
    static = parse_size(args.static, "--static") if args.static is not None else None
    if static and not args.onnx:
        raise RepsrError("export: --static fixes the ONNX input; give --onnx OUT.onnx")
    if args.name is not None and not args.ncnn:
        raise RepsrError("export: --name names the ncnn files; give --ncnn DIR")
    model = load_model(args.model)
    name = None
    if args.ncnn:  # checked before anything is written
        stem = Path(args.model).stem if Path(args.model).is_file() else Path(args.model).name
        name = args.name if args.name is not None else default_ncnn_name(stem, model.upscale)
        check_ncnn_name(name, model.upscale)
    if args.onnx:
        path = export_onnx(model, args.onnx, opset=args.opset, static_size=static)
        print("\n".join(onnx_report(model, path, static)))
    if args.ncnn:
        param, weights = export_ncnn(model, Path(args.ncnn), name)
        print("\n".join(ncnn_report(model, Path(args.ncnn), name, param, weights)))
    if args.compact:
        print(f"wrote {save_deploy(model, args.compact)}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..export import convert

    print(f"wrote {convert(Path(args.checkpoint), Path(args.output), use_ema=not args.no_ema)}")
    return 0
