"""``repsr train``, ``repsr demo``, ``repsr ablate`` and ``repsr bn-study``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..demo import DEFAULT_OUT as DEMO_OUT

    tr = sub.add_parser("train", help="train a RepSR model from a YAML config or a preset")
    tr.add_argument("config", help="YAML file or preset name (e.g. demo, repsr_x4_m4c16)")
    tr.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --opt train.total_iter=2000 (repeatable)")
    tr.add_argument("--out", help="run folder (default: runs/<name>)")
    tr.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    tr.set_defaults(func=run_train)

    demo = sub.add_parser("demo", help="build, briefly train, merge and verify a RepSR model; write a deploy file")
    demo.add_argument("--out", default=DEMO_OUT, help=f"output folder (default: {DEMO_OUT})")
    demo.add_argument("--scale", type=int, default=4, help="upscaling factor (default: 4)")
    demo.add_argument("--num-feat", type=int, default=16, help="channels per conv (default: 16)")
    demo.add_argument("--num-block", type=int, default=4, help="RepSR blocks (default: 4)")
    demo.add_argument("--steps", type=int, default=60, help="training iterations in all (default: 60)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(func=run_demo)

    ab = sub.add_parser("ablate", help="train and compare block/BN variants from an ablation spec")
    ab.add_argument("spec", help="ablation spec YAML (see specs/)")
    ab.add_argument("--out", required=True, help="output folder (resumable: finished variants are kept)")
    ab.add_argument("--only", nargs="+", metavar="VARIANT",
                    help="train only these variants (the report still counts the others' finished runs), e.g. "
                         "one per process to use every core")
    ab.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                    help="train only these of the spec's seeds (the report still counts the others' finished runs)")
    ab.set_defaults(func=run_ablate)

    bs = sub.add_parser("bn-study", help="BN artifacts: population vs per-image batch statistics vs the switch")
    bs.add_argument("noswitch", help="run folder of a BN model trained without the switch")
    bs.add_argument("switched", help="run folder of the same model trained with the switch")
    bs.add_argument("--data", nargs="+", required=True, help="test set folders")
    bs.add_argument("--out", required=True)
    bs.set_defaults(func=run_bn_study)


def run_train(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..training import train

    config = load_config(args.config, args.opt)
    train(config, Path(args.out) if args.out else Path("runs") / config.name, resume=args.resume)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo as demo

    demo(Path(args.out), scale=args.scale, num_feat=args.num_feat, num_block=args.num_block, steps=args.steps,
         seed=args.seed)
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from ..ablation import run_ablation

    run_ablation(args.spec, args.out, args.only, args.seeds)
    return 0


def run_bn_study(args: argparse.Namespace) -> int:
    from ..ablation import bn_study, run_scale
    from ..data import default_cache_dir, open_dataset

    noswitch, switched = Path(args.noswitch), Path(args.switched)
    scale = run_scale(noswitch)
    print(bn_study(noswitch, switched, [open_dataset(d, scale, default_cache_dir()) for d in args.data],
                   Path(args.out)))
    return 0
