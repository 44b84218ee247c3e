"""Video upscaling with PyAV (FFmpeg): decode, batch, upscale and encode as a stream.

:func:`upscale_video` reads the input's first frame, builds a frozen :class:`~.muxing.VideoPlan` from it (size,
depth, colour, codec, rate, rotation: :mod:`.codecs`, :mod:`.colour`), opens the output with the input's other
streams (:mod:`.muxing`), and runs the threaded stages (:mod:`.pipeline`). The output keeps the input's frame time
stamps (variable frame rate stays variable), frame rate, rotation (display matrix), sample aspect ratio, colour
matrix, range, primaries and transfer. Audio, subtitle and attachment streams are copied packet for packet where
the output container takes their codec; audio it does not take is re-encoded (AAC, or Opus in WebM), subtitles it
does not take are left out, each with a note. Every frame is what the :class:`~repsr.inference.Upscaler` makes of
it as an image. The output is written under a temporary name and renamed when complete.

PyAV is an optional dependency: ``pip install 'repsr[video]'``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import RepsrError
from ..fileio import atomic_write
from ..inference import Upscaler
from ..marks import OUTPUT_MARK, add_gif_comment
from .codecs import (
    CODECS,
    MUXERS,
    VIDEO_EXTENSIONS,
    VideoOptions,
    check_options,
    chroma_steps,
    default_codec,
    encoder_options,
    is_video,
    output_container,
    output_pix_fmt,
    pix_fmt_bits,
    require_av,
)
from .colour import Colour, display_matrix, frame_bits, has_transparency
from .muxing import VideoPlan, open_output
from .pipeline import Pipeline, Progress

__all__ = ["CODECS", "VIDEO_EXTENSIONS", "VideoOptions", "VideoResult", "check_options", "is_video",
           "output_container", "upscale_video"]


@dataclass
class VideoResult:
    output: Path
    frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def upscale_video(src: str | os.PathLike, dst: str | os.PathLike, upscaler: Upscaler,
                  options: VideoOptions | None = None, progress: str | None = None, mark: str | None = None,
                  ) -> VideoResult:
    """Upscale the video ``src`` into ``dst``: every frame as ``upscaler`` makes it as an image. ``dst``'s extension
    picks the container. ``progress``: "bar", "lines" or None. An interruption or error leaves no file at ``dst``.
    ``mark``: the output's mark (:func:`repsr.marks.output_mark`; default: the scale's)."""
    import time

    av = require_av()
    src, dst = Path(src), Path(dst)
    options = options or VideoOptions()
    start = time.perf_counter()
    try:
        inp = av.open(str(src), metadata_errors="replace")
    except av.FFmpegError as e:
        raise RepsrError(f"{src}: not a readable video ({_reason(e)})") from None
    try:
        video = _video_stream(av, inp)
        if video is None:
            raise RepsrError(f"{src}: no video stream")
        plan = make_plan(av, src, dst, video, _first_frame(av, src, video.index), options, upscaler.scale,
                         mark or f"{OUTPUT_MARK} x{upscaler.scale}")
        if plan.codec == "av1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner and settings otherwise
        video.thread_type = "AUTO"
        batch = options.batch or (1 if upscaler.runner.device.type == "cpu" else 4)
        with atomic_write(dst) as tmp:
            output = open_output(av, tmp, inp, video, plan)
            try:
                pipeline = Pipeline(av, inp, video, output, plan, upscaler, batch,
                                    Progress(src.name, _estimate_frames(inp, video, plan.rate), progress))
                frames = pipeline.run()
            finally:
                output.container.close()
            if frames == 0:
                raise RepsrError(f"{src}: no video frames could be decoded")
            if plan.ext == ".gif":
                add_gif_comment(tmp, plan.mark)
        return VideoResult(dst, frames, time.perf_counter() - start, [*plan.notes, *output.notes])
    except av.FFmpegError as e:
        raise RepsrError(f"{src}: {_reason(e)}") from None
    finally:
        inp.close()


def make_plan(av: Any, src: Path, dst: Path, video: Any, first: Any, options: VideoOptions, scale: int,
              mark: str) -> VideoPlan:
    """The output, decided from the first frame: size, depth, pixel format, colour, rate and rotation."""
    ext = dst.suffix.lower()
    if ext not in MUXERS:
        raise RepsrError(f"{dst}: unsupported output container {dst.suffix!r}")
    codec = options.codec or default_codec(ext)
    if ext not in CODECS[codec].containers:
        raise RepsrError(f"{dst}: {codec} does not go in {ext} (it goes in {', '.join(CODECS[codec].containers)})")
    notes = []
    pix_fmt, note = output_pix_fmt(codec, options.pix_fmt, frame_bits(first))
    notes += [note] if note else []
    if getattr(first, "interlaced_frame", False):
        notes.append("the input is interlaced: its frames are upscaled as they are, fields together (deinterlace it "
                     "first for clean edges, e.g. ffmpeg -vf bwdif)")
    if has_transparency(first):
        notes.append("transparency is not kept: transparent pixels get the colour under them")
    w, h = first.width * scale, first.height * scale
    step_w, step_h = chroma_steps(pix_fmt)
    out_size = (w - w % step_w, h - h % step_h)
    if out_size != (w, h):
        notes.append(f"{pix_fmt} needs even sizes: {w}x{h} cropped to {out_size[0]}x{out_size[1]}")
    return VideoPlan(
        ext=ext, codec=codec, encoder=CODECS[codec].encoder, encoder_options=encoder_options(codec, options),
        pix_fmt=pix_fmt, bits=16 if frame_bits(first) > 8 and pix_fmt_bits(pix_fmt) > 8 else 8,
        in_size=(first.width, first.height), out_size=out_size, colour=Colour.of(first), rate=_frame_rate(video),
        time_base=video.time_base or Fraction(1, 1000), sample_aspect_ratio=video.sample_aspect_ratio or None,
        display_matrix=display_matrix(first), mark=mark, notes=tuple(notes))


def _first_frame(av: Any, src: Path, index: int) -> Any:
    """The first frame, which decides the plan. It is read from a separate demuxer (seeking back is not exact in
    every container; a new demuxer is), so the stages then read every stream from the start."""
    with av.open(str(src), metadata_errors="replace") as probe:
        video = probe.streams[index]
        video.thread_type = "AUTO"
        for frame in probe.decode(video):
            return frame
    raise RepsrError(f"{src}: no video frames could be decoded")


def _video_stream(av: Any, container: Any) -> Any:
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            return stream
    return None


def _frame_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < rate < 1000:
            return Fraction(rate)
    return Fraction(25)


def _estimate_frames(container: Any, stream: Any, rate: Fraction) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration:
        return max(1, round(container.duration / 1e6 * float(rate)))
    return None


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__
