"""The mark ``repsr upscale`` leaves in its outputs, so that a second run does not upscale them again: a PNG text
chunk or JPEG comment (written by :func:`repsr.images.write_image`), a video stream's encoder tag, a GIF comment."""

from __future__ import annotations

import os
from pathlib import Path

OUTPUT_MARK = "repsr upscale"  # starts every mark repsr writes
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".gif", ".avi", ".ts", ".m2ts", ".mts")


def output_mark(scale: int, model: str) -> str:
    """The mark of an output made at ``scale`` with ``model`` (a bundled name or a file's name)."""
    return f"{OUTPUT_MARK} x{scale} ({model})"


def add_gif_comment(path: Path, text: str) -> None:
    """Add a GIF comment extension before the trailer (GIF has no other place for a tag)."""
    data = path.read_bytes()
    if not data.startswith(b"GIF8") or not data.endswith(b";"):
        return
    body = text.encode("ascii", "replace")[:255]
    path.write_bytes(data[:-1] + b"!\xfe" + bytes([len(body)]) + body + b"\x00;")


def _gif_has_mark(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 300))
        tail = f.read()
    at = tail.rfind(b"!\xfe")
    return at >= 0 and OUTPUT_MARK.encode() in tail[at:]


def _video_has_mark(path: Path) -> bool:
    try:
        import av
    except ImportError:
        return False
    try:
        with av.open(str(path)) as container:
            return any(str(value).startswith(OUTPUT_MARK) for s in container.streams.video
                       for value in s.metadata.values())
    except (av.FFmpegError, OSError, ValueError):  # unreadable: not ours
        return False


def is_earlier_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` was written by ``repsr upscale``."""
    from .images import software_tag

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".gif":
            return _gif_has_mark(path)
    except OSError:
        return False
    if suffix in VIDEO_EXTENSIONS:
        return _video_has_mark(path)
    return (software_tag(path) or "").startswith(OUTPUT_MARK)
