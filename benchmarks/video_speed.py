"""Video upscaling speed: `repsr upscale clip.mp4` against the same frames as PNG images, 480p -> x4.

The clip: 854x480, H.264 (CRF 18) with an AAC track, 24 fps, panning over Set5's baby (bicubic x2), so
the encoder sees real texture. Timed, in turns (median of the rounds), each through `upscale_files` as
the command line runs it, with the default model (`repsr.zoo.DEFAULT_MODEL`, output 3416x1920):

- video: decode, network, encode (H.264 CRF 18, preset medium: the defaults) and mux, in a stream;
- video, preset veryfast: the same with a faster encoder preset (how much of the time is the encoder's);
- images: the same frames as PNG files: read, network, write PNG;
- network: an `Upscaler` of the model (made once, the runtime `repsr upscale` picks) on the decoded frames
  in memory, one by one, nothing read or written (the ceiling).

A second part runs the video path in fresh processes on 426x240 clips (-> 1704x960) of 16, 64 and 160
frames and reports their peak memory (VmHWM, and its growth during the run): the frames are
streamed, so once x264's lookahead (about 40 frames at preset medium) is full, a longer clip needs no
more memory; the upscaled frames of the longest clip alone would take 750 MiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from _results import record, seconds_in_turns

from repsr.batch_upscale import UpscaleOptions, upscale_files
from repsr.images import read_image, write_image
from repsr.inference import Upscaler
from repsr.runtimes import BACKEND_TITLES
from repsr.video import VideoOptions
from repsr.zoo import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
SIZE = (854, 480)
MEMORY_SIZE = (426, 240)
MEMORY_FRAMES = (16, 64, 160)


def make_clip(path: Path, frames: int, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    """An H.264 + AAC clip panning over a real picture; returns its frames as decoded (RGB)."""
    import av

    picture = read_image(ROOT / "tests" / "data" / "Set5" / "baby.png")
    picture = cv2.resize(picture, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    w, h = size
    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=24)
    video.width, video.height, video.pix_fmt = w, h, "yuv420p"
    video.options = {"crf": "18"}
    audio = out.add_stream("aac", rate=48000)
    audio.layout = "stereo"
    for i in range(frames):
        y, x = (5 * i) % (picture.shape[0] - h), (7 * i) % (picture.shape[1] - w)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[y : y + h, x : x + w]))
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
    for packet in video.encode():
        out.mux(packet)
    samples = 48000 * frames // 24
    for start in range(0, samples, 1024):
        tone = (0.2 * np.sin(2 * np.pi * 330 * np.arange(start, min(samples, start + 1024)) / 48000))
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]).astype(np.float32), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = 48000, start
        for packet in audio.encode(frame):
            out.mux(packet)
    for packet in audio.encode():
        out.mux(packet)
    out.close()
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


CHILD = r"""
import json, sys, tempfile
from pathlib import Path


def peak_mib():  # VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


sys.path.insert(0, sys.argv[3])
import video_speed
from repsr.inference import Upscaler
from repsr.video import upscale_video
folder = Path(tempfile.mkdtemp())
clip = folder / "clip.mp4"
video_speed.make_clip(clip, int(sys.argv[1]), video_speed.MEMORY_SIZE)
upscaler = Upscaler(sys.argv[2], "cpu")
before = peak_mib()
result = upscale_video(clip, folder / "out.mp4", upscaler)
print(json.dumps({"frames": result.frames, "seconds": result.seconds, "peak_mib": peak_mib(),
                  "before_mib": before, "mib": (folder / "out.mp4").stat().st_size / 2**20}))
"""


def options(out: Path, video: VideoOptions | None = None) -> UpscaleOptions:
    """`repsr upscale`'s options for the default model into ``out``, redoing existing outputs."""
    return UpscaleOptions(DEFAULT_MODEL, out_dir=out, overwrite=True, progress=False, video=video or VideoOptions())


def memory(frames: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(frames), DEFAULT_MODEL, str(Path(__file__).parent)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="4 frames, one round, one small memory clip; printed only")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.rounds = 4, 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = tmp / "clip.mp4"
        frames = make_clip(clip, args.frames)
        pngs = tmp / "frames"
        pngs.mkdir()
        for i, f in enumerate(frames):
            write_image(pngs / f"{i:04d}.png", f)
        upscaler = Upscaler(DEFAULT_MODEL, "cpu")  # the runtime `repsr upscale` picks too
        backend = BACKEND_TITLES[upscaler.runner.backend]
        runs = {
            "video": partial(upscale_files, [str(clip)], options(tmp / "v")),
            "video_veryfast": partial(upscale_files, [str(clip)], options(tmp / "vf", VideoOptions(preset="veryfast"))),
            "images": partial(upscale_files, [str(pngs)], options(tmp / "i")),
            "network": lambda: [upscaler(f) for f in frames],
        }
        upscaler(frames[0])  # warm-up
        seconds = seconds_in_turns(runs, args.rounds, per_turn=1)
        sizes = {"video": (tmp / "v" / "clip_x4.mp4").stat().st_size / 2**20,
                 "video_veryfast": (tmp / "vf" / "clip_x4.mp4").stat().st_size / 2**20,
                 "images": sum(p.stat().st_size for p in (tmp / "i").iterdir()) / 2**20}
    n = args.frames
    rate = {k: n / s for k, s in seconds.items()}
    labels = {"video": "video, H.264 CRF 18 preset medium (the defaults)", "video_veryfast": "video, preset veryfast",
              "images": "the same frames as PNG images", "network": "network only (frames in memory)"}
    what = {"video": "decode + network + encode + mux", "video_veryfast": "decode + network + encode + mux",
            "images": "read PNG + network + write PNG", "network": "`Upscaler` per frame"}
    rows = [f"| {labels[k]} | {what[k]} | {seconds[k]:.1f} | **{rate[k]:.2f}** | {rate[k] / rate['images']:.2f}x | "
            f"{sizes[k]:.1f} |" if k in sizes else
            f"| {labels[k]} | {what[k]} | {seconds[k]:.1f} | **{rate[k]:.2f}** | {rate[k] / rate['images']:.2f}x | - |"
            for k in runs]
    mem = [memory(n) for n in ((4,) if args.smoke else MEMORY_FRAMES)]
    w, h = MEMORY_SIZE
    mem_rows = [f"| {m['frames']} | {m['frames'] * w * h * 48 / 2**20:.0f} | {m['peak_mib']:.0f} | "
                f"{m['peak_mib'] - m['before_mib']:.0f} | {m['frames'] / m['seconds']:.2f} |" for m in mem]
    table = (f"{DEFAULT_MODEL} on CPU ({backend}), fp32: a {SIZE[0]}x{SIZE[1]} H.264 + AAC clip of {n} frames -> "
             f"{SIZE[0] * 4}x{SIZE[1] * 4}, through `repsr upscale` (`upscale_files`). Variants in turns, median of "
             f"{args.rounds} rounds.\n\n"
             "| path | timed | seconds | frames/s | vs images | output MiB |\n|---|---|---|---|---|---|\n"
             + "\n".join(rows)
             + f"\n\nPeak memory of the video path, each run in a fresh process, on {w}x{h} clips "
             f"(-> {w * 4}x{h * 4}): streamed, it grows until x264's lookahead (about 40 frames at preset medium) "
             "is full, and no further; the upscaled frames of a clip as RGB are in the second column.\n\n"
             "| frames | upscaled frames MiB | peak RSS MiB | growth during the run MiB | frames/s |\n"
             "|---|---|---|---|---|\n" + "\n".join(mem_rows))
    record("video_speed", table, {"frames": n, "size": list(SIZE), "scale": 4, "model": DEFAULT_MODEL,
                                  "backend": backend, "seconds": seconds, "frames_per_second": rate,
                                  "output_mib": sizes, "memory": mem}, smoke=args.smoke)


if __name__ == "__main__":
    main()
