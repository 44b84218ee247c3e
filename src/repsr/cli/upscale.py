"""``repsr upscale`` and ``repsr models``."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """\
examples:
  repsr upscale photo.jpg                       -> photo_x4.png beside it
  repsr upscale pics/ "shots/*.png" -o out/     -> out/NAME_x4.png for every image
  repsr upscale clip.mp4 -o out/ --crf 16       -> out/clip_x4.mp4 (H.264; audio and subtitles copied)
  repsr upscale pics/ -o big/ --suffix ''       -> big/NAME.png (only into another folder)
  repsr upscale scan.png --model repsr-x4-m4c16 -> the model for clean downscales (benchmarks), not the default
  repsr upscale big.tif --model repsr-x2-m4c16-real --tile 512 --device cuda --precision fp16"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..runtimes import BACKENDS
    from ..video.codecs import CODECS

    up = sub.add_parser("upscale", help="upscale images and videos with a bundled or trained model",
                        description="Upscale images and videos. Outputs are named after their inputs with a\n"
                        "suffix (photo.jpg -> photo_x4.png, clip.mp4 -> clip_x4.mp4) and never replace an input,\n"
                        "--overwrite or not. Each is written under a temporary name and renamed when complete.",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    up.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="image or video files, folders (their images and videos) and globs (quote them: "
                         "'shots/*.png'). Images: png, jpg, webp, bmp, tif; videos: mp4, m4v, mkv, mov, webm, gif, "
                         "avi, ts, m2ts")
    up.add_argument("-o", "--output", metavar="OUTDIR",
                    help="output folder, created if needed (default: beside each input)")
    up.add_argument("--model", help="bundled model name, deploy file or training checkpoint "
                                    "(default: the bundled x4 model for real photos and video; see 'repsr models')")
    up.add_argument("--scale", type=int, help="check that the model has this scale")
    up.add_argument("--suffix", help="added to each output's name; {scale} is the model's scale "
                    "(default: _x{scale}, e.g. photo_x4.png; write --suffix=-up for one that starts with '-'); "
                    "'' only with -o another folder than the inputs'")
    up.add_argument("--tile", type=int, help="process in seamless tiles of N LR pixels (default: 320 on CPU for "
                    "large images, where measured faster; else the whole image); 0: the whole image")
    up.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16", "fp64"],
                    help="fp32 (default); bf16: faster on GPUs and, with OpenVINO, on CPUs with bf16 instructions; "
                         "fp16: GPUs; fp64 makes tiled output bit-identical to untiled")
    up.add_argument("--backend", default="auto", choices=BACKENDS,
                    help="CPU runtime: auto (default: the measured fastest installed one: OpenVINO for bf16, ncnn or "
                         "OpenVINO for wide fp32 networks, else PyTorch), torch, openvino or ncnn "
                         "(pip install 'repsr[openvino]' / 'repsr[ncnn]')")
    up.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    up.add_argument("--overwrite", action="store_true", help="redo outputs that exist (inputs are never replaced)")
    img = up.add_argument_group("images")
    img.add_argument("--format", default="png", choices=["png", "input"],
                     help="output format: png (default) or the input's own")
    vid = up.add_argument_group("videos (need PyAV: pip install 'repsr[video]')")
    vid.add_argument("--codec", choices=list(CODECS),
                     help="video codec (default: h264 in the input's container; vp9 for .webm, gif for .gif). "
                          "A container that cannot hold the codec becomes .mkv (.mp4 for a GIF input)")
    vid.add_argument("--crf", type=int, help="quality, lower is better (default: h264 18, h265 20, vp9 31, av1 30)")
    vid.add_argument("--preset", help="encoder speed: h264/h265 ultrafast..veryslow (default medium), "
                                      "vp9 0-8 (default 4), av1 0-13 (default 8)")
    vid.add_argument("--pix-fmt", help="pixel format (default: yuv420p; 10-bit inputs stay 10-bit with h265, vp9 "
                                       "and av1; ffv1: bgr0, lossless RGB)")
    vid.add_argument("--batch", type=int, help="frames per network call (default: 1 on CPU, 4 on GPU)")
    up.set_defaults(func=run_upscale)

    models = sub.add_parser("models", help="list the bundled models: what they are for, their PSNR/SSIM and bicubic's")
    models.set_defaults(func=run_models)


def run_upscale(args: argparse.Namespace) -> int:
    from ..batch_upscale import UpscaleOptions, upscale_files
    from ..video.codecs import VideoOptions
    from ..zoo import DEFAULT_MODEL

    video = VideoOptions(codec=args.codec, crf=args.crf, preset=args.preset, pix_fmt=args.pix_fmt, batch=args.batch)
    report = upscale_files(args.inputs, UpscaleOptions(
        model=args.model or DEFAULT_MODEL, out_dir=args.output, scale=args.scale, tile=args.tile,
        precision=args.precision, device=args.device, backend=args.backend, overwrite=args.overwrite,
        fmt=args.format, suffix=args.suffix, video=video))
    print(report.summary(args.output), file=sys.stderr)
    if report.interrupted:
        return 130
    return 1 if report.failed else 0


def run_models(args: argparse.Namespace) -> int:
    from ..zoo import models_table

    print(models_table())
    return 0
