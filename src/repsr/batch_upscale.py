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
from .images import IMAGE_EXTENSIONS, read_image, write_image
from .inference import Upscaler
from .loading import load_model
from .marks import VIDEO_EXTENSIONS, is_earlier_output, output_mark
from .video.codecs import VideoOptions, check_options, is_video, output_container

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

    def summary(self, out_dir: str | os.PathLike | None) -> str:
        """The last line ``repsr upscale`` prints."""
        videos = f" ({self.videos} video{'s' * (self.videos != 1)})" if self.videos else ""
        parts = [f"{len(self.done)} upscaled{videos}"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (output exists; --overwrite to redo)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.earlier_outputs:
            n = len(self.earlier_outputs)
            parts.append(f"{n} earlier output{'s' * (n != 1)} of repsr in the inputs left alone")
        if self.interrupted:
            return f"repsr: interrupted; {', '.join(parts)}; finished outputs are complete"
        return f"{', '.join(parts)} -> {out_dir if out_dir is not None else 'beside the inputs'}"


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


@dataclass(frozen=True)
class UpscaleOptions:
    """What ``repsr upscale`` does with its inputs (the command line's options)."""

    model: str  # a bundled model's name or a model file
    out_dir: str | os.PathLike | None = None  # None: beside each input
    scale: int | None = None  # must match the model's when given
    tile: int | None = None  # LR tile size; None: the fastest for the runtime, 0: never tile
    precision: str = "fp32"
    device: str = "auto"
    backend: str = "auto"
    overwrite: bool = False
    fmt: str = "png"  # "png", or "input": the input's format
    progress: bool | None = None  # None: a bar when stderr is a terminal
    suffix: str | None = None  # None: _x{scale}
    video: VideoOptions = field(default_factory=VideoOptions)


class _Claims:
    """The outputs of this run, each claimed by one input; none may be an input, a folder or another's output."""

    def __init__(self, inputs: list[Path], overwrite: bool, report: UpscaleReport) -> None:
        self.input_ids = {i for i in map(_file_id, inputs) if i is not None}
        self.overwrite, self.report = overwrite, report
        self.owner: dict[Path, Path] = {}

    def check(self, src: Path, dst: Path) -> bool:
        """Whether to write ``dst`` for ``src``: False if it exists and is kept (``src`` is then claimed and counts
        as skipped); a refused output raises. ``claim`` it once the input has been read."""
        if dst in self.owner and self.owner[dst] != src:
            raise RepsrError(f"its output {dst.name} is also the output of {self.owner[dst]}")
        if _file_id(dst) in self.input_ids:
            raise RepsrError(f"its output {dst} is one of the inputs; originals are never replaced "
                             "(choose another --suffix or -o)")
        if dst.is_dir():
            raise RepsrError(f"output {dst} is a folder")
        if self.overwrite or not os.path.lexists(dst):
            return True
        self.claim(src, dst)
        self.report.skipped.append(src)
        return False

    def claim(self, src: Path, dst: Path) -> None:
        self.owner[dst] = src


def upscale_files(inputs: list[str], options: UpscaleOptions) -> UpscaleReport:
    """Upscale every image and video of ``inputs`` (files, folders, globs) as ``options`` say.

    Outputs are named ``NAME{suffix}.EXT`` (``suffix`` default ``_x{scale}``; an empty suffix only with an output
    folder that holds no input). A file that fails is reported and the others go on; Ctrl-C, SIGTERM and SIGHUP
    stop the run with the finished outputs complete and no partial one."""
    o = options
    out_root = Path(o.out_dir) if o.out_dir is not None else None
    if out_root is not None:
        make_output_folder(out_root)
    if o.tile is not None and o.tile < 0:
        raise RepsrError(f"--tile must be >= 0 (0: the whole image), got {o.tile}")
    check_options(o.video)
    model = load_model(o.model)
    if o.scale is not None and o.scale != model.upscale:
        raise RepsrError(f"{o.model}: model is x{model.upscale}, but --scale is {o.scale}")
    name_suffix = expand_suffix(o.suffix, model.upscale)
    files, missing, earlier = collect_inputs(inputs)
    if not name_suffix:
        if out_root is None:
            raise RepsrError("--suffix '': without -o the outputs go beside their inputs and would take their "
                             "names; give -o another folder or a non-empty suffix")
        for src in files:
            if _same_folder(src.parent, out_root):
                raise RepsrError(f"--suffix '': {src} is in the output folder {out_root}, so its output would take "
                                 "its name; give -o another folder or a non-empty suffix")
    upscaler = Upscaler(model, o.device, o.precision, o.backend, o.tile)
    mark = output_mark(upscaler.scale, Path(o.model).name if Path(o.model).is_file() else str(o.model))
    report = UpscaleReport(failed=list(missing), earlier_outputs=earlier)
    for path, reason in missing:
        print(f"repsr: {path}: {reason}", file=sys.stderr)
    claims = _Claims(files, o.overwrite, report)
    ready_folders: set[Path] = set()
    show = sys.stderr.isatty() if o.progress is None else o.progress
    bar = tqdm(files, desc="upscale", unit="file", disable=not show or len(files) < 2, file=sys.stderr)
    try:
        with stop_on_signals():
            for src in bar:
                try:
                    folder = out_root if out_root is not None else src.parent
                    if folder not in ready_folders:
                        make_output_folder(folder)
                        ready_folders.add(folder)
                    if is_video(src):
                        dst = folder / (src.stem + name_suffix + output_container(src, o.video.codec)[0])
                        if claims.check(src, dst):
                            claims.claim(src, dst)  # a video is long: claimed before it is read
                            _upscale_video(src, dst, upscaler, o.video, show, mark)
                            report.videos += 1
                            report.done.append(src)
                    elif claims.check(src, dst := output_path(src, folder, o.fmt, False, name_suffix)):
                        img = read_image(src)  # an image is claimed once it reads
                        sixteen = img.dtype == np.uint16 and dst.suffix.lower() not in SIXTEEN_BIT_FORMATS
                        if sixteen and not claims.check(src, dst := output_path(src, folder, o.fmt, True,
                                                                                name_suffix)):
                            continue
                        claims.claim(src, dst)
                        write_image(dst, upscaler(img), software=mark)
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


def _upscale_video(src: Path, dst: Path, upscaler: Upscaler, options: VideoOptions, show: bool, mark: str) -> None:
    from .video import upscale_video

    result = upscale_video(src, dst, upscaler, options, progress="bar" if show else "lines", mark=mark)
    for note in result.notes:
        tqdm.write(f"repsr: {src}: note: {note}", file=sys.stderr)
    rate = result.frames / result.seconds if result.seconds > 0 else 0.0
    tqdm.write(f"repsr: {src} -> {dst}: {result.frames} frames in {result.seconds:.1f} s ({rate:.1f} frames/s)",
               file=sys.stderr)
