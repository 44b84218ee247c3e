"""Three threads share the work: a reader demuxes and decodes, the caller's thread runs the network on batches of
frames, and a writer converts to the output's pixel format, encodes and muxes. Bounded queues hold a few batches,
so memory does not grow with the length of the clip; a stage that fails or an interruption stops all three."""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RepsrError
from ..inference import Upscaler
from .colour import FrameEncoder, RgbConverter
from .muxing import Output, VideoPlan

# ----------------------------------------------------------------------------- what travels between the stages

@dataclass(frozen=True)
class DecodedFrame:
    frame: Any  # av.VideoFrame of the input's video stream


@dataclass(frozen=True)
class CopiedPacket:
    packet: Any  # of a stream copied as it is


@dataclass(frozen=True)
class AudioFrame:
    frame: Any  # decoded audio of a stream the output re-encodes
    stream: Any


@dataclass(frozen=True)
class UpscaledFrames:
    arrays: np.ndarray  # (N, H, W, 3) upscaled RGB
    sources: list[Any]  # the decoded frames they come from (time stamps, durations)


class End:
    """The last message of a stream of messages."""


class _Stopped(Exception):
    """Another stage failed or the run was interrupted."""


class Channel:
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


class Stage(threading.Thread):
    """A thread whose error is kept for the caller's thread and stops the other stages."""

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


class Progress:
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
            left = f", ETA {clock((self.total - self.done) / rate)}" if self.total and rate > 0 else ""
            of = f"/{self.total}" if self.total else ""
            print(f"repsr: {self.name}: {self.done}{of} frames, {rate:.1f} frames/s{left}", file=sys.stderr,
                  flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- the three stages

@dataclass
class Pipeline:
    """One video's stages: ``run`` returns the number of frames upscaled."""

    av: Any
    inp: Any
    video: Any  # the input's video stream
    output: Output
    plan: VideoPlan
    upscaler: Upscaler
    batch: int
    progress: Progress

    def run(self) -> int:
        stop = threading.Event()
        to_net, to_writer = Channel(2 * self.batch + 2, stop), Channel(3, stop)

        def read() -> None:
            for item in self._demux():
                to_net.put(item)
            to_net.put(End())

        reader = Stage("reader", read, stop)
        writer = Stage("writer", lambda: self._write(to_writer), stop)
        reader.start()
        writer.start()
        count = 0
        try:
            count = self._network(to_net, to_writer)
            to_writer.put(End())
            writer.join()
        except _Stopped:
            pass  # a stage failed: its error is raised below
        finally:
            stop.set()  # ends the stages if this thread failed or was interrupted
            reader.join()
            writer.join()
            self.progress.close()
        for stage in (reader, writer):
            if stage.error is not None:
                raise stage.error
        return count

    def _demux(self) -> Iterator[DecodedFrame | CopiedPacket | AudioFrame]:
        """Every item of the input in file order, then what the re-encoded streams' decoders still hold."""
        copied, reencoded = self.output.copied, self.output.reencoded
        for packet in self.inp.demux([self.video, *copied, *reencoded]):
            stream = packet.stream
            if stream is self.video:
                for frame in self.video.decode(packet):
                    yield DecodedFrame(frame)
            elif stream in copied:
                if packet.size and (packet.pts is not None or packet.dts is not None):
                    yield CopiedPacket(packet)
            else:
                for frame in stream.decode(packet):
                    yield AudioFrame(frame, stream)
        for stream in reencoded:
            with contextlib.suppress(self.av.FFmpegError):  # a decoder that cannot be flushed holds nothing back
                for frame in stream.decode(None):
                    yield AudioFrame(frame, stream)

    def _network(self, to_net: Channel, to_writer: Channel) -> int:
        """Batch the frames, upscale them and hand them on; other items go straight to the writer."""
        to_rgb = RgbConverter(self.plan.colour, self.plan.bits)
        count = 0
        pending: list[tuple[np.ndarray, Any]] = []
        while True:
            item = to_net.get()
            end = isinstance(item, End)
            if isinstance(item, (CopiedPacket, AudioFrame)):
                to_writer.put(item)
                continue
            if not end:
                frame = item.frame
                if (frame.width, frame.height) != self.plan.in_size:
                    w, h = self.plan.in_size
                    raise RepsrError(f"the frame size changes within the video ({w}x{h} -> {frame.width}x"
                                     f"{frame.height}); not supported")
                pending.append((to_rgb(frame), frame))
            if pending and (len(pending) >= self.batch or end):
                out = self.upscaler.frames(np.stack([a for a, _ in pending]))
                to_writer.put(UpscaledFrames(out, [f for _, f in pending]))
                count += len(pending)
                self.progress.update(len(pending))
                pending = []
            if end:
                return count

    def _write(self, channel: Channel) -> None:
        container, stream, plan = self.output.container, self.output.video, self.plan
        encode = FrameEncoder(self.av, plan.colour, plan.pix_fmt, plan.bits)
        width, height = plan.out_size
        last_pts = None
        while not isinstance(item := channel.get(), End):
            if isinstance(item, CopiedPacket):
                item.packet.stream = self.output.copied[item.packet.stream]
                container.mux(item.packet)
            elif isinstance(item, AudioFrame):
                for packet in self.output.reencoded[item.stream].encode(item.frame):
                    container.mux(packet)
            else:
                for array, source in zip(item.arrays, item.sources, strict=True):
                    frame = encode(np.ascontiguousarray(array[:height, :width]))
                    pts = source.pts
                    if pts is None or (last_pts is not None and pts <= last_pts):
                        pts = 0 if last_pts is None else last_pts + max(1, int(source.duration or 1))
                    frame.pts, frame.time_base = pts, plan.time_base
                    if source.duration:
                        with contextlib.suppress(AttributeError):  # PyAV without frame durations
                            frame.duration = source.duration
                    last_pts = pts
                    for packet in stream.encode(frame):
                        container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        for encoder in self.output.reencoded.values():
            for packet in encoder.encode(None):
                container.mux(packet)
