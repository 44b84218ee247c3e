"""``repsr upscale``: images and videos in, upscaled copies out; the originals are never touched.

Inputs are files, folders (their images and videos) and globs. Each output is named after its input
plus a suffix (``photo.jpg`` -> ``photo_x4.png``; ``_x{scale}`` by default) and goes into the output
folder, or beside its input when there is none. An output path that is one of the inputs (also
through a symlink, a hard link or a case-insensitive file system) is refused, with ``overwrite``
or without: the originals are never replaced. Outputs carry a mark (a PNG text chunk, a JPEG
comment, a video stream tag), so that folders holding earlier outputs are not upscaled twice over.
Each output is written under a temporary name and renamed, existing outputs are skipped unless
``overwrite``, and a bad file is reported with its reason while the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import RepsrError
from .fileio import make_output_folder
from .images import IMAGE_EXTENSIONS, read_image, software_tag, write_image
from .inference import pick_device, prepare, upscale
from .loading import load_model
from .video import (
    OUTPUT_MARK,
    VIDEO_EXTENSIONS,
    VideoOptions,
    check_options,
    is_repsr_output,
    is_video,
    output_container,
)

SIXTEEN_BIT_FORMATS = (".png", ".tif", ".tiff")
DEFAULT_SUFFIX = "_x{scale}"


@dataclass
class UpscaleReport:
    done: list[Path] = field(default_factory=list)
    videos: int = 0  # how many of ``done`` are videos
    skipped: list[Path] = field(default_factory=list)  # the output exists (no ``overwrite``)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    earlier_outputs: list[Path] = field(default_factory=list)  # found in folders/globs, left alone
    interrupted: bool = False


def is_earlier_output(path: Path) -> bool:
    """Whether ``path`` was written by ``repsr upscale`` (PNG/JPEG software tag, video stream tag)."""
    if is_video(path):
        return is_repsr_output(path)
    return (software_tag(path) or "").startswith(OUTPUT_MARK)


def collect_inputs(specs: list[str]) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """Expand files, folders and globs into image and video files (each once).

    Returns the files, the specs that match nothing (with the reason) and the earlier outputs that
    folders and globs held (left out; a file named explicitly is always taken).
    """
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    earlier: list[Path] = []
    known = IMAGE_EXTENSIONS + VIDEO_EXTENSIONS

    def listed(found: list[Path]) -> list[Path]:
        ours = [p for p in found if is_earlier_output(p)]
        earlier.extend(ours)
        return [p for p in found if p not in ours]

    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in known)
            if not found:
                missing.append((path, "folder has no images or videos"))
            files += listed(found)
        elif path.exists():
            files.append(path)
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
            if not matches:
                missing.append((path, "no file matches this pattern"))
            files += listed(matches)
        else:
            missing.append((path, "no such file"))
    unique = list({os.path.realpath(p): p for p in files}.values())  # the same input twice is done once
    return unique, missing, list(dict.fromkeys(earlier))


def expand_suffix(suffix: str | None, scale: int) -> str:
    """The output name suffix, ``{scale}`` replaced; no path separators."""
    text = DEFAULT_SUFFIX if suffix is None else suffix
    if any(sep in text for sep in ("/", "\\", os.sep, "\0")):
        raise RepsrError(f"--suffix {text!r}: a suffix cannot contain a path separator")
    return text.replace("{scale}", str(scale))


def output_path(src: Path, out_dir: Path, fmt: str, sixteen_bit: bool, suffix: str = "") -> Path:
    ext = ".png" if fmt == "png" else src.suffix.lower()
    if sixteen_bit and ext not in SIXTEEN_BIT_FORMATS:
        ext = ".png"  # keep 16 bits rather than silently dropping to 8
    return out_dir / (src.stem + suffix + ext)


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names, following symlinks; None if nothing is there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and SIGHUP end the run as Ctrl-C does: the output in progress is removed (no temporary
    file is left behind), finished outputs stay. Signals set to be ignored (``nohup``) stay ignored."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        def interrupt(signum, frame):
            raise KeyboardInterrupt

        for name in ("SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
                installed[sig] = signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)


def upscale_files(inputs: list[str], out_dir: str | os.PathLike | None, model_spec: str, scale: int | None = None,
                  tile: int | None = None, precision: str = "fp32", device: str = "auto", overwrite: bool = False,
                  fmt: str = "png", progress: bool | None = None, suffix: str | None = None,
                  video: VideoOptions | None = None, backend: str = "auto") -> UpscaleReport:
    """Upscale every image and video of ``inputs`` into ``out_dir`` (None: beside each input).

    Outputs are named ``NAME{suffix}.EXT`` (``suffix`` default ``_x{scale}``; an empty suffix only
    with an ``out_dir`` that holds no input). ``video`` sets codec, quality, batch size.
    """
    out_root = Path(out_dir) if out_dir is not None else None
    if out_root is not None:
        make_output_folder(out_root)
    if tile is not None and tile < 0:
        raise RepsrError(f"--tile must be >= 0 (0: the whole image), got {tile}")
    video = dataclasses.replace(video or VideoOptions(), tile=tile)
    check_options(video)
    model = load_model(model_spec)
    if scale is not None and scale != model.upscale:
        raise RepsrError(f"{model_spec}: model is x{model.upscale}, but --scale is {scale}")
    name_suffix = expand_suffix(suffix, model.upscale)

    files, report_missing, earlier = collect_inputs(inputs)
    if not name_suffix:
        if out_root is None:
            raise RepsrError("--suffix '': without -o the outputs go beside their inputs and would take their "
                             "names; give -o another folder or a non-empty suffix")
        for src in files:
            if _same_folder(src.parent, out_root):
                raise RepsrError(f"--suffix '': {src} is in the output folder {out_root}, so its output would take "
                                 "its name; give -o another folder or a non-empty suffix")
    model = prepare(model, pick_device(device), precision, backend)
    tag = Path(model_spec).name if Path(model_spec).is_file() else str(model_spec)
    software = f"{OUTPUT_MARK} x{model.upscale} ({tag})"

    report = UpscaleReport(failed=list(report_missing), earlier_outputs=earlier)
    for path, reason in report_missing:
        print(f"repsr: {path}: {reason}", file=sys.stderr)
    inputs_ids = {i for i in map(_file_id, files) if i is not None}
    claimed: dict[Path, Path] = {}
    ready_folders: set[Path] = set()
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(files, desc="upscale", unit="file", disable=not show or len(files) < 2, file=sys.stderr)

    def target(src: Path, dst: Path) -> bool:
        """Check ``dst`` for ``src``: raise if refused, False if it exists and is kept."""
        if dst in claimed and claimed[dst] != src:
            raise RepsrError(f"its output {dst.name} is also the output of {claimed[dst]}")
        if _file_id(dst) in inputs_ids:
            raise RepsrError(f"its output {dst} is one of the inputs; originals are never replaced "
                             "(choose another --suffix or -o)")
        if dst.is_dir():
            raise RepsrError(f"output {dst} is a folder")
        return overwrite or not os.path.lexists(dst)

    try:
        with stop_on_signals():
            for src in bar:
                try:
                    folder = out_root if out_root is not None else src.parent
                    if folder not in ready_folders:
                        make_output_folder(folder)
                        ready_folders.add(folder)
                    if is_video(src):
                        ext, _ = output_container(src, video.codec)
                        dst = folder / (src.stem + name_suffix + ext)
                        if not target(src, dst):
                            claimed[dst] = src
                            report.skipped.append(src)
                            continue
                        claimed[dst] = src  # a video is long: claimed before, an image once it is read
                        _upscale_video(src, dst, model, video, show, tag)
                        report.videos += 1
                        report.done.append(src)
                        continue
                    dst = output_path(src, folder, fmt, False, name_suffix)
                    if not target(src, dst):
                        claimed[dst] = src
                        report.skipped.append(src)
                        continue
                    img = read_image(src)
                    if img.dtype == np.uint16 and dst.suffix.lower() not in SIXTEEN_BIT_FORMATS:
                        dst = output_path(src, folder, fmt, True, name_suffix)
                        if not target(src, dst):
                            claimed[dst] = src
                            report.skipped.append(src)
                            continue
                    claimed[dst] = src
                    out = upscale(img, model, tile=tile, prepared=True)
                    if img.dtype == np.uint16 and dst.suffix.lower() not in SIXTEEN_BIT_FORMATS:
                        out = (out // 257).astype(np.uint8)
                    write_image(dst, out, software=software)
                    report.done.append(src)
                except RepsrError as e:
                    message = str(e)
                    message = message if message.startswith(str(src)) else f"{src}: {message}"
                    report.failed.append((src, message))
                    tqdm.write(f"repsr: {message}", file=sys.stderr)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
    return report


def _upscale_video(src: Path, dst: Path, model, options: VideoOptions, show: bool, tag: str) -> None:
    from .video import upscale_video

    result = upscale_video(src, dst, model, options, progress="bar" if show else "lines", tag=tag)
    for note in result.notes:
        tqdm.write(f"repsr: {src}: note: {note}", file=sys.stderr)
    rate = result.frames / result.seconds if result.seconds > 0 else 0.0
    tqdm.write(f"repsr: {src} -> {dst}: {result.frames} frames in {result.seconds:.1f} s ({rate:.1f} frames/s)",
               file=sys.stderr)
