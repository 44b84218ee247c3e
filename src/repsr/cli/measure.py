"""``repsr eval`` and ``repsr bench``: quality on test sets, and speed on this machine."""

from __future__ import annotations

import argparse

from ..errors import RepsrError


def register(sub: argparse._SubParsersAction) -> None:
    from ..evaluate import DEFAULT_DATA_ROOT
    from ..zoo import bundled_names

    ev = sub.add_parser("eval", help="PSNR/SSIM (Y channel, BasicSR/MATLAB protocol) of a model on test sets",
                        description="PSNR/SSIM on the Y channel with border crop = scale (BasicSR's protocol; "
                        "LR images made by MATLAB bicubic, and optionally degraded further).")
    ev.add_argument("--model", required=True,
                    help=f"'bicubic', a bundled model ({', '.join(bundled_names()) or 'none'}), a deploy file "
                         "(.safetensors/.pth) or a training checkpoint")
    ev.add_argument("--data", required=True, nargs="+", metavar="SET",
                    help="test sets: folders, or names found under --data-root (e.g. Set5 Set14 B100). A set is a "
                         "folder of HR images, or paired folders (DIR/HR + DIR/LR_bicubic/X<s>, DIV2K layout)")
    ev.add_argument("--data-root", metavar="DIR",
                    help=f"where set names are looked up (default: {DEFAULT_DATA_ROOT}: $REPSR_DATA_ROOT, else the "
                         "presets' data_root)")
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
    ev.set_defaults(func=run_eval)

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
    be.set_defaults(func=run_bench_cli)


def run_eval(args: argparse.Namespace) -> int:
    from ..evaluate import run_eval as evaluate

    evaluate(args.model, args.data, args.scale, args.data_root, args.degradation, args.degradation_seed, args.device,
             args.cache_dir, args.save_images, args.round_y, args.json)
    return 0


def run_bench_cli(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions, parse_size, report, run_bench, subject_list, to_json

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
