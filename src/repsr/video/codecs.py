"""Output codecs, containers and encoder settings: pure functions of the user's options (PyAV only to list the
pixel formats an encoder takes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RepsrError
from ..marks import VIDEO_EXTENSIONS

MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".gif": "gif"}
MP4_FAMILY = (".mp4", ".m4v", ".mov")


@dataclass(frozen=True)
class VideoCodec:
    """An output codec: its FFmpeg encoder, default pixel format, CRF range and speed presets."""

    encoder: str
    pix_fmt: str
    crf: tuple[int, int, int] | None  # default, lowest, highest; None: no quality setting
    containers: tuple[str, ...]  # output extensions that take it (see output_container for the fallback)
    presets: tuple[str, ...] = ()
    default_preset: str | None = None


_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
CODECS = {
    "h264": VideoCodec("libx264", "yuv420p", (18, 0, 51), (".mp4", ".m4v", ".mov", ".mkv"), _X26X_PRESETS, "medium"),
    "h265": VideoCodec("libx265", "yuv420p", (20, 0, 51), (".mp4", ".m4v", ".mov", ".mkv"), _X26X_PRESETS, "medium"),
    "vp9": VideoCodec("libvpx-vp9", "yuv420p", (31, 0, 63), (".webm", ".mkv", ".mp4"),
                      tuple(str(i) for i in range(9)), "4"),
    "av1": VideoCodec("libsvtav1", "yuv420p", (30, 1, 63), (".mkv", ".webm", ".mp4"),
                      tuple(str(i) for i in range(14)), "8"),
    "ffv1": VideoCodec("ffv1", "bgr0", None, (".mkv",)),  # lossless RGB: the upscaled frames exactly
    "gif": VideoCodec("gif", "pal8", None, (".gif",)),
}
DEFAULT_CODEC = "h264"
COMMON_PIX_FMTS = ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv444p10le", "bgr0", "gbrp", "gbrp16le")
DEEP_CODECS = ("h265", "vp9", "av1")  # keep a 10/12-bit input's depth in yuv420p10le: players take it everywhere


@dataclass(frozen=True)
class VideoOptions:
    codec: str | None = None  # None: per container (H.264; VP9 for WebM; GIF for GIF)
    crf: int | None = None  # None: the codec's default
    preset: str | None = None  # encoder speed preset; None: the codec's default
    pix_fmt: str | None = None  # None: the codec's default (yuv420p), 10-bit where the input has more than 8
    batch: int | None = None  # frames per network call; None: 1 on CPU, 4 on GPU


def require_av() -> Any:
    """The ``av`` module, or a one-line error saying how to install it."""
    try:
        import av
    except ImportError:
        raise RepsrError("video needs PyAV: pip install 'repsr[video]' (or: pip install av)") from None
    return av


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def default_codec(ext: str) -> str:
    """The codec for an output container: H.264, except where the container takes no H.264."""
    ext = ext.lower()
    return "vp9" if ext == ".webm" else "gif" if ext == ".gif" else DEFAULT_CODEC


def output_container(src: Path, codec: str | None) -> tuple[str, str]:
    """(output extension, codec name): the input's container where it takes the codec.

    Otherwise .gif for GIF, .mp4 for a GIF input, else .mkv, which takes every other codec (and
    every audio and subtitle codec of .avi and .ts inputs).
    """
    ext = src.suffix.lower()
    name = codec or default_codec(ext if ext in MUXERS else ".mkv")
    if name not in CODECS:
        raise RepsrError(f"--codec: unknown codec {name!r} (known: {', '.join(CODECS)})")
    allowed = CODECS[name].containers
    if ext not in MUXERS or ext not in allowed:
        ext = ".gif" if name == "gif" else ".mp4" if ext == ".gif" and ".mp4" in allowed else \
            ".mkv" if ".mkv" in allowed else allowed[0]
    return ext, name


def check_options(options: VideoOptions) -> None:
    """Refuse bad codec settings before any file is opened."""
    if options.codec is not None and options.codec not in CODECS:
        raise RepsrError(f"--codec: unknown codec {options.codec!r} (known: {', '.join(CODECS)})")
    if options.batch is not None and options.batch < 1:
        raise RepsrError(f"--batch must be >= 1, got {options.batch}")
    names = [options.codec] if options.codec else list(CODECS)
    if options.crf is not None:
        ranges = [CODECS[n].crf for n in names if CODECS[n].crf]
        if options.codec and not ranges:
            raise RepsrError(f"--crf: {options.codec} has no quality setting (it is lossless or palette-based)")
        if not any(lo <= options.crf <= hi for _, lo, hi in ranges):
            limits = ", ".join(f"{n} {CODECS[n].crf[1]}-{CODECS[n].crf[2]}" for n in names if CODECS[n].crf)
            raise RepsrError(f"--crf {options.crf} is out of range ({limits})")
    if options.preset is not None:
        if options.codec and not CODECS[options.codec].presets:
            raise RepsrError(f"--preset: {options.codec} has no speed presets")
        if not any(options.preset in CODECS[n].presets for n in names):
            known = "; ".join(f"{n}: {', '.join(CODECS[n].presets)}" for n in names if CODECS[n].presets)
            raise RepsrError(f"--preset {options.preset!r} is unknown ({known})")
    if options.pix_fmt is not None:
        av = require_av()
        for n in names:
            if n == "gif":
                continue
            formats = {f.name for f in av.codec.Codec(CODECS[n].encoder, "w").video_formats or ()}
            if options.pix_fmt not in formats and options.codec:
                common = [f for f in COMMON_PIX_FMTS if f in formats]
                raise RepsrError(f"--pix-fmt {options.pix_fmt}: {options.codec} does not take it "
                                 f"(it takes {', '.join(common)} and {len(formats) - len(common)} more)")


def encoder_options(codec: str, options: VideoOptions) -> dict[str, str]:
    """FFmpeg options of the video encoder: quality (CRF), speed preset and quiet logs."""
    spec = CODECS[codec]
    crf = str(options.crf if options.crf is not None else spec.crf[0]) if spec.crf else None
    preset = options.preset or spec.default_preset
    return {"h264": {"crf": crf, "preset": preset},
            "h265": {"crf": crf, "preset": preset, "x265-params": "log-level=error"},
            "vp9": {"crf": crf, "b": "0", "deadline": "good", "cpu-used": preset, "row-mt": "1"},
            "av1": {"crf": crf, "preset": preset, "svtav1-params": "progress=0"},
            "ffv1": {"level": "3", "slices": "4", "slicecrc": "1"}}.get(codec, {})


def output_pix_fmt(codec: str, asked: str | None, input_bits: int) -> tuple[str, str | None]:
    """The encoder's pixel format, and a note when an input deeper than 8 bits is written with 8."""
    if asked is not None:
        return asked, None
    if input_bits > 8 and codec in DEEP_CODECS:
        return "yuv420p10le", None
    if input_bits > 8 and codec == "ffv1":
        return "gbrp16le", None
    note = (f"the input has {input_bits}-bit samples; {codec} writes 8 (--codec h265 or --pix-fmt yuv420p10le keeps "
            "more)") if input_bits > 8 else None
    return CODECS[codec].pix_fmt, note


def pix_fmt_bits(pix_fmt: str) -> int:
    components = require_av().VideoFormat(pix_fmt).components
    return max(c.bits for c in components) if components else 8


def chroma_steps(pix_fmt: str) -> tuple[int, int]:
    """Luma pixels per chroma sample across and down (2, 2 for 4:2:0): output sizes must be multiples."""
    fmt = require_av().VideoFormat(pix_fmt)
    if fmt.is_rgb or fmt.has_palette or len(fmt.components) < 3:
        return 1, 1
    return max(1, round(64 / max(1, fmt.chroma_width(64)))), max(1, round(64 / max(1, fmt.chroma_height(64))))


def audio_fallback(ext: str) -> str:
    """The audio encoder for streams the output container cannot take as they are: Opus in WebM, else AAC."""
    return "libopus" if ext == ".webm" else "aac"


def container_takes_audio(ext: str, codec: str) -> bool | None:
    """Whether the container certainly takes this audio codec as it is (None: ask the muxer). FFmpeg's MP4 muxer
    accepts a PCM stream when it is added and fails only when the file is finished, so PCM is refused here."""
    if ext in (".mp4", ".m4v") and codec.startswith("pcm_"):
        return False
    return None
