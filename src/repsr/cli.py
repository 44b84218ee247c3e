"""The ``repsr`` command line. Each subcommand is a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import RepsrError


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
    from .train import train

    config = load_config(args.config, args.opt)
    out = Path(args.out) if args.out else Path("runs") / config.name
    train(config, out, resume=args.resume)
    return 0


def _cmd_upscale(args: argparse.Namespace) -> int:
    from .batch_upscale import upscale_files
    from .zoo import DEFAULT_MODEL

    report = upscale_files(args.inputs, args.output, args.model or DEFAULT_MODEL, scale=args.scale, tile=args.tile,
                           precision=args.precision, device=args.device, overwrite=args.overwrite, fmt=args.format)
    parts = [f"{len(report.done)} upscaled"]
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped (output exists; --overwrite to redo)")
    if report.failed:
        parts.append(f"{len(report.failed)} failed")
    if report.interrupted:
        print(f"repsr: interrupted; {', '.join(parts)}; finished outputs are complete", file=sys.stderr)
        return 130
    print(f"{', '.join(parts)} -> {args.output}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .zoo import DEFAULT_MODEL, bundled_models

    models = bundled_models()
    if not models:
        print("no bundled models")
        return 0
    sets = sorted({name for m in models for name in m.results})
    header = f"{'name':<18} {'scale':>5} {'size':>7} {'KiB':>6}  "
    header += "  ".join(f"{s + ' PSNR/SSIM':>18}" for s in sets)
    print(header)
    for m in models:
        cells = "  ".join(f"{m.results[s]['psnr']:>9.2f}/{m.results[s]['ssim']:.4f}" if s in m.results
                          else f"{'-':>18}" for s in sets)
        default = "  (default)" if m.name == DEFAULT_MODEL else ""
        kib = m.path.stat().st_size / 1024
        print(f"{m.name:<18} {'x' + str(m.scale):>5} {m.size:>7} {kib:>6.0f}  {cells}{default}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import check_onnx, export_onnx, load_model, save_deploy

    if not args.onnx and not args.compact:
        raise RepsrError("export: give --onnx OUT.onnx and/or --compact OUT.pth|OUT.safetensors")
    model = load_model(args.model)
    if args.onnx:
        path = export_onnx(model, args.onnx, dynamic=args.dynamic, opset=args.opset)
        try:
            shape = (2, model.num_in_ch, 37, 45) if args.dynamic else (1, model.num_in_ch, 64, 64)
            note = f"; onnxruntime max |error| {check_onnx(model, path, shape):.1e}"
        except ImportError:
            note = " (install onnxruntime to verify it)"
        print(f"wrote {path}{note}")
    if args.compact:
        print(f"wrote {save_deploy(model, args.compact)}")
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .ablation import run_ablation

    run_ablation(args.spec, args.out)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repsr", description=__doc__.split("\n")[0] + " See README.md.")
    parser.add_argument("--version", action="version", version=f"repsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="build, briefly train, merge and verify a RepSR model; write a deploy file")
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--scale", type=int, default=4)
    demo.add_argument("--num-feat", type=int, default=16)
    demo.add_argument("--num-block", type=int, default=4)
    demo.add_argument("--steps", type=int, default=60, help="training iterations in all (default: 60)")
    demo.add_argument("--seed", type=int, default=0)
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

    up = sub.add_parser("upscale", help="upscale images (files, folders, globs) with a bundled or trained model")
    up.add_argument("inputs", nargs="+", metavar="INPUT")
    up.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    up.add_argument("--model", help="bundled model name, deploy file or training checkpoint "
                                    "(default: the bundled x4 model; see 'repsr models')")
    up.add_argument("--scale", type=int, help="check that the model has this scale")
    up.add_argument("--tile", type=int, help="process in seamless tiles of N LR pixels (default: 320 on CPU for "
                    "large images, where measured faster; else the whole image); 0: the whole image")
    up.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "fp64"],
                    help="fp32 (default); fp16/bf16 faster on GPUs; fp64 makes tiled output bit-identical to untiled")
    up.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    up.add_argument("--format", default="png", choices=["png", "input"], help="output format (default: png)")
    up.add_argument("--overwrite", action="store_true", help="redo outputs that exist")
    up.set_defaults(func=_cmd_upscale)

    models = sub.add_parser("models", help="list the bundled models with their validation PSNR/SSIM")
    models.set_defaults(func=_cmd_models)

    ex = sub.add_parser("export", help="export a model to ONNX or to a Compact file (spandrel/chaiNNer/ComfyUI)")
    ex.add_argument("model", help="bundled model name, deploy file or training checkpoint")
    ex.add_argument("--onnx", metavar="OUT.onnx")
    ex.add_argument("--dynamic", action="store_true", help="ONNX with free batch, height and width")
    ex.add_argument("--opset", type=int, default=17)
    ex.add_argument("--compact", metavar="OUT", help="OUT.pth or OUT.safetensors in SRVGGNetCompact layout")
    ex.set_defaults(func=_cmd_export)

    ab = sub.add_parser("ablate", help="train and compare block/BN variants from an ablation spec")
    ab.add_argument("spec", help="ablation spec YAML (see specs/)")
    ab.add_argument("--out", required=True, help="output folder (resumable: finished variants are kept)")
    ab.set_defaults(func=_cmd_ablate)

    bs = sub.add_parser("bn-study", help="BN artifacts: population vs per-image batch statistics vs the switch")
    bs.add_argument("noswitch", help="run folder of a BN model trained without the switch")
    bs.add_argument("switched", help="run folder of the same model trained with the switch")
    bs.add_argument("--data", nargs="+", required=True, help="test set folders")
    bs.add_argument("--out", required=True)
    bs.set_defaults(func=_cmd_bn_study)

    ev = sub.add_parser("eval", help="PSNR/SSIM (Y channel, BasicSR/MATLAB protocol) of a model on test sets")
    ev.add_argument("--model", required=True, help="'bicubic', a training checkpoint or a deploy file")
    ev.add_argument("--data", required=True, nargs="+",
                    help="HR image folders, or paired folders (DIR/HR + DIR/LR_bicubic/X<s>, DIV2K layout)")
    ev.add_argument("--scale", type=int, required=True)
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
