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
