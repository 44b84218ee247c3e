"""Video upscaling with PyAV (FFmpeg): decode, batch, upscale and encode as a stream.

Three threads share the work: a reader demuxes and decodes, the caller's thread runs the network on
batches of frames, and a writer converts to the output's pixel format, encodes and muxes. Bounded
queues hold a few batches, so memory does not grow with the length of the clip. The output keeps
the input's frame time stamps (variable frame rate stays variable), frame rate, rotation (display
matrix), sample aspect ratio, colour matrix, range, primaries and transfer. Audio, subtitle and
attachment streams are copied packet for packet where the output container takes their codec;
audio it does not take is re-encoded (AAC, or Opus in WebM), subtitles it does not take are left
out, each with a note. The output is written under a temporary name and renamed when complete.

PyAV is an optional dependency: ``pip install 'repsr[video]'``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .archs.networks import CompactSRNet
from .errors import RepsrError
from .fileio import atomic_write
from .inference import auto_tile, upscale

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".gif", ".avi", ".ts", ".m2ts", ".mts")
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".gif": "gif"}
OUTPUT_MARK = "repsr upscale"  # starts the video stream's "encoder" tag of every video repsr writes
# stream tags that describe the input's encoding, wrong for the re-encoded video stream
_STALE_TAGS = {"encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "_statistics_tags",
               "_statistics_writing_app", "_statistics_writing_date_utc", "handler_name", "vendor_id"}
_CONTAINER_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}  # the muxer writes its own


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


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def require_av() -> Any:
    """The ``av`` module, or a one-line error saying how to install it."""
    try:
        import av
    except ImportError:
        raise RepsrError("video needs PyAV: pip install 'repsr[video]' (or: pip install av)") from None
    return av


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


def _gif_comment(path: Path, text: str) -> None:
    """Add a GIF comment extension before the trailer (GIF has no other place for a tag)."""
    data = path.read_bytes()
    if not data.startswith(b"GIF8") or not data.endswith(b";"):
        return
    body = text.encode("ascii", "replace")[:255]
    path.write_bytes(data[:-1] + b"!\xfe" + bytes([len(body)]) + body + b"\x00;")


def _tail_has_mark(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 300))
        tail = f.read()
    at = tail.rfind(b"!\xfe")
    return at >= 0 and OUTPUT_MARK.encode() in tail[at:]


def is_repsr_output(path: str | os.PathLike) -> bool:
    """Whether a video was written by ``repsr upscale`` (its video stream's encoder tag, a GIF's comment)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        try:
            return _tail_has_mark(path)
        except OSError:
            return False
    try:
        av = require_av()
        with av.open(str(path)) as container:
            return any(str(value).startswith(OUTPUT_MARK) for s in container.streams.video
                       for value in s.metadata.values())
    except Exception:  # unreadable: not ours
        return False


@dataclass
class VideoOptions:
    codec: str | None = None  # None: per container (H.264; VP9 for WebM; GIF for GIF)
    crf: int | None = None  # None: the codec's default
    preset: str | None = None  # encoder speed preset; None: the codec's default
    pix_fmt: str | None = None  # None: the codec's default (yuv420p), 10-bit where the input has more than 8
    batch: int | None = None  # frames per network call; None: 1 on CPU, 4 on GPU
    tile: int | None = None  # as for images: None picks (auto_tile), 0 whole frames


@dataclass
class VideoResult:
    output: Path
    frames: int
    seconds: float
    notes: list[str] = field(default_factory=list)


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


# ----------------------------------------------------------------------------- the network on frames

class FrameUpscaler:
    """Frames (N, H, W, 3 uint8/uint16) -> upscaled frames, each exactly as ``repsr.upscale`` makes the image.

    Frames go through :func:`repsr.inference.upscale` one by one (its fused path for RGB networks,
    tiles and precision as for images). On a GPU, an RGB Compact network that needs no tiles takes
    whole batches instead: one network call per batch, clipped and rounded on the device (only
    uint8 crosses back), the batch halving on out-of-memory, down to single frames.
    """

    def __init__(self, model: nn.Module, tile: int | None = None) -> None:
        param = next(model.parameters())
        self.model, self.tile = model, tile
        self.device, self.dtype = param.device, param.dtype
        self.scale = int(model.upscale)
        self.batched = (self.device.type == "cuda" and isinstance(model, CompactSRNet)
                        and model.num_in_ch == model.num_out_ch == 3)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        if self.batched and len(frames) > 1:
            tile = self.tile
            if tile is None:
                tile = auto_tile(self.model, (1, 3, *frames.shape[1:3]), self.device, self.dtype)
            if not tile:
                return self._batch(torch.from_numpy(frames))
        return np.stack([upscale(f, self.model, tile=self.tile, prepared=True) for f in frames])

    def _batch(self, x: torch.Tensor) -> np.ndarray:
        peak = 255.0 if x.dtype == torch.uint8 else 65535.0
        try:
            xd = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).div(peak).to(self.dtype)
            y = self.model(xd.contiguous(memory_format=torch.channels_last))
            if not torch.isfinite(y).all():
                name = str(self.dtype).split(".")[-1]
                raise RepsrError(f"the network produced NaN/inf values in {name}; use --precision fp32")
            # as repsr.upscale rounds: clip to [0, 1], scale, add 0.5, truncate
            y = y.float().clamp_(0, 1).mul_(peak).add_(0.5)
            y = y.to(torch.uint8 if peak == 255 else torch.int32).permute(0, 2, 3, 1)
            return y.cpu().numpy().astype(x.numpy().dtype, copy=False)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
        if len(x) > 1:
            half = len(x) // 2
            return np.concatenate([self._batch(x[:half]), self._batch(x[half:])])
        return upscale(x[0].numpy(), self.model, tile=None, prepared=True)[None]  # halves its tiles on OOM


# ----------------------------------------------------------------------------- threads and queues

class _Stopped(Exception):
    """Another stage failed or the run was interrupted."""


_END = object()


class _Channel:
    """A bounded queue whose waits give up when ``stop`` is set, so no stage waits forever on a dead one."""

    def __init__(self, size: int, stop: threading.Event) -> None:
        self.queue: queue.Queue = queue.Queue(size)
        self.stop = stop

    def put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass
        raise _Stopped

    def get(self) -> Any:
        while True:
            try:
                return self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    raise _Stopped from None


class _Stage(threading.Thread):
    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=f"repsr-{name}", daemon=True)
        self.target, self.stop, self.error = target, stop, None

    def run(self) -> None:
        try:
            self.target()
        except _Stopped:
            pass
        except BaseException as e:  # noqa: BLE001 (handed to the caller's thread)
            self.error = e
            self.stop.set()


# ----------------------------------------------------------------------------- colour

# AVColorSpace -> the swscale matrix name PyAV takes; unknown or unspecified matrices are guessed by size
_MATRICES = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
_AVCOL_SPC = {"ITU709": 1, "FCC": 4, "ITU601": 5, "SMPTE170M": 6, "SMPTE240M": 7, "BT2020": 9}
_RANGE_NAMES = {1: "MPEG", 2: "JPEG"}


@dataclass
class _Colour:
    matrix: str  # swscale name
    range: int  # AVColorRange: 1 limited (tv), 2 full (pc)
    primaries: int
    trc: int
    rgb_input: bool  # the input frames are RGB or palette (GIF): no matrix of their own


def _colour_of(frame: Any) -> _Colour:
    name = frame.format.name
    rgb = name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "pal8", "gray")) or name in ("0rgb", "0bgr")
    matrix = _MATRICES.get(int(frame.colorspace))
    if matrix is None:  # unspecified: what players assume, BT.601 below 720 lines, BT.709 from there
        matrix = "ITU709" if frame.height >= 720 else "ITU601"
    full = name.startswith("yuvj") or int(frame.color_range) == 2
    return _Colour(matrix, 2 if full and not rgb else 1, int(frame.color_primaries), int(frame.color_trc), rgb)


def _bits(frame: Any) -> int:
    return max(c.bits for c in frame.format.components) if frame.format.components else 8


def _bits_of(av: Any, pix_fmt: str) -> int:
    components = av.VideoFormat(pix_fmt).components
    return max(c.bits for c in components) if components else 8


def _has_transparency(frame: Any) -> bool:
    try:
        return bool((frame.to_ndarray(format="rgba")[:, :, 3] < 255).any())
    except Exception:  # a format PyAV cannot convert: say nothing
        return False


# ----------------------------------------------------------------------------- the stream

def _display_matrix(frame: Any) -> list[int] | None:
    for data in frame.side_data:
        if data.type.name == "DISPLAYMATRIX" and len(bytes(data)) == 36:
            return [int(v) for v in np.frombuffer(bytes(data), "<i4")]
    return None


def _video_stream(container: Any) -> Any:
    av = require_av()
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:  # skip cover art
            return stream
    return None


def _frame_rate(stream: Any) -> Fraction:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < rate < 1000:
            return Fraction(rate)
    return Fraction(25)


def _copy_tags(source: dict, target: Any, drop: set[str]) -> None:
    for key, value in source.items():
        if key.lower() not in drop:
            with contextlib.suppress(Exception):
                target[key] = value


def _estimate_frames(container: Any, stream: Any, rate: Fraction) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration:
        return max(1, round(container.duration / 1e6 * float(rate)))
    return None


class _Progress:
    """Frames done with frames/s and ETA: a tqdm bar on a terminal, a line every 30 s otherwise."""

    def __init__(self, name: str, total: int | None, mode: str | None) -> None:
        from tqdm import tqdm

        self.name, self.total, self.mode, self.done = name, total, mode, 0
        self.start = self.last = time.perf_counter()
        self.bar = tqdm(total=total, desc=name, unit="frame", leave=False, file=sys.stderr,
                        dynamic_ncols=True) if mode == "bar" else None

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and time.perf_counter() - self.last >= 30:
            self.last = time.perf_counter()
            rate = self.done / (self.last - self.start)
            left = f", ETA {_clock((self.total - self.done) / rate)}" if self.total and rate > 0 else ""
            of = f"/{self.total}" if self.total else ""
            print(f"repsr: {self.name}: {self.done}{of} frames, {rate:.1f} frames/s{left}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


def probe_video(path: str | os.PathLike) -> dict:
    """Facts about a video file (for tests and reports): size, frames, rate, duration, streams."""
    av = require_av()
    with av.open(str(path)) as container:
        video = _video_stream(container)
        info = {"streams": [(s.type, s.codec_context.name if s.codec_context else None) for s in container.streams]}
        if video is not None:
            info.update(width=video.codec_context.width, height=video.codec_context.height,
                        rate=_frame_rate(video), frames=video.frames, codec=video.codec_context.name,
                        pix_fmt=video.codec_context.pix_fmt)
        info["duration"] = container.duration / 1e6 if container.duration else None
        return info


def upscale_video(src: str | os.PathLike, dst: str | os.PathLike, model: nn.Module,
                  options: VideoOptions | None = None, progress: str | None = None,
                  tag: str = "") -> VideoResult:
    """Upscale the video ``src`` into ``dst`` with a prepared network (see :func:`repsr.inference.prepare`).

    ``dst``'s extension picks the container. ``progress``: "bar", "lines" or None. An interruption
    or error leaves no file at ``dst`` (the output is written under a temporary name).
    """
    av = require_av()
    src, dst = Path(src), Path(dst)
    options = options or VideoOptions()
    try:
        inp = av.open(str(src), metadata_errors="replace")
    except av.FFmpegError as e:
        raise RepsrError(f"{src}: not a readable video ({_reason(e)})") from None
    try:
        return _Job(av, src, dst, inp, model, options, progress, tag).run()
    except av.FFmpegError as e:
        raise RepsrError(f"{src}: {_reason(e)}") from None
    finally:
        inp.close()


def _reason(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__


class _Job:
    """One video: setup (streams, codec, colour), then the three stages."""

    def __init__(self, av: Any, src: Path, dst: Path, inp: Any, model: nn.Module, options: VideoOptions,
                 progress: str | None, tag: str) -> None:
        self.av, self.src, self.dst, self.inp, self.options = av, src, dst, inp, options
        self.upscaler = FrameUpscaler(model, options.tile)
        self.scale = self.upscaler.scale
        self.progress_mode = progress
        label = f" {tag}" if tag else ""
        self._mark = f"{OUTPUT_MARK} x{self.scale}{label}"  # how repsr recognizes its own outputs
        self.notes: list[str] = []
        self.video = _video_stream(inp)
        if self.video is None:
            raise RepsrError(f"{src}: no video stream")
        ext = dst.suffix.lower()
        if ext not in MUXERS:
            raise RepsrError(f"{dst}: unsupported output container {dst.suffix!r}")
        self.ext = ext
        self.codec_name = options.codec or default_codec(ext)
        self.codec = CODECS[self.codec_name]
        if ext not in self.codec.containers:
            goes = ", ".join(self.codec.containers)
            raise RepsrError(f"{dst}: {self.codec_name} does not go in {ext} (it goes in {goes})")

    # -- reading -------------------------------------------------------------------------------
    def _items(self) -> Iterator[tuple]:
        """("frame", VideoFrame), ("packet", Packet) and ("audio", AudioFrame, stream) in file order."""
        streams = [self.video, *self.copied, *self.reencoded]
        for packet in self.inp.demux(streams):
            stream = packet.stream
            if stream is self.video:
                for frame in self.video.decode(packet):
                    yield ("frame", frame)
            elif stream in self.copied:
                if packet.size and (packet.pts is not None or packet.dts is not None):
                    yield ("packet", packet)
            elif stream in self.reencoded:
                for frame in stream.decode(packet):
                    yield ("audio", frame, stream)
        for stream in self.reencoded:
            with contextlib.suppress(self.av.FFmpegError):
                for frame in stream.decode(None):
                    yield ("audio", frame, stream)

    # -- setup ---------------------------------------------------------------------------------
    def _open_output(self, tmp: Path, first: Any) -> None:
        av, video = self.av, self.video
        options = {"movflags": "+faststart"} if self.ext in (".mp4", ".m4v", ".mov") else {}
        self.out = out = av.open(str(tmp), "w", format=MUXERS[self.ext], options=options)
        _copy_tags(self.inp.metadata, out.metadata, _CONTAINER_TAGS)

        deep = _bits(first) > 8
        pix_fmt = self.options.pix_fmt or self.codec.pix_fmt
        if self.options.pix_fmt is None and deep and self.codec_name in ("h265", "vp9", "av1"):
            pix_fmt = "yuv420p10le"  # keep a 10/12-bit input's depth where the codec plays it everywhere
        elif self.options.pix_fmt is None and deep and self.codec_name == "ffv1":
            pix_fmt = "gbrp16le"
        elif self.options.pix_fmt is None and deep:
            self.notes.append(f"the input has {_bits(first)}-bit samples; {self.codec_name} writes 8 "
                              "(--codec h265 or --pix-fmt yuv420p10le keeps more)")
        # frames travel with 8 bits per sample unless both the input and the output have more
        self.bits = 16 if deep and _bits_of(av, pix_fmt) > 8 else 8
        self.pix_fmt = pix_fmt
        if getattr(first, "interlaced_frame", False):
            self.notes.append("the input is interlaced: its frames are upscaled as they are, fields together "
                              "(deinterlace it first for clean edges, e.g. ffmpeg -vf bwdif)")
        if first.format.name in ("bgra", "rgba", "argb", "abgr", "pal8") and _has_transparency(first):
            self.notes.append("transparency is not kept: transparent pixels get the colour under them")
        self.colour = _colour_of(first)
        w, h = first.width * self.scale, first.height * self.scale
        step_w, step_h = _chroma_steps(pix_fmt)
        self.out_w, self.out_h = w - w % step_w, h - h % step_h
        if (self.out_w, self.out_h) != (w, h):
            self.notes.append(f"{pix_fmt} needs even sizes: {w}x{h} cropped to {self.out_w}x{self.out_h}")
        self.in_size = (first.width, first.height)

        rate = _frame_rate(video)
        stream = out.add_stream(self.codec.encoder, rate=rate)
        stream.width, stream.height, stream.pix_fmt = self.out_w, self.out_h, pix_fmt
        ctx = stream.codec_context
        self.time_base = video.time_base or Fraction(1, 1000)
        ctx.time_base = self.time_base
        stream.time_base = self.time_base
        if video.sample_aspect_ratio:
            ctx.sample_aspect_ratio = video.sample_aspect_ratio
        if self.codec_name != "gif":
            rgb_out = pix_fmt.startswith(("gbr", "rgb", "bgr"))
            if not rgb_out:
                ctx.colorspace = _AVCOL_SPC[self.colour.matrix]
                ctx.color_range = self.colour.range
            if not self.colour.rgb_input:
                ctx.color_primaries = self.colour.primaries
                ctx.color_trc = self.colour.trc
        ctx.options = self._encoder_options()
        if self.codec_name == "h265" and self.ext in (".mp4", ".m4v", ".mov"):
            ctx.codec_tag = "hvc1"  # what Apple players need to play HEVC
        matrix = _display_matrix(first)
        if matrix is not None and self.codec_name != "gif":
            if hasattr(stream, "set_display_matrix"):
                stream.set_display_matrix(matrix)
            else:
                self.notes.append("the rotation is not kept: it needs PyAV >= 18.1")
        _copy_tags(video.metadata, stream.metadata, _STALE_TAGS)
        stream.metadata["encoder"] = self._mark
        with contextlib.suppress(Exception):
            stream.disposition = video.disposition
        self.ovideo = stream

        self.copied, self.reencoded, self.targets = [], [], {}
        for s in self.inp.streams:
            if s is video or s.type not in ("audio", "subtitle", "attachment") or (
                    s.type == "video"):
                continue
            self._add_passthrough(s)
        with contextlib.suppress(Exception):
            if self.ext in (".mkv", ".webm", ".mp4", ".m4v", ".mov"):
                out.set_chapters(self.inp.chapters())

    def _add_passthrough(self, s: Any) -> None:
        where = f"{s.type} stream {s.index} ({s.codec_context.name if s.codec_context else 'attachment'})"
        if self.ext == ".gif":
            self.notes.append(f"{where} left out: GIF holds only pictures")
            return
        try:
            o = self.out.add_stream_from_template(s)
        except (ValueError, self.av.FFmpegError):
            o = None
        if o is not None:
            _copy_tags(s.metadata, o.metadata, set())
            with contextlib.suppress(Exception):
                o.disposition = s.disposition
            if s.type != "attachment":
                self.copied.append(s)
                self.targets[s] = o
            return
        if s.type != "audio":
            self.notes.append(f"{where} left out: {self.ext} does not take it")
            return
        codec = "libopus" if self.ext == ".webm" else "aac"
        ctx = s.codec_context
        rate = 48000 if codec == "libopus" else (ctx.sample_rate or 48000)
        o = self.out.add_stream(codec, rate=rate)
        with contextlib.suppress(Exception):
            o.layout = ctx.layout.name if ctx.layout.nb_channels <= 2 or codec == "aac" else "5.1"
        o.bit_rate = 160_000 if codec == "libopus" else 192_000
        _copy_tags(s.metadata, o.metadata, _STALE_TAGS)
        with contextlib.suppress(Exception):
            o.disposition = s.disposition
        self.reencoded.append(s)
        self.targets[s] = o
        self.notes.append(f"{where} re-encoded to {'Opus' if codec == 'libopus' else 'AAC'}: {self.ext} does not take "
                          f"{ctx.name}")

    def _encoder_options(self) -> dict[str, str]:
        name, o = self.codec_name, self.options
        crf = str(o.crf if o.crf is not None else self.codec.crf[0]) if self.codec.crf else None
        preset = o.preset or self.codec.default_preset
        if name == "h264":
            return {"crf": crf, "preset": preset}
        if name == "h265":
            return {"crf": crf, "preset": preset, "x265-params": "log-level=error"}
        if name == "vp9":
            return {"crf": crf, "b": "0", "deadline": "good", "cpu-used": preset, "row-mt": "1"}
        if name == "av1":
            return {"crf": crf, "preset": preset, "svtav1-params": "progress=0"}
        if name == "ffv1":
            return {"level": "3", "slices": "4", "slicecrc": "1"}
        return {}

    # -- the three stages ------------------------------------------------------------------------
    def run(self) -> VideoResult:
        start = time.perf_counter()
        self.copied, self.reencoded = [], []
        if self.codec_name == "av1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner and settings otherwise
        self.video.thread_type = "AUTO"
        self.first = self._first_frame()
        with atomic_write(self.dst) as tmp:
            self._open_output(tmp, self.first)
            try:
                frames = self._pipeline()
            finally:
                self.out.close()
            if self.ext == ".gif":
                _gif_comment(tmp, self._mark)
        return VideoResult(self.dst, frames, time.perf_counter() - start, self.notes)

    def _first_frame(self) -> Any:
        """The first frame, which decides the output's size, depth, colour and rotation.

        The input is then opened afresh (seeking back is not exact in every container; a new
        demuxer is) and the stages read every stream from the start.
        """
        first = None
        with self.av.open(str(self.src), metadata_errors="replace") as probe:
            video = probe.streams[self.video.index]
            video.thread_type = "AUTO"
            for frame in probe.decode(video):
                first = frame
                break
        if first is None:
            raise RepsrError(f"{self.src}: no video frames could be decoded")
        return first

    def _pipeline(self) -> int:
        stop = threading.Event()
        batch = self.options.batch or (1 if self.upscaler.device.type == "cpu" else 4)
        to_net, to_writer = _Channel(2 * batch + 2, stop), _Channel(3, stop)
        total = _estimate_frames(self.inp, self.video, _frame_rate(self.video))
        bar = _Progress(self.src.name, total, self.progress_mode)

        def read() -> None:
            for item in self._items():
                to_net.put(item)
            to_net.put(_END)

        reader = _Stage("reader", read, stop)
        writer = _Stage("writer", lambda: self._write(to_writer), stop)
        reader.start()
        writer.start()
        count = 0
        try:
            count = self._network(to_net, to_writer, batch, bar)
            to_writer.put(_END)
            writer.join()
        except _Stopped:
            pass  # a stage failed: its error is raised below
        finally:
            stop.set()  # ends the stages if this thread failed or was interrupted
            reader.join()
            writer.join()
            bar.close()
        for stage in (reader, writer):
            if stage.error is not None:
                raise stage.error
        if count == 0:
            raise RepsrError(f"{self.src}: no video frames could be decoded")
        return count

    def _network(self, to_net: _Channel, to_writer: _Channel, batch: int, bar: _Progress) -> int:
        """Batch the frames, upscale them and hand them on; other items go straight to the writer."""
        count = 0
        pending: list[tuple[np.ndarray, Any]] = []
        while True:
            item = to_net.get()
            end = item is _END
            if not end and item[0] != "frame":
                to_writer.put(item)
                continue
            if not end:
                pending.append((self._to_array(item[1]), item[1]))
            if pending and (len(pending) >= batch or end):
                out = self.upscaler(np.stack([a for a, _ in pending]))
                to_writer.put(("video", out, [f for _, f in pending]))
                count += len(pending)
                bar.update(len(pending))
                pending = []
            if end:
                return count

    def _to_array(self, frame: Any) -> np.ndarray:
        if (frame.width, frame.height) != self.in_size:
            raise RepsrError(f"{self.src}: the frame size changes within the video "
                             f"({self.in_size[0]}x{self.in_size[1]} -> {frame.width}x{frame.height}); not supported")
        fmt = "rgb48le" if self.bits == 16 else "rgb24"
        if self.colour.rgb_input:
            return self.in_reformatter.reformat(frame, format=fmt).to_ndarray()
        return self.in_reformatter.reformat(frame, format=fmt, src_colorspace=self.colour.matrix,
                                            src_color_range=_RANGE_NAMES[self.colour.range]).to_ndarray()

    @property
    def in_reformatter(self) -> Any:
        if not hasattr(self, "_in_reformatter"):
            from av.video.reformatter import VideoReformatter

            self._in_reformatter = VideoReformatter()
        return self._in_reformatter

    # -- writing -------------------------------------------------------------------------------
    def _write(self, channel: _Channel) -> None:
        from av.video.reformatter import VideoReformatter

        av, out, stream = self.av, self.out, self.ovideo
        reformatter = VideoReformatter()
        last_pts = None
        rgb_fmt = "rgb48le" if self.bits == 16 else "rgb24"
        while True:
            item = channel.get()
            if item is _END:
                break
            kind = item[0]
            if kind == "packet":
                packet = item[1]
                packet.stream = self.targets[packet.stream]
                out.mux(packet)
            elif kind == "audio":
                for packet in self.targets[item[2]].encode(item[1]):
                    out.mux(packet)
            else:
                _, frames, sources = item
                for array, source in zip(frames, sources, strict=True):
                    array = array[: self.out_h, : self.out_w]
                    frame = self._encode_frame(av, reformatter, np.ascontiguousarray(array), rgb_fmt)
                    pts = source.pts
                    if pts is None or (last_pts is not None and pts <= last_pts):
                        pts = 0 if last_pts is None else last_pts + max(1, int(source.duration or 1))
                    frame.pts, frame.time_base = pts, self.time_base
                    with contextlib.suppress(AttributeError, TypeError):
                        if source.duration:
                            frame.duration = source.duration
                    last_pts = pts
                    for packet in stream.encode(frame):
                        out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        for s in self.reencoded:
            for packet in self.targets[s].encode(None):
                out.mux(packet)

    def _encode_frame(self, av: Any, reformatter: Any, array: np.ndarray, rgb_fmt: str) -> Any:
        if self.codec_name == "gif":
            return _palette_frame(av, array if array.dtype == np.uint8 else (array >> 8).astype(np.uint8))
        frame = None
        if self.pix_fmt != rgb_fmt:  # a view of the array (no copy): the reformat makes the frame the encoder keeps
            with contextlib.suppress(ValueError, TypeError):
                frame = av.VideoFrame.from_numpy_buffer(array, format=rgb_fmt)
        if frame is None:
            frame = av.VideoFrame.from_ndarray(array, format=rgb_fmt)
        if self.pix_fmt.startswith(("gbr", "rgb", "bgr")):
            return reformatter.reformat(frame, format=self.pix_fmt)
        return reformatter.reformat(frame, format=self.pix_fmt, dst_colorspace=self.colour.matrix,
                                    dst_color_range=_RANGE_NAMES[self.colour.range])


def _chroma_steps(pix_fmt: str) -> tuple[int, int]:
    """Luma pixels per chroma sample across and down (2, 2 for 4:2:0): output sizes must be multiples."""
    av = require_av()
    fmt = av.VideoFormat(pix_fmt)
    if fmt.is_rgb or fmt.has_palette or len(fmt.components) < 3:
        return 1, 1
    return max(1, round(64 / max(1, fmt.chroma_width(64)))), max(1, round(64 / max(1, fmt.chroma_height(64))))


def _palette_frame(av: Any, rgb: np.ndarray) -> Any:
    """An RGB frame as a 256-colour palette frame for GIF (each frame gets its own palette)."""
    from PIL import Image

    image = Image.fromarray(rgb).quantize(256, method=Image.Quantize.FASTOCTREE)
    palette = np.asarray(image.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    argb = np.zeros((256, 4), np.uint8)
    argb[:, 0] = 255
    argb[: len(palette), 1:] = palette
    return av.VideoFrame.from_ndarray((np.asarray(image), argb), format="pal8")
