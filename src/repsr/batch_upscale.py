"""``repsr upscale``: many files in, one line per problem, nothing half-written.

Inputs are files, folders (their images) and globs. Each output is written to a temporary name and
renamed, existing outputs are skipped unless ``overwrite``, and a bad file is reported with its
reason while the others go on; the return value says how many failed.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .errors import RepsrError
from .images import IMAGE_EXTENSIONS, read_image, write_image
from .inference import pick_device, prepare, upscale

SIXTEEN_BIT_FORMATS = (".png", ".tif", ".tiff")


@dataclass
class UpscaleReport:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False


def collect_inputs(specs: list[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files, folders and globs into image files (each once), and the specs that match nothing."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                missing.append((path, "folder has no images"))
            files += found
        elif path.exists():
            files.append(path)
        elif glob.has_magic(spec):
            matches = sorted(Path(p) for p in glob.glob(spec) if Path(p).is_file())
            if not matches:
                missing.append((path, "no file matches this pattern"))
            files += matches
        else:
            missing.append((path, "no such file"))
    unique = list({os.path.realpath(p): p for p in files}.values())  # the same input twice is done once
    return unique, missing


def output_path(src: Path, out_dir: Path, fmt: str, sixteen_bit: bool) -> Path:
    suffix = ".png" if fmt == "png" else src.suffix.lower()
    if sixteen_bit and suffix not in SIXTEEN_BIT_FORMATS:
        suffix = ".png"  # keep 16 bits rather than silently dropping to 8
    return out_dir / (src.stem + suffix)


def upscale_files(inputs: list[str], out_dir: str | os.PathLike, model_spec: str, scale: int | None = None,
                  tile: int | None = None, precision: str = "fp32", device: str = "auto", overwrite: bool = False,
                  fmt: str = "png", progress: bool | None = None) -> UpscaleReport:
    from .export import load_model

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RepsrError(f"{out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RepsrError(f"{out_dir}: cannot create folder ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK):
        raise RepsrError(f"{out_dir}: folder is not writable")
    if tile is not None and tile < 0:
        raise RepsrError(f"--tile must be >= 0 (0: the whole image), got {tile}")
    model = load_model(model_spec)
    if scale is not None and scale != model.upscale:
        raise RepsrError(f"{model_spec}: model is x{model.upscale}, but --scale is {scale}")
    model = prepare(model, pick_device(device), precision)

    files, report_missing = collect_inputs(inputs)
    report = UpscaleReport(failed=list(report_missing))
    for path, reason in report_missing:
        print(f"repsr: {path}: {reason}", file=sys.stderr)
    claimed: dict[Path, Path] = {}
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(files, desc="upscale", unit="img", disable=not show, file=sys.stderr)
    try:
        for src in bar:
            try:
                img = read_image(src)
                dst = output_path(src, out_dir, fmt, img.dtype == np.uint16)
                if dst in claimed:
                    raise RepsrError(f"its output {dst.name} is also the output of {claimed[dst]}")
                claimed[dst] = src
                if dst.exists() and not overwrite:
                    report.skipped.append(src)
                    continue
                if dst.is_dir():
                    raise RepsrError(f"output {dst} is a folder")
                out = upscale(img, model, tile=tile, prepared=True)
                if img.dtype == np.uint16 and dst.suffix.lower() not in SIXTEEN_BIT_FORMATS:
                    out = (out // 257).astype(np.uint8)
                write_image(dst, out)
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
