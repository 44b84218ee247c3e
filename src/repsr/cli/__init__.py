"""The ``repsr`` command line: each subcommand's parser beside its handler, which calls the library with plain
values (:mod:`.upscale`, :mod:`.models_io`, :mod:`.training`, :mod:`.measure`)."""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..errors import RepsrError

DESCRIPTION = """\
repsr: train RepSR super-resolution networks (multi-branch blocks with BatchNorm), merge them into
plain Real-ESRGAN Compact networks, and upscale images and videos with them. See README.md."""

EPILOG = """\
examples:
  repsr upscale photo.jpg clip.mp4 -o out/      upscale with the default x4 model (real photos and video)
  repsr models                                  the bundled models, what they are for, their PSNR/SSIM
  repsr eval --model repsr-x4-m4c16 --data Set5 Set14 B100
  repsr train demo                              a CPU-sized training run (see 'repsr train -h')
  repsr demo                                    the method step by step in a minute

'repsr COMMAND -h' describes each command."""


def build_parser() -> argparse.ArgumentParser:
    from . import measure, models_io, training, upscale

    parser = argparse.ArgumentParser(prog="repsr", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"repsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (upscale, models_io, training, measure):
        module.register(sub)
    return parser


def _unknown_command(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """A one-line error with a did-you-mean for a misspelled subcommand (``repsr upscle``), else None."""
    from ..zoo import closest_name

    first = next((a for a in argv if not a.startswith("-")), None)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if first is None or first in commands or argv[0].startswith("-"):
        return None
    close = closest_name(first, commands)
    return f"repsr: error: unknown command {first!r}" + (f"; did you mean {close}?" if close else
                                                          f" (commands: {', '.join(commands)})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if message := _unknown_command(parser, argv):
        print(message, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RepsrError as e:
        print(f"repsr: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("repsr: interrupted", file=sys.stderr)
        return 130
