"""The output file: its video stream as the plan says, and the input's audio, subtitle and attachment streams
copied packet for packet where the container takes them (audio it does not take is re-encoded)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from .codecs import MP4_FAMILY, MUXERS, audio_fallback, container_takes_audio
from .colour import AVCOL_SPC, Colour

# stream tags that describe the input's encoding, wrong for the re-encoded video stream
STALE_TAGS = {"encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "_statistics_tags",
              "_statistics_writing_app", "_statistics_writing_date_utc", "handler_name", "vendor_id"}
CONTAINER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}  # the muxer writes its own
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}  # FFmpeg's


@dataclass(frozen=True)
class VideoPlan:
    """Everything the output is, decided from the input's first frame before any frame is upscaled."""

    ext: str
    codec: str
    encoder: str
    encoder_options: dict[str, str]
    pix_fmt: str
    bits: int  # 8 or 16: the depth frames travel in through the pipeline
    in_size: tuple[int, int]  # width, height
    out_size: tuple[int, int]  # width, height (cropped to the chroma subsampling's multiples)
    colour: Colour
    rate: Fraction
    time_base: Fraction
    sample_aspect_ratio: Fraction | None
    display_matrix: list[int] | None
    mark: str  # the video stream's encoder tag: how repsr recognizes its own outputs
    notes: tuple[str, ...] = ()


@dataclass
class Output:
    """The opened output: its container, video stream, and where each passed-through input stream goes."""

    container: Any
    video: Any
    copied: dict[Any, Any] = field(default_factory=dict)  # input stream -> output stream, packets copied
    reencoded: dict[Any, Any] = field(default_factory=dict)  # input audio stream -> output encoder stream
    notes: list[str] = field(default_factory=list)


def copy_tags(source: dict, target: Any, drop: set[str]) -> None:
    for key, value in source.items():
        if key.lower() not in drop:
            with contextlib.suppress(ValueError, TypeError):  # a tag the muxer cannot store
                target[key] = value


def open_output(av: Any, path: Path, inp: Any, video_in: Any, plan: VideoPlan) -> Output:
    """The output container at ``path`` with the planned video stream and the input's other streams."""
    options = {"movflags": "+faststart"} if plan.ext in MP4_FAMILY else {}
    container = av.open(str(path), "w", format=MUXERS[plan.ext], options=options)
    copy_tags(inp.metadata, container.metadata, CONTAINER_TAGS)
    stream = container.add_stream(plan.encoder, rate=plan.rate)
    stream.width, stream.height = plan.out_size
    stream.pix_fmt = plan.pix_fmt
    ctx = stream.codec_context
    ctx.time_base = stream.time_base = plan.time_base
    if plan.sample_aspect_ratio:
        ctx.sample_aspect_ratio = plan.sample_aspect_ratio
    if plan.codec != "gif":
        if not plan.pix_fmt.startswith(("gbr", "rgb", "bgr")):
            ctx.colorspace = AVCOL_SPC[plan.colour.matrix]
            ctx.color_range = plan.colour.range
        if not plan.colour.rgb_input:
            ctx.color_primaries = plan.colour.primaries
            ctx.color_trc = plan.colour.trc
    ctx.options = plan.encoder_options
    if plan.codec == "h265" and plan.ext in MP4_FAMILY:
        ctx.codec_tag = "hvc1"  # what Apple players need to play HEVC
    output = Output(container, stream)
    if plan.display_matrix is not None and plan.codec != "gif":
        if hasattr(stream, "set_display_matrix"):
            stream.set_display_matrix(plan.display_matrix)
        else:
            output.notes.append("the rotation is not kept: it needs PyAV >= 18.1")
    copy_tags(video_in.metadata, stream.metadata, STALE_TAGS)
    stream.metadata["encoder"] = plan.mark
    _copy_disposition(video_in, stream)
    for s in inp.streams:
        if s is not video_in and s.type in ("audio", "subtitle", "attachment"):
            _add_passthrough(av, output, s, plan.ext)
    if plan.ext in (".mkv", ".webm", *MP4_FAMILY):
        with contextlib.suppress(ValueError, av.FFmpegError):  # chapters the muxer cannot store
            container.set_chapters(inp.chapters())
    return output


def _copy_disposition(source: Any, target: Any) -> None:
    with contextlib.suppress(ValueError, TypeError, AttributeError):  # PyAV versions without dispositions
        target.disposition = source.disposition


def _add_passthrough(av: Any, output: Output, s: Any, ext: str) -> None:
    where = f"{s.type} stream {s.index} ({s.codec_context.name if s.codec_context else 'attachment'})"
    if ext == ".gif":
        output.notes.append(f"{where} left out: GIF holds only pictures")
        return
    o = None
    if s.type != "audio" or container_takes_audio(ext, s.codec_context.name) is not False:
        try:
            o = output.container.add_stream_from_template(s)
        except (ValueError, av.FFmpegError):
            o = None
    if o is not None:
        copy_tags(s.metadata, o.metadata, set())
        _copy_disposition(s, o)
        if s.type != "attachment":
            output.copied[s] = o
        return
    if s.type != "audio":
        output.notes.append(f"{where} left out: {ext} does not take it")
        return
    codec = audio_fallback(ext)
    ctx = s.codec_context
    o = output.container.add_stream(codec, rate=48000 if codec == "libopus" else (ctx.sample_rate or 48000))
    layout = ctx.layout.name
    if layout.endswith(" channels"):  # unordered (PCM in MKV): encoders take only the count's default order
        layout = DEFAULT_LAYOUTS.get(ctx.layout.nb_channels, layout)
    with contextlib.suppress(ValueError):  # a layout the encoder does not take: its default
        o.layout = layout if ctx.layout.nb_channels <= 2 or codec == "aac" else "5.1"
    o.bit_rate = 160_000 if codec == "libopus" else 192_000
    copy_tags(s.metadata, o.metadata, STALE_TAGS)
    _copy_disposition(s, o)
    output.reencoded[s] = o
    output.notes.append(f"{where} re-encoded to {'Opus' if codec == 'libopus' else 'AAC'}: {ext} does not take "
                        f"{ctx.name}")
